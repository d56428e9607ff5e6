"""Neural-collapse (NC) selection past memory: the matrix stays on disk, read in row blocks.

Reads nothing itself: it takes the embedding matrix as row shards (memory maps of emb-*.npy, see
pipeline/embstore.py, or any arrays) and a label per row; returns the selected row indices.
It computes what `nc_select` (pipeline/sampling/nc.py, index 'flat') computes, with a working set
bounded by one block of rows plus a few bytes per row, instead of O(N) float64 distances:

  pass 1: class means, float64 accumulators, over row blocks at the same global boundaries as nc.py;
  k-means: faiss.Kmeans on the same seeded subsample of the fake class as nc.py (random row reads);
  pass 2: each fake row's nearest centroid, kept as one small integer per row -> cluster sizes ->
          every group's quota (per class; per k-means cluster for the fake class), as nc.py splits it;
  pass 3: distances to the class means again; each group keeps its `quota` nearest rows in a bounded
          buffer (merged with every block by a partial sort), ties to the lower row index.

Same blocks, same float32 kernels, same tie rule: on any input `nc_select` accepts, the indices are
identical to `nc_select(..., index='flat')` with the same seed and chunk_rows (tested). What differs:
three sequential passes instead of two (the cluster sizes must be known before the quotas), and the
memory: labels and cluster ids as small integers (2-3 bytes per row) plus the selected rows, where
nc.py keeps a float64 distance, an int32 cluster and int64 class row lists per row (~24 bytes).

`rows` (ascending indices into the matrix) selects over those rows only, as if the matrix were
`embeddings[rows]` (the sample stage's train rows), without building that copy: each block is gathered
from the shards (same block boundaries, counted in the subset, as nc.py's over the copy), and the
indices returned count in the subset. `stream_nc` also returns the kept rows' distances, the class
means, the per-row clusters and, with `keep_distances`, every row's squared distance (float32, 4 bytes
a row: what the sample stage needs for the farthest sampler, top-up order keys and distance columns).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.embstore import ShardedEmbeddings, iter_row_blocks
from pipeline.sampling.nc import (
    DEFAULT_CHUNK_ROWS,
    as_f32,
    class_sums,
    default_classes,
    default_fake_class,
    fit_kmeans,
    kmeans_rows,
    load_faiss,
)
from pipeline.sampling.quotas import class_ratios, n_keep_for, proportional_quotas


def as_shards(embeddings: Any) -> list[np.ndarray]:
    """The row shards of a matrix: a ShardedEmbeddings' shards, a list of arrays, or one array."""
    if isinstance(embeddings, ShardedEmbeddings):
        return embeddings.shards
    if isinstance(embeddings, np.ndarray):
        return [embeddings]
    shards = list(embeddings)
    if not shards or any(not isinstance(s, np.ndarray) or s.ndim != 2 for s in shards):
        raise ValueError("embeddings must be a 2-D array, a ShardedEmbeddings or a list of 2-D arrays")
    if len({s.shape[1] for s in shards}) != 1:
        raise ValueError(f"embedding shards have different widths: {[s.shape[1] for s in shards]}")
    return shards


