"""Neural-collapse (NC) selection past memory: the matrix stays on disk, read in row blocks.

Reads nothing itself: it takes the embedding matrix as row shards (memory maps of emb-*.npy, see
pipeline/embstore.py, or any arrays) and a label per row; returns the selected row indices.
It computes what `nc_select` (pipeline/sampling/nc.py, index 'flat') computes, by the same code: the row
source differs, the ranking does not (`nc.rank_blocks`, whose arithmetic is pipeline/sampling/kernel.py):

  pass 1: class means (float64 sums of the normalised rows), and the seeded k-means subsample of the fake
          class gathered on the way (nc.py's rows, so no random reads);
  k-means: faiss.Kmeans on that subsample;
  pass 2: every row against [class means; centroids]: its squared distance to its class mean (float32)
          and, for a fake row, its nearest centroid; then `select_from_ranking`, as nc_select does.

Same blocks (`chunk_rows`, counted from row 0 of the rows read), same kernel, same selection: on any input
`nc_select` accepts, the indices are identical to `nc_select(..., index='flat')` with the same seed and
chunk_rows (tested). A block crossing a shard edge is joined from both shards; the file pages of a block are
dropped from the resident set once it is used (embstore.release_pages), so the working set is the per-row
arrays (distance float64, class rows int64, cluster int32, label code int8: ~21 bytes a row, 210 MB at 10M
rows) plus one block and the sub-block buffers, whatever the size of the matrix.

`rows` (ascending indices into the matrix) selects over those rows only, as if the matrix were
`embeddings[rows]` (the sample stage's train rows), without building that copy: each block is gathered
from the shards (same block boundaries, counted in the subset, as nc.py's over the copy), and the
indices returned count in the subset. `stream_nc` also returns the kept rows' distances, the class
means, the per-row clusters and, with `keep_distances`, every row's distance (what the sample stage needs
for the farthest sampler, top-up order keys and distance columns).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.embstore import ShardedEmbeddings, iter_row_blocks
from pipeline.sampling.nc import (
    DEFAULT_CHUNK_ROWS,
    default_classes,
    default_fake_class,
    label_codes,
    rank_blocks,
    select_from_ranking,
)
from pipeline.sampling.quotas import class_ratios


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


@dataclass(frozen=True)
class StreamedNC:
    """What the streamed passes found: the selection and the per-row quantities they kept."""

    indices: np.ndarray                  # int64, ascending: what stream_nc_select returns
    distance: np.ndarray                 # float64 per index: L2 distance to its class mean (as nc_rank computes)
    means: dict[Any, np.ndarray]         # class -> float64 mean
    cluster: np.ndarray | None           # per row: k-means cluster of fake rows, -1 elsewhere (None: no k-means)
    all_distance: np.ndarray | None      # per row float64 distance to its class mean (keep_distances)

    def row_distance(self, rows: np.ndarray) -> np.ndarray:
        """L2 distances of the given rows, exactly nc_rank's values (needs keep_distances)."""
        if self.all_distance is None:
            raise ValueError("row distances need stream_nc(..., keep_distances=True)")
        return self.all_distance[rows]


@dataclass
class StreamPlan:
    """The checked inputs of the streamed passes: the shards, the rows read, the class code of every row."""

    shards: list[np.ndarray]
    subset: np.ndarray | None            # ascending rows of the matrix (None: all of them)
    classes: tuple
    codes: np.ndarray                    # int8 class code per row read
    fake: Any                            # the k-means class (None: none)
    chunk_rows: int

    @property
    def n(self) -> int:
        return len(self.codes)

    def raw_blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(start, rows as stored) over the rows read, in `chunk_rows` blocks at nc.py's boundaries; a subset is
        gathered block by block, never as a whole."""
        if self.subset is None:
            yield from iter_row_blocks(self.shards, self.chunk_rows)
            return
        for start in range(0, self.n, self.chunk_rows):
            yield start, take_rows(self.shards, self.subset[start:start + self.chunk_rows])


def plan_stream(embeddings: Any, labels: Any, classes: Sequence | None, fake_class: Any, rows: Any,
                chunk_rows: int) -> StreamPlan:
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
    codes = label_codes(labels, classes)
    if (codes < 0).any():
        raise ValueError(f"label {labels[np.argmax(codes < 0)]!r} is not among the classes {list(classes)}")
    counts = np.bincount(codes, minlength=len(classes))
    for k, c in enumerate(classes):
        if counts[k] == 0:
            raise ValueError(f"class {c!r} has no rows: NC sampling needs every class {list(classes)} in the pool")
    fake = default_fake_class(classes) if fake_class == "auto" else fake_class
    return StreamPlan(shards, subset, classes, codes, fake, chunk_rows)


def _check_rows(rows: Any, total: int) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 1 or (len(rows) and (rows[0] < 0 or rows[-1] >= total)) or np.any(np.diff(rows) <= 0):
        raise ValueError(f"rows must be ascending distinct indices into the {total} embedding rows")
    return rows


def stream_nc_select(embeddings: Any, labels: Any, ratio: float, **kwargs: Any) -> np.ndarray:
    """NC class-mean selection over row shards in two streamed passes; row indices ascending (see module doc).

    Takes the arguments of `stream_nc` (`rows` for a subset of the matrix)."""
    return stream_nc(embeddings, labels, ratio, **kwargs).indices


def stream_nc(embeddings: Any, labels: Any, ratio: float, *, n_clusters: int, seed: int,
              class_ratio: Mapping | None = None, normalize: bool = True, classes: Sequence | None = None,
              fake_class: Any = "auto", max_points_per_centroid: int = 256, kmeans_iters: int = 20,
              chunk_rows: int = DEFAULT_CHUNK_ROWS, rows: Any = None, keep_distances: bool = False,
              threads: int | None = None) -> StreamedNC:
    """The streamed selection (see the module doc) with its distances, class means and clusters.

    `threads`: threads of the block scans (nc.scan_threads: faiss's setting when None; never changes results)."""
    plan = plan_stream(embeddings, labels, classes, fake_class, rows, chunk_rows)
    class_ratios(plan.classes, ratio, class_ratio)            # a bad ratio fails before the passes
    ranking = rank_blocks(plan.raw_blocks, plan.codes, plan.classes, plan.fake, n_clusters=n_clusters, seed=seed,
                          normalize=normalize, max_points_per_centroid=max_points_per_centroid,
                          kmeans_iters=kmeans_iters, threads=threads)
    idx = select_from_ranking(ranking, ratio, class_ratio)
    return StreamedNC(indices=idx, distance=ranking.distance[idx], means=ranking.means,
                      cluster=None if ranking.centroids is None else ranking.cluster,
                      all_distance=ranking.distance if keep_distances else None)
