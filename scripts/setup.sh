#!/usr/bin/env bash
# Create or update .venv with the pinned dependencies of pyproject.toml, every other package at the version of
# constraints.txt (idempotent: a re-run with nothing changed installs nothing). CPU-only users:
# HARDSET_TORCH_INDEX=<PyTorch CPU wheel index>. The install goes through uv (pinned, from PyPI: it downloads,
# unpacks and byte-compiles in parallel, about half pip's time); HARDSET_INSTALLER=pip, or a failed uv, takes pip.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
UV_VERSION=0.13.9
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "hardset needs Python 3.11 (found $("$PY" --version)); set PYTHON=/path/to/python3.11" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.hardset-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)${HARDSET_TORCH_INDEX:+-cpu}

with_uv() {
  [ "${HARDSET_INSTALLER:-uv}" = uv ] || return 1
  [ -x .venv/bin/uv ] && [ "$(.venv/bin/uv --version 2>/dev/null | cut -d' ' -f2)" = "$UV_VERSION" ] \
    || .venv/bin/python -m pip install -q "uv==$UV_VERSION" || return 1
  local uv=(.venv/bin/uv pip install -q --python .venv/bin/python --compile-bytecode -c constraints.txt)
  if [ -n "${HARDSET_TORCH_INDEX:-}" ]; then
    "${uv[@]}" torch==2.9.1 torchaudio==2.9.1 --index-url "$HARDSET_TORCH_INDEX" || return 1
  fi
  "${uv[@]}" -e ".[dev]"
}

with_pip() {
  .venv/bin/python -m pip install -q --upgrade pip "setuptools<81" wheel
  if [ -n "${HARDSET_TORCH_INDEX:-}" ]; then
    .venv/bin/python -m pip install -q -c constraints.txt torch==2.9.1 torchaudio==2.9.1 \
      --index-url "$HARDSET_TORCH_INDEX"
  fi
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
}

if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  with_uv || { echo "setup: uv unavailable or failed; installing with pip" >&2; with_pip; }
  echo "$want" > "$stamp"
fi
# DVC: no analytics, no update checks (also set in .dvc/config; this covers a user-level config).
export DVC_NO_ANALYTICS=1
.venv/bin/python -c "import pipeline, torch, faiss, dvc; print('hardset env ready: torch', torch.__version__)"
