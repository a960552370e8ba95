#!/usr/bin/env bash
# Set up (first run only), lint (scripts/lint.sh: ruff, mypy) and run the test suite.
# Extra arguments go to pytest.
# Installs Debian's `prometheus` package (server + promtool) when missing and this
# user can (root or sudo): the Prometheus and promtool tests need it; likewise Debian's
# `chromium` (headless) for the `vigil report` rendering test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh all
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if [ -z "$SUDO" ] || command -v sudo >/dev/null; then
    echo "==> installing Debian's prometheus package (prometheus + promtool)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "warning: prometheus/promtool missing and no sudo: those tests will fail" >&2
  fi
fi
if ! command -v chromium >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if [ -z "$SUDO" ] || command -v sudo >/dev/null; then
    echo "==> installing Debian's chromium package (headless rendering of vigil report)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "warning: chromium missing and no sudo: the report rendering test will fail" >&2
  fi
fi
bash scripts/lint.sh
exec "${VIGIL_VENV:-.venv}/bin/python" -m pytest "$@"
