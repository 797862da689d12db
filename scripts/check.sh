#!/usr/bin/env bash
# Set up a virtual environment (if needed) and run the whole check: ruff, mypy, pytest.
# Extra arguments go to pytest, e.g. `bash scripts/check.sh -k ticket`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy --strict"
.venv/bin/mypy
echo "== pytest"
PYTHONASYNCIODEBUG=1 .venv/bin/python -m pytest -p no:cacheprovider --cov --cov-report=term "$@"
