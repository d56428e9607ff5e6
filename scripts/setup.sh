#!/usr/bin/env bash
# Create or update .venv with the pinned dependencies of pyproject.toml (idempotent: a re-run with
# nothing changed installs nothing). CPU-only users: HARDSET_TORCH_INDEX=<PyTorch CPU wheel index>.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "hardset needs Python 3.11 (found $("$PY" --version)); set PYTHON=/path/to/python3.11" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.hardset-installed
want=$(sha256sum pyproject.toml | cut -c1-16)${HARDSET_TORCH_INDEX:+-cpu}
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip "setuptools<81" wheel
  if [ -n "${HARDSET_TORCH_INDEX:-}" ]; then
    .venv/bin/python -m pip install -q torch==2.9.1 torchaudio==2.9.1 --index-url "$HARDSET_TORCH_INDEX"
  fi
  .venv/bin/python -m pip install -q -e ".[dev]"
  echo "$want" > "$stamp"
fi
# DVC: no analytics, no update checks (also set in .dvc/config; this covers a user-level config).
export DVC_NO_ANALYTICS=1
.venv/bin/python -c "import pipeline, torch, faiss, dvc; print('hardset env ready: torch', torch.__version__)"
