"""Atomic file writes: every output goes to a temp name in its directory, then os.replace.

An interrupted stage therefore leaves either the old file or none, never half a file
that the next stage would read as finished. Also the strict YAML loader of params files (ParamsLoader).
"""

from __future__ import annotations

import errno
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
import yaml

_UMASK = os.umask(0)
os.umask(_UMASK)


class StrictYAMLError(yaml.YAMLError):
    """A params file that is valid YAML but not allowed: a key given twice, or aliases that expand too far."""


MAX_PARAMS_VALUES = 100_000  # params.yaml holds a few hundred; an alias may repeat a block, not explode it


class ParamsLoader(yaml.SafeLoader):
    """yaml's SafeLoader, stricter for params files (a StrictYAMLError naming the line or the count):

    - a key given twice in one mapping: SafeLoader keeps the last without a word (a second `train:` block
      silently replaces the first);
    - anchors and aliases (`&name`, `*name`, `<<: *name`; yaml.safe_dump writes them for a block used twice) are
      read, but the document may expand to at most MAX_PARAMS_VALUES values, counted on the node graph before
      anything is built: a few lines of nested aliases (the "billion laughs") would expand into gigabytes as soon
      as the values are walked or copied. An alias inside its own anchor (a recursive value) is refused too.
    """

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            n = expanded_values(node, {}, set())
            if n > MAX_PARAMS_VALUES:
                raise StrictYAMLError(f"its anchors and aliases expand to {n:,} values (at most {MAX_PARAMS_VALUES:,}"
                                      " allowed); write the values out")
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> dict:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: merged keys may be overridden
                continue
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                if key in first:
                    raise StrictYAMLError(f"line {line}: key {key!r} is given twice in one mapping (first on line "
                                          f"{first[key]}); YAML would silently keep only the last")
                first[key] = line
            except TypeError:  # an unhashable key: SafeLoader's own error follows
                break
        return super().construct_mapping(node, deep)


def expanded_values(node: Any, memo: dict[int, int], active: set[int]) -> int:
    """How many values (scalars, lists, mappings) a YAML node graph holds once every alias is expanded; each node is
    visited once (memo), so a billion-laughs graph is counted in microseconds."""
    if id(node) in memo:
        return memo[id(node)]
    if id(node) in active:
        raise StrictYAMLError(f"line {node.start_mark.line + 1}: an alias inside its own anchor (a recursive value)")
    active.add(id(node))
    children = [] if isinstance(node, yaml.ScalarNode) else node.value
    parts = [c for pair in children for c in pair] if isinstance(node, yaml.MappingNode) else children
    memo[id(node)] = 1 + sum(expanded_values(c, memo, active) for c in parts)
    active.discard(id(node))
    return memo[id(node)]


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
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        # a write that fails (a full disk) names no file; the message must say which output it was
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def check_writable(path: str | Path) -> Path:
    """`path` when a file can be created there, else an OSError naming `path` and the cause; nothing is left behind
    (a probe file in an existing folder; for a folder still to be made, its nearest existing parent's access).
    Called before a stage's work, so that an unwritable output fails at once, not after an hour of work."""
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        existing = next(p for p in [folder, *folder.parents] if p.exists())
        if not existing.is_dir():
            raise OSError(errno.ENOTDIR, f"{existing} is a file, not a folder", str(path))
        if not os.access(existing, os.W_OK | os.X_OK):
            raise OSError(errno.EACCES, f"cannot create folders in {existing}", str(path))
        return path
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write this output ({exc.strerror})", str(path)) from None
    os.close(fd)
    os.unlink(probe)
    return path


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


class StagedDir:
    """A directory built under a temp name beside `path` and swapped in for it by `commit()`.

    For a stage's output folder (a model directory): `staged = StagedDir(out)`, write everything under
    `staged.path`, then `staged.commit()`. Until the commit, `path` keeps its previous content whole; a run that
    fails or is killed before it never leaves a half-written folder there. Without a commit the temp folder is
    removed when the process ends (`discard()`, or at exit after an exception); the temp folders of a killed run
    are removed when the next StagedDir of the same path is made. With `marker` (a model folder's `model.pt`), an
    existing non-empty `path` without that file is refused (FileExistsError) before anything is written: it is not
    a folder this writer made, and the swap would delete what it holds.
    """

    def __init__(self, path: str | Path, marker: str | None = None) -> None:
        import shutil
        import weakref

        self.target = Path(path)
        if marker and self.target.is_dir() and any(self.target.iterdir()) and not (self.target / marker).exists():
            raise FileExistsError(f"{self.target} exists and holds no {marker}: not a folder this command writes; "
                                  "refusing to replace it (give a new or empty folder)")
        if self.target.exists() and not self.target.is_dir():
            raise FileExistsError(f"{self.target} exists and is not a folder")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        for stale in [*self.target.parent.glob(f".{self.target.name}.build-*"),
                      *self.target.parent.glob(f".{self.target.name}.old-*")]:
            shutil.rmtree(stale, ignore_errors=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.build-", dir=self.target.parent))
        os.chmod(self.path, 0o777 & ~_UMASK)  # mkdtemp makes it private; the output is an ordinary shared dir
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.path), True)

    def commit(self) -> Path:
        """Swap the built folder in: the old `path` is moved aside, the new one renamed into place, the old removed."""
        import shutil

        if self.target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.old-", dir=self.target.parent))
            os.replace(self.target, old / self.target.name)
            os.replace(self.path, self.target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.path, self.target)
        self._cleanup.detach()
        return self.target

    def discard(self) -> None:
        """Remove the temp folder (nothing committed); `path` is left as it was."""
        self._cleanup()


@contextmanager
def atomic_dir(path: str | Path, marker: str | None = None) -> Iterator[Path]:
    """Yield a fresh temp directory beside `path`; swap it in for `path` only if the block succeeds (StagedDir).

    The old `path` is moved aside, the new one renamed into place, then the old one removed; a
    failed block leaves `path` as it was. Temp dirs left by a killed run are removed on entry.
    """
    staged = StagedDir(path, marker)
    try:
        yield staged.path
        staged.commit()
    finally:
        staged.discard()
