# syntax=docker/dockerfile:1
#
# Vigil detectors image: outlier (alibi-detect VAE), drift (KS), metrics and explainer
# (alibi anchors) services, and `vigil train` for the training Jobs.
# `pip install .[detectors]` brings TensorFlow 2.18 + tf-keras; alibi-detect and alibi are
# under the Business Source License 1.1 (free outside production; see the README).
#
#   docker build -f docker/detectors.Dockerfile -t ghcr.io/vigil-monitor/vigil-detectors:0.1.0 .
#
# Pin the base image by digest for reproducible builds (see docker/operator.Dockerfile).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/vigil
COPY pyproject.toml README.md ./
COPY vigil/ vigil/
COPY operator/ operator/
COPY detectors/ detectors/
# `storage` (s3fs, gcsfs): the init containers and training Jobs read and write s3:// and gs://.
RUN /opt/vigil/bin/pip install --no-compile ".[detectors,storage]" \
 && /opt/vigil/bin/python -m compileall -q /opt/vigil/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="vigil-detectors" \
      org.opencontainers.image.description="Vigil detector services: outlier, drift, metrics, explainer" \
      org.opencontainers.image.licenses="Apache-2.0 AND BUSL-1.1"
RUN groupadd --system --gid 10001 vigil \
 && useradd --system --uid 10001 --gid vigil --home-dir /home/vigil --create-home --shell /usr/sbin/nologin vigil
COPY --from=build /opt/vigil /opt/vigil
# TF_USE_LEGACY_KERAS=1: alibi-detect's VAE saves and loads with Keras 2 (tf-keras).
# TF_CPP_MIN_LOG_LEVEL=1 hides TensorFlow's start-up info lines, not its warnings.
ENV PATH=/opt/vigil/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=1
USER 10001:10001
WORKDIR /home/vigil
EXPOSE 8080
# The operator sets the command: `vigil serve outlier|drift|metrics|explainer --port P`
# for a detector, `vigil train ...` for a training Job.
CMD ["vigil", "--help"]
