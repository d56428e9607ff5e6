#!/usr/bin/env bash
# Set up .venv and rebuild the whole pipeline on the embedded demo corpus (`dvc repro`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DVC_NO_ANALYTICS=1 PATH="$PWD/.venv/bin:$PATH"
[ -d .git ] || git init -q
dvc repro "$@"
echo "report: $PWD/reports/index.html"
