"""The row-block arithmetic of NC sampling, shared by the in-memory (nc.py) and streamed (streaming.py) scans.

Reads nothing and writes nothing. Both NC paths hand these functions the same row blocks, so their float32
results are identical, bit for bit, whatever the storage. A caller's block (`chunk_rows` rows, any size) is
worked on in sub-blocks of SUB_ROWS rows at fixed offsets, small enough to stay in the CPU cache:

- float16 -> float32 through torch's vectorised copy (F16C): exact, since every half is a float, and about
  20x faster than numpy's scalar cast (measured: 17 vs 420 ms per 1M x 256 rows); torch is imported for it
  only when it is loaded already or the scan holds at least TORCH_WORTH_VALUES values (the demo's and the
  report's small matrices take numpy's cast, with the same values); float32/float64 input is copied (float64
  rounded) by numpy;
- squared norm sq_i of every row (numpy einsum) and its scale inv_i = 1/sqrt(sq_i) (0 for a zero row; 1
  without normalisation): the normalised rows x_i * inv_i are never written out;
- `scan_sums` (pass 1): per-class sums of x_i * inv_i (one GEMV per class and sub-block), added in float64
  in sub-block order; every row's inv_i and |x^_i|^2 = sq_i inv_i^2 (8 bytes a row, kept for pass 2); and the
  normalised rows the caller asks for (the k-means subsample);
- `scan_distances` (pass 2): squared L2 distance of every row to its class mean, |x^|^2 + |mu|^2 - 2 inv x.mu,
  and for the rows of one class (the fakes) the nearest of the other references (k-means centroids), from one
  GEMM per sub-block against all references.

Sub-blocks run on `threads` Python threads (numpy and torch release the GIL); each BLAS call runs on one
thread (threadpoolctl) and partial sums are added in sub-block order, so results do not depend on the thread
count. Multi-threaded BLAS and OpenMP on these small GEMMs spin badly on a loaded 2-core machine (measured:
10x slower), where independent Python threads just run one after the other.
"""

from __future__ import annotations

import functools
import itertools
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

SUB_ROWS = 2048
TORCH_MIN_VALUES = 1 << 14        # smaller float16 blocks: numpy's cast (no torch call overhead)
TORCH_WORTH_VALUES = 1 << 23      # a scan or block this large is worth importing torch (~2 s) for its fast copy
_local = threading.local()


@functools.cache
def load_torch() -> Any:
    """torch, imported on first use. It warns once per process when it wraps a read-only array (a memory map):
    that warning is consumed here, silently, since the copy only reads."""
    import torch

    probe = np.zeros(1, dtype=np.float16)
    probe.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.from_numpy(probe)
    return torch


def check_finite(finite_rows: np.ndarray, start: int) -> None:
    """ValueError naming the first row (counted from `start`) whose flag is False."""
    if not finite_rows.all():
        row = start + int(np.argmin(finite_rows))
        raise ValueError(f"embeddings contain NaN or inf (first at row {row}); re-run the embed stage")


def use_torch(values: int) -> bool:
    """Whether float16 copies of a block or scan of `values` values go through torch: when it is imported
    already, or when the work is large enough to pay for importing it (the report's and the demo's small
    matrices convert in a few ms with numpy and never import torch)."""
    return "torch" in sys.modules or values >= TORCH_WORTH_VALUES


def to_f32(block: np.ndarray, out: np.ndarray | None = None, fast: bool | None = None) -> np.ndarray:
    """`block` as a C-contiguous float32 copy, written into `out[:len(block)]` when given; float16 through
    torch when `fast` (None: use_torch(block.size))."""
    x = np.empty(block.shape, dtype=np.float32) if out is None else out[:len(block)]
    fast = use_torch(block.size) if fast is None else fast
    if fast and block.dtype == np.float16 and block.size >= TORCH_MIN_VALUES:
        torch = load_torch()
        torch.from_numpy(x).copy_(torch.from_numpy(np.ascontiguousarray(block)))
    else:
        np.copyto(x, block, casting="same_kind")
    return x


