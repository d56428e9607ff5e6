"""Neural-collapse (NC) class-mean sampling with FAISS (Yousif et al. 2024, arXiv 2404.13008).

Reads nothing and writes nothing: pure functions on an embedding matrix (N x D, float16 or float32)
and a label vector. A teacher trained on a pool maps each class onto a tight cluster around its class
mean in the penultimate layer ("neural collapse"); the clips nearest to their class mean are the
most typical ones, and a small set of them trains a detector nearly as well as the whole pool.

Per class c with rows X_c (L2-normalised by default):
  1. mu_c = mean(X_c), accumulated in float64 over row blocks;
  2. d_i = ||x_i - mu_c||, computed exactly, brute force, with ||x||^2 + ||mu||^2 - 2 x.mu between each
     block of rows and [class means; k-means centroids] (index `flat`, the default; kernel.py), or by an
     `IndexIVFFlat` over the class rows queried by the mean with k = n_keep
     (index `ivf`, approximate; for ONE query it is never faster than the exact scan, it is there for
     users who want to try it);
  3. keep the n_keep = round(ratio_c * n_c) (at least 1) rows with the smallest d_i; ties go to the
     lower row index, so the result is deterministic.
For the fake class ("enhanced sampling"), the rows are first clustered with `faiss.Kmeans`
(trained on a seeded subsample of at most `max_points_per_centroid` rows per centroid, then every row
assigned to its nearest centroid), n_keep is split over the clusters in proportion to their sizes
(largest remainder, at least one per non-empty cluster), and each cluster keeps its rows nearest to
the class mean. No fake mode is lost even when it lies far from the class mean.

Arithmetic: pipeline/sampling/kernel.py, shared with the streamed path (streaming.py), so that both give the
same picks bit for bit: float16 rows are converted in cache-sized sub-blocks (never as a whole), normalised
on the fly, and meet the class means and centroids in one small GEMM per sub-block.
Memory: O(N) scalars plus a few MB of sub-block buffers beyond the input.
Time: two sequential passes, O(N * D * (C + k)), plus a constant k-means training cost: linear in N.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.sampling import kernel
from pipeline.sampling.quotas import check_ratio, class_ratios, n_keep_for, proportional_quotas
from pipeline.schema import LABEL_INDEX, LABELS

DEFAULT_CHUNK_ROWS = 65536
STRING_CLASSES = LABELS
INT_CLASSES = tuple(sorted(LABEL_INDEX.values()))  # spoof = 0, bonafide = 1 (the models' label index)


@dataclass(frozen=True)
class NCRanking:
    """Per-row NC quantities of one pool: distance to the class mean and k-means cluster (-1: none)."""

    distance: np.ndarray                     # float64 [N], L2 distance to the row's class mean
    cluster: np.ndarray                      # int32 [N], k-means cluster of fake rows, -1 elsewhere
    means: dict[Any, np.ndarray]             # class -> mean (float64 [D])
    class_rows: dict[Any, np.ndarray]        # class -> row indices (ascending)
    fake_class: Any = None
    centroids: np.ndarray | None = field(default=None, repr=False)


def load_faiss():
    """The faiss module, imported on first use: the stage dispatcher must not pay for it."""
    import faiss

    return faiss


def default_classes(labels: np.ndarray) -> tuple:
    """The classes every pool must have: ('bonafide', 'spoof') for string labels, (0, 1) for integers."""
    if labels.dtype.kind in "iu":
        return INT_CLASSES
    return STRING_CLASSES


def default_fake_class(classes: Sequence) -> Any:
    """'spoof' for string classes, 0 (the spoof index) for integer classes."""
    spoof = LABEL_INDEX["spoof"]
    return "spoof" if "spoof" in classes else (spoof if spoof in classes else None)


def check_inputs(embeddings: np.ndarray, labels: Any, classes: Sequence | None = None,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS, check_finite: bool = True) -> tuple[np.ndarray, tuple]:
    """Validate an (embeddings, labels) pair; return (labels as an array, classes).

    Raises ValueError for a matrix that is not 2-D, a length mismatch, NaN/inf rows (naming the first),
    labels outside `classes` and a class without rows.
    """
    labels, classes, _ = checked_codes(embeddings, labels, classes, chunk_rows, check_finite)
    return labels, classes


def checked_codes(embeddings: np.ndarray, labels: Any, classes: Sequence | None = None,
                  chunk_rows: int = DEFAULT_CHUNK_ROWS,
                  check_finite: bool = True) -> tuple[np.ndarray, tuple, np.ndarray]:
    """check_inputs, plus every row's class as an int8 index into `classes`."""
    if not isinstance(embeddings, np.ndarray) or embeddings.ndim != 2:
        got = getattr(embeddings, "shape", type(embeddings))
        raise ValueError(f"embeddings must be a 2-D array (N x D), got {got}")
    if embeddings.dtype.kind != "f":
        raise ValueError(f"embeddings must be float16/float32/float64, got {embeddings.dtype}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(embeddings):
        raise ValueError(f"labels ({labels.shape}) and embeddings ({embeddings.shape}) are misaligned: "
                         f"one label per embedding row is needed")
    if embeddings.shape[1] == 0:
        raise ValueError("embeddings have zero columns")
    for start in range(0, len(embeddings) if check_finite else 0, chunk_rows):
        kernel.check_finite(np.isfinite(embeddings[start:start + chunk_rows]).all(axis=1), start)
    classes = tuple(classes) if classes is not None else default_classes(labels)
    codes = label_codes(labels, classes)
    if (codes < 0).any():
        unknown = sorted({str(v) for v in np.unique(labels[codes < 0])})
        raise ValueError(f"labels {unknown} are not among the classes {list(classes)}")
    counts = np.bincount(codes, minlength=len(classes))
    for k, c in enumerate(classes):
        if not counts[k]:
            raise ValueError(f"class {c!r} has no rows: NC sampling needs every class {list(classes)} in the pool")
    return labels, classes, codes


def label_codes(labels: np.ndarray, classes: Sequence) -> np.ndarray:
    """Every label's index into `classes` (int8; -1 for a label that is none of them)."""
    codes = np.full(len(labels), -1, dtype=np.int8)
    for k, c in enumerate(classes):
        codes[labels == c] = k
    return codes


def as_f32(block: np.ndarray, normalize: bool, start: int = 0, out: np.ndarray | None = None) -> np.ndarray:
    """A block of rows as contiguous float32 (a copy, written into `out` when given), checked finite,
    L2-normalised when asked (zero rows stay zero)."""
    return kernel.normalized(block, normalize, start, out)


def rows_f32(embeddings: np.ndarray, rows: np.ndarray, normalize: bool) -> np.ndarray:
    """Selected rows of the matrix as float32 (see as_f32)."""
    return as_f32(embeddings[rows], normalize)


def _chunks(rows: np.ndarray, chunk_rows: int):
    for start in range(0, len(rows), chunk_rows):
        yield rows[start:start + chunk_rows]


def iter_blocks(embeddings: np.ndarray, normalize: bool, chunk_rows: int = DEFAULT_CHUNK_ROWS):
    """(start, float32 block) over contiguous row blocks: one sequential pass, float16 converted block by block.

    The blocks share one buffer (no fresh 64 MB allocation per block): use each before asking for the next.
    """
    buf = np.empty((min(chunk_rows, len(embeddings)), embeddings.shape[1]), dtype=np.float32)
    for start in range(0, len(embeddings), chunk_rows):
        yield start, as_f32(embeddings[start:start + chunk_rows], normalize, start, out=buf)


def raw_blocks(embeddings: np.ndarray, chunk_rows: int = DEFAULT_CHUNK_ROWS):
    """(start, rows start..start+chunk_rows) over the matrix as stored: the blocks the kernel converts."""
    for start in range(0, len(embeddings), chunk_rows):
        yield start, embeddings[start:start + chunk_rows]


def class_means(embeddings: np.ndarray, labels: np.ndarray, classes: Sequence, normalize: bool = True,
                chunk_rows: int = DEFAULT_CHUNK_ROWS, threads: int | None = None) -> dict[Any, np.ndarray]:
    """Mean of every class (after L2 normalisation by default), float64, in one pass over the matrix."""
    codes = label_codes(np.asarray(labels), classes)
    sums = kernel.scan_sums(raw_blocks(embeddings, chunk_rows), codes, len(classes), normalize,
                            scan_threads(threads)).sums
    n = np.bincount(codes[codes >= 0], minlength=len(classes)).astype(np.float64)
    return {c: sums[k] / max(n[k], 1.0) for k, c in enumerate(classes)}


def scan_threads(threads: int | None) -> int:
    """Threads of the block scans: as given, else faiss's setting (the sample stage sets it from params
    runtime.threads; results never depend on it)."""
    return max(1, int(threads)) if threads is not None else max(1, load_faiss().omp_get_max_threads())


def class_mean(embeddings: np.ndarray, rows: np.ndarray, normalize: bool = True,
               chunk_rows: int = DEFAULT_CHUNK_ROWS) -> np.ndarray:
    """Mean of the given rows (after L2 normalisation by default), float64."""
    total = np.zeros(embeddings.shape[1], dtype=np.float64)
    for part in _chunks(rows, chunk_rows):
        total += rows_f32(embeddings, part, normalize).sum(axis=0, dtype=np.float64)
    return total / max(len(rows), 1)


def kmeans_rows(rows: np.ndarray, k: int, seed: int, max_points_per_centroid: int = 256) -> np.ndarray:
    """The rows k-means trains on: all of them up to `max_points_per_centroid * k`, else a seeded subsample
    of that many (ascending), so that its cost does not grow with N (nc_rank and the streamed passes alike)."""
    limit = max_points_per_centroid * k
    if len(rows) <= limit:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))