def take_rows(shards: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
    """The given rows of the sharded matrix, in order (releases the file pages it maps: embstore.release_pages)."""
    return ShardedEmbeddings(shards)[rows]


class TopK:
    """The `k` (distance, row) pairs with the smallest distance seen so far, ties to the lower row."""

    def __init__(self, k: int) -> None:
        self.k = int(k)
        self.rows = np.empty(0, dtype=np.int64)
        self.dist = np.empty(0, dtype=np.float64)

    def push(self, rows: np.ndarray, dist: np.ndarray) -> None:
        if self.k == 0 or not len(rows):
            return
        if len(self.rows) == self.k:                    # full: only rows within the current k-th distance can enter
            keep = dist <= self.dist.max()
            rows, dist = rows[keep], dist[keep]
            if not len(rows):
                return
        rows = np.concatenate([self.rows, rows])
        dist = np.concatenate([self.dist, dist])
        if len(rows) > self.k:
            cut = np.partition(dist, self.k - 1)[self.k - 1]
            cand = np.flatnonzero(dist <= cut)          # everything tied with the k-th stays a candidate
            order = np.lexsort((rows[cand], dist[cand]))[:self.k]
            rows, dist = rows[cand[order]], dist[cand[order]]
        self.rows, self.dist = rows, dist


@dataclass(frozen=True)
class StreamedNC:
    """What the streamed passes found: the selection and the per-row quantities they kept."""

    indices: np.ndarray                  # int64, ascending: what stream_nc_select returns
    distance: np.ndarray                 # float64 per index: L2 distance to its class mean (as nc_rank computes)
    means: dict[Any, np.ndarray]         # class -> float64 mean
    cluster: np.ndarray | None           # per row: k-means cluster of fake rows, -1 elsewhere (None: no k-means)
    sq_distance: np.ndarray | None       # per row float32 squared distance to its class mean (keep_distances)

    def row_distance(self, rows: np.ndarray) -> np.ndarray:
        """L2 distances of the given rows, exactly nc_rank's values (needs keep_distances)."""
        if self.sq_distance is None:
            raise ValueError("row distances need stream_nc(..., keep_distances=True)")
        return np.sqrt(np.maximum(self.sq_distance[rows].astype(np.float64), 0.0))


@dataclass
class StreamPlan:
    """The checked inputs of the streamed passes: the shards, the rows read, the class code of every row."""

    shards: list[np.ndarray]
    subset: np.ndarray | None            # ascending rows of the matrix (None: all of them)
    classes: tuple
    codes: np.ndarray                    # int8 class code per row read
    counts: np.ndarray                   # rows per class
    fake_code: int                       # the k-means class's code (-1: none)
    normalize: bool
    chunk_rows: int

    @property
    def n(self) -> int:
        return len(self.codes)

    @property
    def dim(self) -> int:
        return self.shards[0].shape[1]

    def blocks(self, buf: np.ndarray):
        """(start, float32 block) over the rows read, in `chunk_rows` blocks at nc.py's boundaries (one buffer:
        use each block before asking for the next); a subset is gathered block by block, never as a whole."""
        if self.subset is None:
            for start, block in iter_row_blocks(self.shards, self.chunk_rows):
                yield start, as_f32(block, self.normalize, start, out=buf)
        else:
            for start in range(0, self.n, self.chunk_rows):
                rows = self.subset[start:start + self.chunk_rows]
                yield start, as_f32(take_rows(self.shards, rows), self.normalize, start, out=buf)

    def buffer(self) -> np.ndarray:
        return np.empty((max(min(self.chunk_rows, self.n), 1), self.dim), dtype=np.float32)

    def matrix_rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows counted in the subset -> rows of the matrix."""
        return rows if self.subset is None else self.subset[rows]


def plan_stream(embeddings: Any, labels: Any, classes: Sequence | None, fake_class: Any, rows: Any,
                normalize: bool, chunk_rows: int) -> StreamPlan:
    """Check the inputs of stream_nc (shards, rows, labels, every class present) and code the labels."""
    shards = as_shards(embeddings)
    total, dim = sum(len(s) for s in shards), shards[0].shape[1]
    subset = None if rows is None else _check_rows(rows, total)
    n = total if subset is None else len(subset)
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"labels ({labels.shape}) and embeddings ({n} x {dim}) are misaligned")
    if any(s.dtype.kind != "f" for s in shards):
        raise ValueError("embeddings must be float16/float32/float64")
    classes = tuple(classes) if classes is not None else default_classes(labels)
    codes = _codes(labels, classes)
    counts = np.bincount(codes, minlength=len(classes))
    for k, c in enumerate(classes):
        if counts[k] == 0:
            raise ValueError(f"class {c!r} has no rows: NC sampling needs every class {list(classes)} in the pool")
    fake = default_fake_class(classes) if fake_class == "auto" else fake_class
    return StreamPlan(shards, subset, classes, codes, counts, classes.index(fake) if fake in classes else -1,
                      normalize, chunk_rows)


def _codes(labels: np.ndarray, classes: Sequence) -> np.ndarray:
    codes = np.full(len(labels), -1, dtype=np.int8)
    for k, c in enumerate(classes):
        codes[labels == c] = k
    if (codes < 0).any():
        bad = labels[np.argmax(codes < 0)]
        raise ValueError(f"label {bad!r} is not among the classes {list(classes)}")
    return codes


def _check_rows(rows: Any, total: int) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 1 or (len(rows) and (rows[0] < 0 or rows[-1] >= total)) or np.any(np.diff(rows) <= 0):
        raise ValueError(f"rows must be ascending distinct indices into the {total} embedding rows")
    return rows


def stream_class_means(plan: StreamPlan, buf: np.ndarray) -> np.ndarray:
    """Pass 1: float64 class means [C, D] (the same float32 block products as nc.class_means)."""
    sums = class_sums(plan.blocks(buf), plan.codes, len(plan.classes), plan.dim)
    return sums / np.maximum(plan.counts, 1)[:, None]


def stream_kmeans(plan: StreamPlan, n_clusters: int, seed: int, max_points_per_centroid: int,
                  kmeans_iters: int) -> np.ndarray | None:
    """The fake class's k-means centroids, trained on nc's seeded subsample (random row reads); None without."""
    if not (plan.fake_code >= 0 and n_clusters and n_clusters > 1 and plan.counts[plan.fake_code] > 1):
        return None
    fake_rows = np.flatnonzero(plan.codes == plan.fake_code)
    k = int(min(n_clusters, len(fake_rows)))
    train_rows = kmeans_rows(fake_rows, k, seed, max_points_per_centroid)
    x = as_f32(take_rows(plan.shards, plan.matrix_rows(train_rows)), plan.normalize)
    return fit_kmeans(x, k, seed, kmeans_iters, max_points_per_centroid)


def stream_clusters(plan: StreamPlan, refs: np.ndarray, n_centroids: int, buf: np.ndarray) -> np.ndarray:
    """Pass 2: the nearest centroid of every fake row, one small integer per row (-1 for the other classes)."""
    faiss = load_faiss()
    n_classes = len(plan.classes)
    cluster = np.full(plan.n, -1, dtype=np.int16 if n_centroids < 2**15 else np.int32)
    for start, x in plan.blocks(buf):
        f = np.flatnonzero(plan.codes[start:start + len(x)] == plan.fake_code)
        if len(f):
            d2 = faiss.pairwise_distances(x, refs)  # the whole block against every ref, as nc.py computes it
            cluster[start + f] = np.argmin(d2[f, n_classes:], axis=1)
    return cluster


def group_quotas(plan: StreamPlan, ratios: Mapping, cluster: np.ndarray | None) -> dict[tuple[int, int], TopK]:
    """A TopK per group (class code, k-means cluster or -1) holding its quota, split as nc.py splits it."""
    groups: dict[tuple[int, int], TopK] = {}
    for k, c in enumerate(plan.classes):
        n_keep = n_keep_for(int(plan.counts[k]), ratios[c])
        if k == plan.fake_code and cluster is not None:
            sizes = np.bincount(cluster[cluster >= 0])
            for j, q in enumerate(proportional_quotas(sizes, n_keep)):
                groups[(k, j)] = TopK(int(q))
        else:
            groups[(k, -1)] = TopK(n_keep)
    return groups


def stream_nearest(plan: StreamPlan, refs: np.ndarray, cluster: np.ndarray | None, groups: dict[tuple[int, int], TopK],
                   buf: np.ndarray, keep_distances: bool) -> np.ndarray | None:
    """Pass 3: each row's distance to its class mean; every group keeps its quota of nearest rows.

    Returns every row's squared distance (float32) with `keep_distances`, else None."""
    faiss = load_faiss()
    sq_distance = np.empty(plan.n, dtype=np.float32) if keep_distances else None
    for start, x in plan.blocks(buf):
        code = plan.codes[start:start + len(x)].astype(np.int64)
        d2 = faiss.pairwise_distances(x, refs)
        own = d2[np.arange(len(x)), code]
        if sq_distance is not None:
            sq_distance[start:start + len(x)] = own
        dist = np.sqrt(np.maximum(own.astype(np.float64), 0.0))
        rows = np.arange(start, start + len(x), dtype=np.int64)
        sub = np.full(len(x), -1, dtype=np.int64) if cluster is None else cluster[start:start + len(x)].astype(np.int64)
        for (k, j), top in groups.items():
            m = (code == k) & (sub == j)
            if m.any():
                top.push(rows[m], dist[m])
    return sq_distance


def stream_nc_select(embeddings: Any, labels: Any, ratio: float, **kwargs: Any) -> np.ndarray:
    """NC class-mean selection over row shards in three streamed passes; row indices ascending (see module doc).

    Takes the arguments of `stream_nc` (`rows` for a subset of the matrix)."""
    return stream_nc(embeddings, labels, ratio, **kwargs).indices


def stream_nc(embeddings: Any, labels: Any, ratio: float, *, n_clusters: int, seed: int,
              class_ratio: Mapping | None = None, normalize: bool = True, classes: Sequence | None = None,
              fake_class: Any = "auto", max_points_per_centroid: int = 256, kmeans_iters: int = 20,
              chunk_rows: int = DEFAULT_CHUNK_ROWS, rows: Any = None, keep_distances: bool = False) -> StreamedNC:
    """The streamed selection (see the module doc) with its distances, class means and clusters."""
    plan = plan_stream(embeddings, labels, classes, fake_class, rows, normalize, chunk_rows)
    ratios = class_ratios(plan.classes, ratio, class_ratio)
    buf = plan.buffer()
    means = stream_class_means(plan, buf)
    refs = means.astype(np.float32)
    centroids = stream_kmeans(plan, n_clusters, seed, max_points_per_centroid, kmeans_iters)
    cluster = None
    if centroids is not None:
        refs = np.concatenate([refs, centroids])
        cluster = stream_clusters(plan, refs, len(centroids), buf)
    groups = group_quotas(plan, ratios, cluster)
    sq_distance = stream_nearest(plan, refs, cluster, groups, buf, keep_distances)
    tops = [top for top in groups.values() if len(top.rows)]
    picked = np.concatenate([t.rows for t in tops]) if tops else np.empty(0, dtype=np.int64)
    dist = np.concatenate([t.dist for t in tops]) if tops else np.empty(0, dtype=np.float64)
    order = np.argsort(picked, kind="stable")
    return StreamedNC(indices=picked[order], distance=dist[order],
                      means={c: means[k] for k, c in enumerate(plan.classes)}, cluster=cluster, sq_distance=sq_distance)
