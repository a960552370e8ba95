#!/usr/bin/env bash
# Lint: ruff (style, imports, bugbear, pyupgrade) over the tree and mypy over the three
# packages, both configured in pyproject.toml. scripts/test.sh runs this before pytest.
# `scripts/lint.sh --fix` lets ruff apply its safe fixes first.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${VIGIL_VENV:-.venv}/bin"
if [ "${1:-}" = "--fix" ]; then "$BIN/ruff" check --fix .; fi
echo "==> ruff"
"$BIN/ruff" check .
echo "==> mypy"
"$BIN/mypy"
echo "==> CRD up to date with vigil/spec.py"
"$BIN/python" -m vigil.crd --check
