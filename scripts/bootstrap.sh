#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) with nrt_lab and the given extras.
# Safe to rerun: it reinstalls only when pyproject.toml or the requested extras changed.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-lab,test}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
stamp=".venv/.nrt_lab-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing nrt_lab[$extras] into .venv"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[$extras]"
  echo "$want" > "$stamp"
fi
