"""Embedding matrices on disk: one emb.npy, or emb-00000.npy, emb-00001.npy, ... when N is large.

Writes (embed) and reads (sample) data/embeddings/<T>/. Up to `max_rows_per_file` rows the matrix is
the single emb.npy the demo always had (byte for byte); past it, consecutive row shards of that many
rows each, so that no single file (or in-memory copy) has to hold all N rows. The reader memory-maps
every file (np.load(mmap_mode='r')): a `ShardedEmbeddings` behaves like a read-only N x D matrix for
row selection (`emb[rows]`) and streams row blocks (`blocks`) for the past-memory samplers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from pipeline.io import write_npy_atomic

SINGLE = "emb.npy"
SHARD_RE = re.compile(r"^emb-(\d{5})\.npy$")


def shard_name(k: int) -> str:
    """File name of row shard k."""
    return f"emb-{k:05d}.npy"


def write_embeddings(emb: np.ndarray, out_dir: str | Path, max_rows_per_file: int) -> list[Path]:
    """Write `emb` as emb.npy (N <= max_rows_per_file) or as row shards; remove the other layout's files."""
    if max_rows_per_file < 1:
        raise ValueError(f"max_rows_per_file must be >= 1, got {max_rows_per_file}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    old = _shard_files(out_dir) + ([out_dir / SINGLE] if (out_dir / SINGLE).exists() else [])
    if len(emb) <= max_rows_per_file:
        paths = [out_dir / SINGLE]
        write_npy_atomic(emb, paths[0])
    else:
        paths = []
        for k, start in enumerate(range(0, len(emb), max_rows_per_file)):
            paths.append(out_dir / shard_name(k))
            write_npy_atomic(np.ascontiguousarray(emb[start:start + max_rows_per_file]), paths[-1])
    for f in old:
        if f not in paths:
            f.unlink()
    return paths


def _shard_files(directory: Path) -> list[Path]:
    return sorted(f for f in directory.glob("emb-*.npy") if SHARD_RE.match(f.name))


class ShardedEmbeddings:
    """A read-only N x D matrix over memory-mapped row shards (row i of the whole = row i - offset of its shard)."""

    ndim = 2

    def __init__(self, shards: Sequence[np.ndarray]) -> None:
        if not shards:
            raise ValueError("no embedding shards")
        dims = {s.shape[1] if s.ndim == 2 else None for s in shards}
        dtypes = {s.dtype for s in shards}
        if len(dims) != 1 or None in dims or len(dtypes) != 1:
            raise ValueError(f"embedding shards disagree: dims {dims}, dtypes {dtypes}")
        self.shards = list(shards)
        self.offsets = np.concatenate([[0], np.cumsum([len(s) for s in shards])]).astype(np.int64)
        self.shape = (int(self.offsets[-1]), dims.pop())
        self.dtype = dtypes.pop()

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        """Rows by index array, boolean mask or slice, as an in-memory array (in the order asked)."""
        if isinstance(rows, slice):
            rows = np.arange(*rows.indices(len(self)))
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64)
        if rows.size and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        rows = np.where(rows < 0, rows + len(self), rows)
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        if len(rows) < 2 or np.all(rows[1:] > rows[:-1]):     # ascending (a subset's block): no sort, no scatter
            return self._ascending(rows, out)
        which = np.searchsorted(self.offsets, rows, side="right") - 1
        for k in np.unique(which):
            sel = which == k
            local = rows[sel] - self.offsets[k]
            order = np.argsort(local, kind="stable")      # read each shard in ascending row order
            out[np.flatnonzero(sel)[order]] = self.shards[k][local[order]]
            release_pages(self.shards[k], int(local.min()), int(local.max()) + 1)  # scattered reads map wide
        return out

    def _ascending(self, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Ascending rows, gathered shard by shard straight into `out` (np.take: half the time of the general
        path's fancy indexing, argsort and scatter)."""
        bounds = np.searchsorted(rows, self.offsets)
        for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            if b > a:
                local = rows[a:b] - self.offsets[k]
                np.take(self.shards[k], local, axis=0, out=out[a:b])
                release_pages(self.shards[k], int(local[0]), int(local[-1]) + 1)
        return out

    def blocks(self, chunk_rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """(start, rows start..start+chunk_rows) over the whole matrix, blocks crossing shard edges joined."""
        yield from iter_row_blocks(self.shards, chunk_rows)


def iter_row_blocks(shards: Sequence[np.ndarray], chunk_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """(global start, block) over consecutive row shards at fixed global boundaries (multiples of chunk_rows)."""
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in shards])]).astype(np.int64)
    n = int(offsets[-1])
    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        pieces = []
        for k, s in enumerate(shards):
            a, b = max(start, offsets[k]), min(stop, offsets[k + 1])
            if a < b:
                pieces.append(s[a - offsets[k]:b - offsets[k]])
        yield start, pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        for k, s in enumerate(shards):                  # the block is used: let its file pages go
            a, b = max(start, offsets[k]), min(stop, offsets[k + 1])
            if a < b:
                release_pages(s, int(a - offsets[k]), int(b - offsets[k]))


def release_pages(arr: np.ndarray, start: int, stop: int) -> None:
    """Drop rows start..stop of a read-only memory map from this process's resident set (MADV_DONTNEED).

    Streaming a memory-mapped matrix otherwise keeps every page it touched mapped, so the resident set
    grows to the whole file (page cache the kernel can reclaim, but counted as RSS). A no-op for arrays
    that are not memory maps, or where madvise is unavailable.
    """
    mm = getattr(arr, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise") or arr.ndim != 2 or stop <= start:
        return
    import mmap

    row_bytes = arr.strides[0]
    base = arr.ctypes.data - np.frombuffer(mm, dtype=np.uint8).ctypes.data   # the array's offset in the map
    lo, hi = base + start * row_bytes, base + stop * row_bytes
    lo = -(-lo // mmap.PAGESIZE) * mmap.PAGESIZE                            # whole pages inside the rows only
    hi = hi // mmap.PAGESIZE * mmap.PAGESIZE
    if hi > lo:
        mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def read_embeddings(directory: str | Path) -> np.ndarray | ShardedEmbeddings:
    """The memory-mapped matrix of data/embeddings/<T>/: emb.npy, or its emb-*.npy shards."""
    directory = Path(directory)
    single, shards = directory / SINGLE, _shard_files(directory)
    if single.exists() and shards:
        raise ValueError(f"{directory} has both {SINGLE} and emb-*.npy shards: re-run the embed stage")
    if single.exists():
        return np.load(single, mmap_mode="r")
    if not shards:
        raise FileNotFoundError(f"{single} (or emb-*.npy shards) does not exist in {directory}")
    expected = [shard_name(k) for k in range(len(shards))]
    if [f.name for f in shards] != expected:
        raise ValueError(f"{directory}: embedding shards are not numbered 0..{len(shards) - 1}: "
                         f"{[f.name for f in shards]}")
    return ShardedEmbeddings([np.load(f, mmap_mode="r") for f in shards])
