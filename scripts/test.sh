#!/usr/bin/env bash
# Installs suggest with its test extras, then runs ruff and the whole test suite: unit, API and
# end-to-end against a real Label Studio (installed on first run into .cache/ls-venv, ~1-2 min).
# Extra arguments go to pytest, e.g. -m "not e2e" for the fast part only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test,modal
venv="${SUGGEST_VENV:-.venv}"
"$venv/bin/ruff" check suggest backends tests benchmarks
exec "$venv/bin/python" -m pytest -q -rs "$@"
