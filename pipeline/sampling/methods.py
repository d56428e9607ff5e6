"""One pool's selection by the methods beyond nc and the baselines: margin and generator-balanced sampling.

Reads nothing and writes nothing: like `nc_select` (nc.py; its `order` gives the farthest and stratified NC
orders), each function takes an embedding matrix (N x D) and a label per row and returns the ascending row
indices kept, n_keep_for(n_c, ratio_c) per class (so the methods differ only in WHICH rows they keep). Both
rank the pool once with `nc_rank` (class means, fake k-means, distances), then pick by the orders of
pipeline/sampling/orders.py; the sample stage calls those orders directly with its equal per-pool budgets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.sampling import orders
from pipeline.sampling.nc import DEFAULT_CHUNK_ROWS, nc_rank
from pipeline.sampling.quotas import check_ratio, class_ratios


def margin_select(embeddings: np.ndarray, labels: Any, ratio: float, *, margins: np.ndarray, n_clusters: int,
                  seed: int, typical_share: float = 0.25, class_ratio: Mapping | None = None,
                  normalize: bool = True, classes: Sequence | None = None, max_points_per_centroid: int = 256,
                  kmeans_iters: int = 20, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> np.ndarray:
    """Per class, the rows the teachers are least sure of (smallest |margin|, e.g. orders.clip_margins),
    mixed with `typical_share` of NC-nearest rows (per fake k-means cluster); ascending row indices."""
    check_ratio(ratio)
    margins = np.asarray(margins, dtype=np.float64)
    if margins.shape != (len(embeddings),):
        raise ValueError(f"margins: one per embedding row needed, got {margins.shape} for {len(embeddings)} rows")
    if not 0.0 <= typical_share <= 1.0:
        raise ValueError(f"typical_share must be in [0, 1], got {typical_share!r}")
    ranking = nc_rank(embeddings, labels, n_clusters=n_clusters, seed=seed, normalize=normalize, classes=classes,
                      max_points_per_centroid=max_points_per_centroid, kmeans_iters=kmeans_iters,
                      chunk_rows=chunk_rows)
    labels = np.asarray(labels)
    quota = orders.class_quotas(labels, class_ratios(tuple(ranking.class_rows), ratio, class_ratio))
    return orders.pick_margin(np.abs(margins), ranking.distance, ranking.cluster, labels, quota, typical_share)[0]


def generator_balanced_select(embeddings: np.ndarray, labels: Any, ratio: float, *, systems: np.ndarray,
                              parents: np.ndarray | None = None, seed: int = 0, class_ratio: Mapping | None = None,
                              normalize: bool = True, classes: Sequence | None = None, fake_class: Any = "auto",
                              chunk_rows: int = DEFAULT_CHUNK_ROWS, **_: Any) -> np.ndarray:
    """The fake class's quota spread evenly over generator systems (and over parents), nearest the class mean
    within each; other classes nearest their mean. Ascending row indices."""
    check_ratio(ratio)
    systems = np.asarray(systems)
    if systems.shape != (len(embeddings),):
        raise ValueError(f"systems: one per embedding row needed, got {systems.shape} for {len(embeddings)} rows")
    ranking = nc_rank(embeddings, labels, n_clusters=0, seed=seed, normalize=normalize, classes=classes,
                      fake_class=fake_class, chunk_rows=chunk_rows)
    labels = np.asarray(labels)
    quota = orders.class_quotas(labels, class_ratios(tuple(ranking.class_rows), ratio, class_ratio))
    fake = ranking.fake_class
    names, counts = np.unique(systems[labels == fake].astype(str), return_counts=True)
    per_system = dict(zip(names, orders.balanced_quotas(counts, quota.get(fake, 0))))
    return orders.pick_generator_balanced(ranking.distance, labels, quota, fake, systems, per_system, parents)[0]