def fit_kmeans(x: np.ndarray, k: int, seed: int, niter: int = 20, max_points_per_centroid: int = 256) -> np.ndarray:
    """faiss.Kmeans centroids (k x D float32) of the float32 rows `x` (kmeans_rows' subsample)."""
    km = load_faiss().Kmeans(x.shape[1], k, niter=niter, seed=int(seed) % (2**31), verbose=False,
                             max_points_per_centroid=max_points_per_centroid, min_points_per_centroid=1)
    km.train(x)
    return np.asarray(km.centroids, dtype=np.float32).reshape(k, -1)


def train_kmeans(embeddings: np.ndarray, rows: np.ndarray, n_clusters: int, seed: int, normalize: bool = True,
                 max_points_per_centroid: int = 256, niter: int = 20) -> np.ndarray:
    """faiss.Kmeans centroids (k x D float32) of the given rows, trained on their kmeans_rows subsample."""
    k = int(min(n_clusters, len(rows)))
    x = rows_f32(embeddings, kmeans_rows(rows, k, seed, max_points_per_centroid), normalize)
    return fit_kmeans(x, k, seed, niter, max_points_per_centroid)


def nearest_rows(rows: np.ndarray, distance: np.ndarray, n: int) -> np.ndarray:
    """The n rows with the smallest distance (ties to the lower row index), in ascending distance."""
    if n >= len(rows):
        order = np.lexsort((rows, distance))
        return rows[order]
    part = np.argpartition(distance, n - 1)[:n]
    # argpartition breaks ties arbitrarily: widen to every row tied with the n-th distance, then sort.
    cut = distance[part].max()
    cand = np.flatnonzero(distance <= cut)
    order = np.lexsort((rows[cand], distance[cand]))[:n]
    return rows[cand[order]]


