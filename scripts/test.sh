#!/usr/bin/env bash
# Set up .venv and run the test suite (unit tests + the end-to-end `dvc repro` on params.yaml + params.tiny.yaml).
# Installs Debian's chromium for the report's browser test when apt-get can (root), else that test skips.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 \
    && apt-get install -y -q chromium >/dev/null 2>&1; }) || echo "chromium not installed: browser test will skip" >&2
fi
export DVC_NO_ANALYTICS=1 PATH="$PWD/.venv/bin:$PATH"
.venv/bin/ruff check pipeline tests benchmarks
.venv/bin/python -m pytest -q "$@"
