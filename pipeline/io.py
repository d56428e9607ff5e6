"""Atomic file writes: every output goes to a temp name in its directory, then os.replace.

An interrupted stage therefore leaves either the old file or none, never half a file
that the next stage would read as finished.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the real suffix so that writers that pick a format by extension (soundfile) still work.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix if suffix is not None else path.suffix,
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs should read like any other file
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection, OWASP).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.I)


def neutralise_formula(text: str) -> str:
    """`text` with a leading `'` when a spreadsheet would run it as a formula; numbers and a lone `-` stay."""
    if not text.startswith(FORMULA_START) or text == "-" or _NUMBER.fullmatch(text):
        return text
    return "'" + text


def csv_safe(df: Any) -> Any:
    """A copy of a DataFrame whose text cells are passed through `neutralise_formula` (for CSV outputs)."""
    out = df.copy()
    for column in out.columns:
        if out[column].dtype == object or str(out[column].dtype) in ("string", "str"):
            out[column] = [neutralise_formula(v) if isinstance(v, str) else v for v in out[column]]
    return out


def write_parquet_atomic(table: pa.Table, path: str | Path) -> None:
    """Write a pyarrow table to Parquet atomically."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_json_atomic(obj: Any, path: str | Path) -> None:
    """Write JSON (sorted keys, indented, NaN refused) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=_jsonable) + "\n")


def write_text_atomic(text: str, path: str | Path) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes_atomic(data: bytes, path: str | Path) -> None:
    """Write bytes atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_torch_atomic(obj: Any, path: str | Path) -> None:
    """torch.save `obj` into memory, then write the bytes atomically.

    torch.save names the archive's inner folder after the file it writes to, so saving straight to a
    random temp name put that name inside model.pt and made its bytes differ on every run; from a
    buffer the folder is always `archive`, so the same weights give the same bytes.
    """
    import io

    import torch  # only the torch stages pay for importing it

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes_atomic(buf.getvalue(), path)


def write_npy_atomic(array: np.ndarray, path: str | Path) -> None:
    """Write a .npy file atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temp directory beside `path`; swap it in for `path` only if the block succeeds.

    The old `path` is moved aside, the new one renamed into place, then the old one removed; a
    failed block leaves `path` as it was. Temp dirs left by a killed run are removed on entry.
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in [*path.parent.glob(f".{path.name}.build-*"), *path.parent.glob(f".{path.name}.old-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.build-", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes it private; the output is an ordinary shared dir
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
