#!/usr/bin/env bash
# Shared setup for scripts/demo.sh and scripts/test.sh: one virtualenv with Vigil and the
# extra a script needs — `detectors` for the demo (what runs: ~3 GB, TensorFlow included),
# `all` for the tests (adds the dev tools). Usage: setup.sh detectors|all.
#
# The stamp file $VENV/.vigil-installed holds "<sha256 of pyproject.toml> <extra>". The
# venv is reused while pyproject.toml is unchanged and its extra covers the one asked for;
# otherwise pip installs the wider of the two extras into the same venv, so going from
# `detectors` to `all` adds only the dev tools (TensorFlow is already there) and a demo
# run never narrows a test venv. A stamp from before extras were recorded means `all`.
# VIGIL_VENV picks another location (default .venv); PYTHON the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VIGIL_VENV:-.venv}"
PY="${PYTHON:-python3}"
want="${1:-all}"
case "$want" in detectors|all) ;; *) echo "usage: $0 detectors|all" >&2; exit 64 ;; esac
rank() { [ "$1" = all ] && echo 2 || echo 1; }
# setuptools' editable build prints an 11-line "be careful with folders" notice on every install
quiet_build="ignore:Editable installation${PYTHONWARNINGS:+,$PYTHONWARNINGS}"

if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
  echo "Vigil needs Python 3.10+ (found: $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.vigil-installed"
hash="$(sha256sum pyproject.toml | cut -d' ' -f1)"
old_hash=""; old_extra=""
if [ -f "$stamp" ]; then
  read -r old_hash old_extra < "$stamp" || true
  old_extra="${old_extra:-all}"
fi
extra="$want"
if [ -n "$old_extra" ] && [ "$(rank "$old_extra")" -gt "$(rank "$want")" ]; then extra="$old_extra"; fi

if [ "$old_hash" != "$hash" ] || [ "$(rank "$old_extra")" -lt "$(rank "$want")" ]; then
  started=$SECONDS
  if [ "$extra" = all ]; then
    echo "==> installing Vigil with all extras (detectors + test tools) into $VENV (first time: a few minutes)"
  else
    echo "==> installing Vigil with its detectors into $VENV (first time: a few minutes, TensorFlow is large)"
  fi
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  # venvs made before the rename (vigil-monitor -> vigil-ml) and before xgboost-cpu: drop the
  # old distributions, so two of them never own the same files
  old="$("$VENV/bin/python" - <<'PY'
from importlib import metadata
for name in ("vigil-monitor", "xgboost"):
    try:
        metadata.distribution(name)
        print(name)
    except metadata.PackageNotFoundError:
        pass
PY
)"
  if [ -n "$old" ]; then "$VENV/bin/python" -m pip uninstall --quiet --yes $old; fi
  # --no-compile: Python compiles what is imported when it is first imported, not all
  # ~450 MB of byte code for modules (most of TensorFlow) that never run here
  PYTHONWARNINGS="$quiet_build" "$VENV/bin/python" -m pip install --quiet --progress-bar off --no-compile -e ".[$extra]"
  echo "$hash $extra" > "$stamp"
  echo "==> installed in $((SECONDS - started))s ($(du -sh "$VENV" 2>/dev/null | cut -f1) in $VENV)"
elif ! "$VENV/bin/python" - <<'PY' 2>/dev/null
import os, sys, vigil
sys.exit(os.path.dirname(os.path.dirname(os.path.abspath(vigil.__file__))) != os.getcwd())
PY
then
  # the venv's editable install points at another checkout: re-link it to this one
  PYTHONWARNINGS="$quiet_build" "$VENV/bin/python" -m pip install --quiet --no-deps -e . >/dev/null
fi
