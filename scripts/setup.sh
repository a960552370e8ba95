#!/usr/bin/env bash
# Shared setup for scripts/demo.sh and scripts/test.sh: a virtualenv with Vigil and
# everything it needs (TensorFlow included, ~3 GB on first install), reused while
# pyproject.toml is unchanged. VIGIL_VENV picks another location (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VIGIL_VENV:-.venv}"
PY="${PYTHON:-python3}"

if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
  echo "Vigil needs Python 3.10+ (found: $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.vigil-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing Vigil with all extras into $VENV (first time: a few minutes, TensorFlow is large)"
  "$VENV/bin/python" -m pip install --upgrade --quiet pip
  "$VENV/bin/python" -m pip install --progress-bar off -e ".[all]"
  echo "$want" > "$stamp"
else
  # cheap: re-link the editable install in case the checkout moved
  "$VENV/bin/python" -m pip install --quiet --no-deps -e . >/dev/null
fi
