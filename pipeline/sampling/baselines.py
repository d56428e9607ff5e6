"""Baseline samplers at the same per-class ratio as NC sampling: random, full, k-center greedy, farthest.

Reads nothing and writes nothing. Every sampler takes (embeddings, labels, ratio, *, seed, ...) and returns
ascending row indices; each class keeps n_keep_for(n_c, ratio_c) rows, exactly as `nc_select` does, so
that the manifests differ only in WHICH rows they keep.

- random: stratified by class, a seeded uniform draw per class;
- full: every row (the "no curation" upper bound on cost);
- kcenter: k-center greedy coreset (Sener & Savarese 2018) per class: start at a seeded random row, then
  repeatedly add the row farthest from every chosen centre. Cost O(n_c * n_keep * D) time, O(n_c) memory
  beyond the class matrix (float32): fine at demo size (seconds for 10k rows), quadratic in N at a fixed ratio,
  so it is a baseline, not a tool for a 1M-clip pool;
- farthest: the rows farthest from their class mean first ("hardest first"), the opposite of NC.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.sampling.nc import DEFAULT_CHUNK_ROWS, check_inputs, nc_rank, rows_f32, select_from_ranking
from pipeline.sampling.quotas import check_ratio, class_ratios, n_keep_for


def _per_class(embeddings: np.ndarray, labels: Any, ratio: float, class_ratio: Mapping | None,
               classes: Sequence | None, pick: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
    """Validate, then keep pick(rows of class c, n_keep_c) for every class; ascending row indices."""
    check_ratio(ratio)
    labels, classes = check_inputs(embeddings, labels, classes)
    ratios = class_ratios(classes, ratio, class_ratio)
    picked = []
    for c in classes:
        rows = np.flatnonzero(labels == c)
        picked.append(pick(rows, n_keep_for(len(rows), ratios[c])))
    return np.sort(np.concatenate(picked))


def random_select(embeddings: np.ndarray, labels: Any, ratio: float, *, seed: int,
                  class_ratio: Mapping | None = None, classes: Sequence | None = None, **_: Any) -> np.ndarray:
    """Stratified random selection: a seeded uniform draw of n_keep rows per class."""
    check_ratio(ratio)
    labels, classes = check_inputs(embeddings, labels, classes)
    return random_rows(labels, classes, class_ratios(classes, ratio, class_ratio), seed)


def random_rows(labels: np.ndarray, classes: Sequence, ratios: Mapping, seed: int) -> np.ndarray:
    """random_select's draw from the labels alone (no embeddings needed: the streamed sample stage uses it)."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in classes:
        rows = np.flatnonzero(labels == c)
        picked.append(rng.choice(rows, size=n_keep_for(len(rows), ratios[c]), replace=False))
    return np.sort(np.concatenate(picked))


def full_select(embeddings: np.ndarray, labels: Any, ratio: float = 1.0, *, classes: Sequence | None = None,
                **_: Any) -> np.ndarray:
    """Every row (the inputs are still validated)."""
    check_ratio(ratio)
    labels, _classes = check_inputs(embeddings, labels, classes)
    return np.arange(len(labels))


def kcenter_greedy(x: np.ndarray, n_keep: int, rng: np.random.Generator) -> np.ndarray:
    """k-center greedy on a float32 matrix: indices into x, in the order they were picked."""
    n = len(x)
    if n_keep >= n:
        return np.arange(n)
    sq = np.einsum("ij,ij->i", x, x)
    first = int(rng.integers(n))
    chosen = [first]
    # min squared distance to the chosen centres, ||x||^2 + ||c||^2 - 2 x.c (one matrix-vector product per pick)
    mind = np.maximum(sq + sq[first] - 2.0 * (x @ x[first]), 0.0)
    mind[first] = -1.0
    for _ in range(n_keep - 1):
        nxt = int(np.argmax(mind))          # argmax returns the lowest index among ties: deterministic
        chosen.append(nxt)
        np.minimum(mind, np.maximum(sq + sq[nxt] - 2.0 * (x @ x[nxt]), 0.0), out=mind)
        mind[nxt] = -1.0                    # stays -1 under np.minimum: never picked twice
    return np.asarray(chosen, dtype=np.int64)


def kcenter_select(embeddings: np.ndarray, labels: Any, ratio: float, *, seed: int,
                   class_ratio: Mapping | None = None, normalize: bool = True, classes: Sequence | None = None,
                   **_: Any) -> np.ndarray:
    """k-center greedy coreset per class (O(n_c * n_keep * D); see the module docstring)."""
    rng = np.random.default_rng(seed)
    return _per_class(embeddings, labels, ratio, class_ratio, classes,
                      lambda rows, n_keep: rows[kcenter_greedy(rows_f32(embeddings, rows, normalize), n_keep, rng)])


def farthest_select(embeddings: np.ndarray, labels: Any, ratio: float, *, seed: int = 0,
                    class_ratio: Mapping | None = None, normalize: bool = True, classes: Sequence | None = None,
                    chunk_rows: int = DEFAULT_CHUNK_ROWS, **_: Any) -> np.ndarray:
    """The rows farthest from their class mean ("hardest first"), n_keep per class."""
    check_ratio(ratio)
    ranking = nc_rank(embeddings, labels, n_clusters=0, seed=seed, normalize=normalize, classes=classes,
                      chunk_rows=chunk_rows)
    return select_from_ranking(ranking, ratio, class_ratio, farthest=True)