def row_scale(x: np.ndarray, normalize: bool, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(squared norm, scale) of every float32 row: scale = 1/norm (0 for a zero row), or 1 without normalisation.

    A NaN/inf element makes its row's squared norm non-finite: a ValueError naming the row (counted from `start`)."""
    sq = np.einsum("ij,ij->i", x, x)
    check_finite(np.isfinite(sq), start)
    if not normalize:
        return sq, np.ones_like(sq)
    inv = np.zeros_like(sq)
    np.divide(1.0, np.sqrt(sq), out=inv, where=sq > 0)
    return sq, inv


def normalized(block: np.ndarray, normalize: bool, start: int = 0, out: np.ndarray | None = None) -> np.ndarray:
    """The rows as float32, checked finite, L2-normalised when asked (zero rows stay zero): x * scale."""
    x = to_f32(block, out)
    _, inv = row_scale(x, normalize, start)
    if normalize:
        x *= inv[:, None]            # a plain multiply: a masked divide over the block is several times slower
    return x


def _buffer(rows: int, dim: int) -> np.ndarray:
    """This thread's float32 work buffer of at least rows x dim (reused across sub-blocks and calls)."""
    buf = getattr(_local, "buf", None)
    if buf is None or buf.shape[0] < rows or buf.shape[1] != dim:
        buf = _local.buf = np.empty((max(rows, SUB_ROWS), dim), dtype=np.float32)
    return buf


@contextmanager
def _workers(threads: int, fast: bool) -> Iterator[Callable]:
    """A map over sub-block tasks in order (a thread pool when threads > 1), with every BLAS on one thread."""
    from threadpoolctl import threadpool_limits

    torch = load_torch() if fast else None
    torch_threads = torch.get_num_threads() if torch else 0
    if torch:
        torch.set_num_threads(1)       # the copies run in our threads; torch's own pool would spin beside them
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            if threads <= 1:
                yield map
            else:
                with ThreadPoolExecutor(max_workers=int(threads), thread_name_prefix="nc-scan") as pool:
                    yield pool.map
    finally:
        if torch:
            torch.set_num_threads(torch_threads)


def _peek(blocks: Iterable[tuple[int, np.ndarray]]) -> tuple[Iterator[tuple[int, np.ndarray]], int]:
    """(the same blocks, the width of their rows); ValueError when there are none."""
    it = iter(blocks)
    first = next(it, None)
    if first is None:
        raise ValueError("no rows to scan")
    return itertools.chain([first], it), int(first[1].shape[1])


def _subs(start: int, block: np.ndarray) -> list[tuple[int, np.ndarray]]:
    return [(start + a, block[a:a + SUB_ROWS]) for a in range(0, len(block), SUB_ROWS)]


def scan_sums(blocks: Iterable[tuple[int, np.ndarray]], codes: np.ndarray, n_classes: int, normalize: bool,
              threads: int = 1, gather: np.ndarray | None = None) -> RowScan:
    """Pass 1 over (start, raw rows) blocks in row order: float64 [C, D] sums of the normalised rows per class
    code (-1: no class), every row's scale, and the normalised float32 rows at the ascending positions `gather`."""
    gather = np.empty(0, dtype=np.int64) if gather is None else np.asarray(gather, dtype=np.int64)
    n = len(codes)
    blocks, dim = _peek(blocks)
    fast = use_torch(n * dim)
    out = RowScan(np.zeros(0), np.empty(n, dtype=np.float32), np.empty(n, dtype=np.float32), np.zeros(0))
    sums, picked = None, []

    def task(item: tuple[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        start, raw = item
        stop = start + len(raw)
        x = to_f32(raw, _buffer(len(raw), raw.shape[1]), fast)
        sq, inv = row_scale(x, normalize, start)
        out.inv[start:stop] = inv
        out.norm2[start:stop] = sq * inv * inv
        code = codes[start:stop]
        # one GEMV per class: numpy's OpenBLAS runs x^T W (W: n x C) 3-5x slower at these sizes (measured)
        part = np.stack([np.where(code == k, inv, np.float32(0.0)) @ x for k in range(n_classes)])
        lo, hi = np.searchsorted(gather, [start, stop])
        local = gather[lo:hi] - start
        return part, x[local] * inv[local, None]

    with _workers(threads, fast) as run:
        for start, block in blocks:
            for part, rows in run(task, _subs(start, block)):
                sums = part.astype(np.float64) if sums is None else sums + part
                picked.append(rows)
    out.sums = sums
    out.gathered = np.concatenate(picked)
    return out


@dataclass
class RowScan:
    """What pass 1 keeps: class sums, and per row its scale and squared normalised norm (pass 2 reuses them)."""

    sums: np.ndarray             # float64 [C, D]
    inv: np.ndarray              # float32 [N]: 1/||x|| (0 for a zero row), or 1 without normalisation
    norm2: np.ndarray            # float32 [N]: ||x * inv||^2 (1 up to rounding, 0 for a zero row)
    gathered: np.ndarray         # float32 [len(gather), D]: the normalised rows asked for


def scan_distances(blocks: Iterable[tuple[int, np.ndarray]], codes: np.ndarray, refs: np.ndarray, n_classes: int,
                   cluster_code: int, scan: RowScan, threads: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """Pass 2: every row's float32 squared distance to its own class reference (refs[code]) and, when refs holds
    more than the class references, the nearest of refs[n_classes:] for the rows of class `cluster_code`
    (int32, -1 elsewhere; None without extra references). `scan`: pass 1 over the same blocks."""
    refs = np.ascontiguousarray(refs, dtype=np.float32)
    refs_t = np.ascontiguousarray(refs.T)
    ref_sq = np.einsum("ij,ij->i", refs, refs)
    n = len(codes)
    fast = use_torch(n * refs.shape[1])
    own = np.empty(n, dtype=np.float32)
    cluster = np.full(n, -1, dtype=np.int32) if len(refs) > n_classes else None

    def task(item: tuple[int, np.ndarray]) -> None:
        start, raw = item
        stop = start + len(raw)
        x = to_f32(raw, _buffer(len(raw), raw.shape[1]), fast)
        g = x @ refs_t
        g *= (-2.0 * scan.inv[start:stop])[:, None]
        g += ref_sq
        g += scan.norm2[start:stop, None]          # squared distance to every reference
        code = codes[start:stop].astype(np.intp)
        own[start:stop] = g[np.arange(len(x)), code]
        if cluster is not None:
            f = np.flatnonzero(code == cluster_code)
            cluster[start + f] = np.argmin(g[f, n_classes:], axis=1)

    with _workers(threads, fast) as run:
        for start, block in blocks:
            for _ in run(task, _subs(start, block)):
                pass
    return own, cluster
