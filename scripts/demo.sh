#!/usr/bin/env bash
# Set up (first run only) and run `vigil demo`. Extra arguments go to `vigil demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh detectors
exec "${VIGIL_VENV:-.venv}/bin/vigil" demo "$@"
