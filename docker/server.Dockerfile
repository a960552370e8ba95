# syntax=docker/dockerfile:1
#
# Vigil server image: the request logger and the model server (`vigil serve logger|model`).
# Base install only: serves scikit-learn (joblib) and XGBoost (JSON) models.
#
# TensorFlow/Keras models (`format: tensorflow`) need TensorFlow in the model server. Build
# the `server-tf` variant for them; it adds tensorflow + tf-keras but not the detectors extra
# (no alibi, no alibi-detect):
#   docker build -f docker/server.Dockerfile -t ghcr.io/vigil-monitor/vigil-server:0.1.0 .
#   docker build -f docker/server.Dockerfile --build-arg WITH_TENSORFLOW=true -t ghcr.io/vigil-monitor/vigil-server-tf:0.1.0 .
# The operator starts the logger and the model server from one image (the chart's
# `images.server`): set it to `vigil-server-tf` for clusters serving tensorflow models.
#
# Pin the base image by digest for reproducible builds (see docker/operator.Dockerfile).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG WITH_TENSORFLOW=false
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/vigil
COPY pyproject.toml README.md ./
COPY vigil/ vigil/
COPY operator/ operator/
COPY detectors/ detectors/
# Same TensorFlow pins as the `detectors` extra in pyproject.toml. The `storage` extra (s3fs,
# gcsfs) is for the init container that fetches s3:// and gs:// artifacts (python -m vigil.storage).
RUN /opt/vigil/bin/pip install --no-compile ".[storage]" \
 && if [ "$WITH_TENSORFLOW" = "true" ]; then \
        /opt/vigil/bin/pip install --no-compile "tensorflow~=2.18.0" "tf-keras~=2.18.0"; \
    fi \
 && /opt/vigil/bin/python -m compileall -q /opt/vigil/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="vigil-server" \
      org.opencontainers.image.description="Vigil request logger and model server (V2 / V1 protocols)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 vigil \
 && useradd --system --uid 10001 --gid vigil --home-dir /home/vigil --create-home --shell /usr/sbin/nologin vigil
COPY --from=build /opt/vigil /opt/vigil
# TF_USE_LEGACY_KERAS only matters in the server-tf variant (Keras 2 via tf-keras).
ENV PATH=/opt/vigil/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_USE_LEGACY_KERAS=1
USER 10001:10001
WORKDIR /home/vigil
EXPOSE 8080
# The operator sets the command per component: `vigil serve logger|model --port P`.
CMD ["vigil", "--help"]
