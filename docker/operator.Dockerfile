# syntax=docker/dockerfile:1
#
# Vigil operator image: the kopf operator (`vigil operator`) from the base install.
# No TensorFlow, no detectors extra: the operator only talks to the Kubernetes API and
# to the components' /status endpoints.
#
# Build from the repository root (the context must hold pyproject.toml):
#   docker build -f docker/operator.Dockerfile -t ghcr.io/vigil-monitor/vigil-operator:0.1.0 .
#
# The base image is pinned to an exact patch tag. For reproducible production builds pin
# the digest as well, e.g. `--build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest>`
# (`docker buildx imagetools inspect python:3.11.13-slim-bookworm` prints it).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---- build: a self-contained virtualenv under /opt/vigil -------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/vigil
COPY pyproject.toml README.md ./
COPY vigil/ vigil/
COPY operator/ operator/
COPY detectors/ detectors/
RUN /opt/vigil/bin/pip install --no-compile . \
 && /opt/vigil/bin/python -m compileall -q /opt/vigil/lib

# ---- runtime: the venv only, as a non-root user ---------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="vigil-operator" \
      org.opencontainers.image.description="Vigil ModelMonitor operator (kopf)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 vigil \
 && useradd --system --uid 10001 --gid vigil --home-dir /home/vigil --create-home --shell /usr/sbin/nologin vigil
COPY --from=build /opt/vigil /opt/vigil
ENV PATH=/opt/vigil/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /home/vigil
# 8080: liveness (/healthz); 9090: the operator's Prometheus metrics (see the chart's values).
EXPOSE 8080 9090
CMD ["vigil", "operator"]
