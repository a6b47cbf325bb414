#!/usr/bin/env bash
# Installs suggest (first run only) and starts the backend on port 9090 with its embedded defaults.
# Any `suggest serve` flag may follow, e.g. --port 9091 --model-dir /data/suggest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec "${SUGGEST_VENV:-.venv}/bin/suggest" serve "$@"