def _ivf_nearest(embeddings: np.ndarray, rows: np.ndarray, mean: np.ndarray, n: int, normalize: bool,
                 nlist: int, nprobe: int, seed: int, chunk_rows: int) -> np.ndarray:
    """Approximate n nearest rows to the mean with an IndexIVFFlat over the class rows (nprobe grows until
    n results come back)."""
    faiss = load_faiss()
    d = embeddings.shape[1]
    nlist = int(max(1, min(nlist, len(rows) // 39 or 1)))
    quantizer = faiss.IndexFlatL2(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist)
    rng = np.random.default_rng(seed)
    limit = 256 * nlist
    train_rows = rows if len(rows) <= limit else np.sort(rng.choice(rows, size=limit, replace=False))
    index.cp.seed = int(seed) % (2**31)
    index.train(rows_f32(embeddings, train_rows, normalize))
    for part in _chunks(rows, chunk_rows):
        index.add(rows_f32(embeddings, part, normalize))
    probe = max(1, min(nprobe, nlist))
    query = np.asarray(mean, dtype=np.float32).reshape(1, -1)
    while True:
        index.nprobe = probe
        _, idx = index.search(query, n)
        found = idx[0][idx[0] >= 0]
        if len(found) >= n or probe >= nlist:
            return rows[found[:n]]
        probe = min(nlist, probe * 2)


def nc_rank(embeddings: np.ndarray, labels: Any, *, n_clusters: int, seed: int, normalize: bool = True,
            classes: Sequence | None = None, fake_class: Any = "auto", max_points_per_centroid: int = 256,
            kmeans_iters: int = 20, chunk_rows: int = DEFAULT_CHUNK_ROWS, threads: int | None = None) -> NCRanking:
    """Per-row distance to the class mean and the fake class's k-means clusters (validates the inputs).

    Two sequential passes over the matrix (rank_blocks): class means, then every row against [class means;
    k-means centroids], which gives each row its distance to its class mean and its cluster. `threads`:
    see scan_threads.
    """
    _, classes, codes = checked_codes(embeddings, labels, classes, chunk_rows, check_finite=False)
    fake = default_fake_class(classes) if fake_class == "auto" else fake_class
    return rank_blocks(lambda: raw_blocks(embeddings, chunk_rows), codes, classes, fake, n_clusters=n_clusters,
                       seed=seed, normalize=normalize, max_points_per_centroid=max_points_per_centroid,
                       kmeans_iters=kmeans_iters, threads=threads)


def rank_blocks(blocks: Callable[[], Iterable[tuple[int, np.ndarray]]], codes: np.ndarray, classes: Sequence,
                fake_class: Any, *, n_clusters: int, seed: int, normalize: bool = True,
                max_points_per_centroid: int = 256, kmeans_iters: int = 20, threads: int | None = None) -> NCRanking:
    """nc_rank over any row source: `blocks()` yields (start, raw rows) in row order, once per pass (the
    in-memory matrix, or the streamed shards of streaming.py: the same blocks give the same ranking).

    `codes`: every row's index into `classes` (checked by the caller). The k-means subsample (kmeans_rows) is
    gathered during the first pass, so k-means needs no extra read.
    """
    threads = scan_threads(threads)
    class_rows = {c: np.flatnonzero(codes == k) for k, c in enumerate(classes)}
    fake_code = next((k for k, c in enumerate(classes) if c == fake_class), -1)
    fake_rows = class_rows[classes[fake_code]] if fake_code >= 0 else np.empty(0, dtype=np.int64)
    k = int(min(n_clusters or 0, len(fake_rows)))
    clustered = bool(n_clusters and n_clusters > 1 and len(fake_rows) > 1)
    train = kmeans_rows(fake_rows, k, seed, max_points_per_centroid) if clustered else None
    scan = kernel.scan_sums(blocks(), codes, len(classes), normalize, threads, gather=train)
    counts = np.array([len(class_rows[c]) for c in classes], dtype=np.float64)
    means = scan.sums / np.maximum(counts, 1.0)[:, None]
    centroids = fit_kmeans(scan.gathered, k, seed, kmeans_iters, max_points_per_centroid) if clustered else None
    refs = means.astype(np.float32) if centroids is None else np.concatenate([means.astype(np.float32), centroids])
    own, cluster = kernel.scan_distances(blocks(), codes, refs, len(classes), fake_code, scan, threads)
    del scan
    return NCRanking(distance=np.sqrt(np.maximum(own.astype(np.float64), 0.0)),
                     cluster=cluster if cluster is not None else np.full(len(codes), -1, dtype=np.int32),
                     means={c: means[j] for j, c in enumerate(classes)}, class_rows=class_rows,
                     fake_class=classes[fake_code] if fake_code >= 0 else None, centroids=centroids)


def nearest_set(rows: np.ndarray, distance: np.ndarray, n: int) -> np.ndarray:
    """The rows of nearest_rows(rows, distance, n) in the order of `rows` (a partition, no sort of the picks)."""
    if n >= len(rows):
        return rows
    if n <= 0:
        return rows[:0]
    cut = np.partition(distance, n - 1)[n - 1]
    keep = distance < cut
    ties = np.flatnonzero(distance == cut)                 # the n-th distance may be shared: lower rows first
    keep[ties[np.argsort(rows[ties], kind="stable")[:n - int(keep.sum())]]] = True
    return rows[keep]


def select_from_ranking(ranking: NCRanking, ratio: float, class_ratio: Mapping | None = None,
                        farthest: bool = False) -> np.ndarray:
    """Indices kept per class from a ranking: nearest to the mean (or farthest), per k-means cluster for the
    fake class when it was clustered. Sorted ascending."""
    ratios = class_ratios(tuple(ranking.class_rows), ratio, class_ratio)
    sign = -1.0 if farthest else 1.0
    keep = np.zeros(len(ranking.distance), dtype=bool)
    for c, rows in ranking.class_rows.items():
        n_keep = n_keep_for(len(rows), ratios[c])
        clusters = ranking.cluster[rows]
        if c == ranking.fake_class and clusters.max(initial=-1) >= 0 and not farthest:
            ids = np.arange(int(clusters.max()) + 1)
            sizes = np.array([(clusters == j).sum() for j in ids])
            for j, q in zip(ids, proportional_quotas(sizes, n_keep)):
                if q:
                    sub = rows[clusters == j]
                    keep[nearest_set(sub, ranking.distance[sub], int(q))] = True
        else:
            keep[nearest_set(rows, sign * ranking.distance[rows], n_keep)] = True
    return np.flatnonzero(keep)


def nc_select(embeddings: np.ndarray, labels: Any, ratio: float, *, n_clusters: int, seed: int,
              class_ratio: Mapping | None = None, normalize: bool = True, index: str = "flat", ivf_nlist: int = 256,
              ivf_nprobe: int = 16, classes: Sequence | None = None, fake_class: Any = "auto",
              max_points_per_centroid: int = 256, kmeans_iters: int = 20,
              chunk_rows: int = DEFAULT_CHUNK_ROWS) -> np.ndarray:
    """Neural-collapse class-mean selection: row indices (ascending) of the rows nearest to their class mean.

    Args:
        embeddings: N x D penultimate embeddings (float16/32; not modified, may be a memory map).
        labels: N labels ('bonafide'/'spoof', or 1/0).
        ratio: share of every class kept, in (0, 1]; `class_ratio` overrides it per class.
        n_clusters: k of the k-means over the fake class (0 or 1: plain nearest-to-mean).
        seed: seeds the k-means subsample and initialisation (same seed, same indices).
        index: 'flat' (exact, default) or 'ivf' (approximate IndexIVFFlat, `ivf_nlist` lists).
    """
    ratio = check_ratio(ratio)
    for k, v in (class_ratio or {}).items():     # fail before the expensive passes
        check_ratio(v, f"class_ratio[{k!r}]")
    if index not in ("flat", "ivf"):
        raise ValueError(f"index must be 'flat' or 'ivf', got {index!r}")
    ranking = nc_rank(embeddings, labels, n_clusters=n_clusters, seed=seed, normalize=normalize, classes=classes,
                      fake_class=fake_class, max_points_per_centroid=max_points_per_centroid,
                      kmeans_iters=kmeans_iters, chunk_rows=chunk_rows)
    if index == "flat":
        return select_from_ranking(ranking, ratio, class_ratio)
    ratios = class_ratios(tuple(ranking.class_rows), ratio, class_ratio)
    picked = []
    for c, rows in ranking.class_rows.items():
        n_keep = n_keep_for(len(rows), ratios[c])
        clusters = ranking.cluster[rows]
        groups = [rows] if clusters.max(initial=-1) < 0 else [rows[clusters == j] for j in range(clusters.max() + 1)]
        quotas = [n_keep] if len(groups) == 1 else proportional_quotas(np.array([len(g) for g in groups]), n_keep)
        for g, q in zip(groups, quotas):
            if q:
                picked.append(_ivf_nearest(embeddings, g, ranking.means[c], int(q), normalize, ivf_nlist, ivf_nprobe,
                                           seed, chunk_rows))
    return np.sort(np.concatenate(picked))
