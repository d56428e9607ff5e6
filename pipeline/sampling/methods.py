"""The methods beyond nc's nearest order and the baselines (margin, generator_balanced, nc farthest/stratified):
one pool's selection, and the sample stage's dispatcher.

Reads nothing and writes nothing. `margin_select` and `generator_balanced_select`, like `nc_select` (nc.py; its
`order` gives the farthest and stratified NC orders), take an embedding matrix (N x D) and a label per row and
return the ascending row indices kept, n_keep_for(n_c, ratio_c) per class (so the methods differ only in WHICH
rows they keep). Both rank the pool once with `nc_rank` (class means, fake k-means, distances), then pick by
the orders of pipeline/sampling/orders.py.

The sample stage (in memory and streamed) instead ranks each pool once for every method and calls `pick` with
the pool's quota of the equal per-class budget (budget.py); what the orders need beyond the ranking (the
teachers' margins per clip, averaged over the pools holding it; each pool's fake quota per generator system,
spread over the systems of the merged pools) is prepared once by `prepare_inputs`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.params import ConfigError, all_of
from pipeline.sampling import budget as bd
from pipeline.sampling import orders
from pipeline.sampling.baselines import kcenter_select, random_select
from pipeline.sampling.nc import DEFAULT_CHUNK_ROWS, nc_rank, nc_select, select_from_ranking
from pipeline.sampling.quotas import balanced_quotas, check_ratio, class_ratios
from pipeline.sampling.ranks import group_quantile


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


def order_select(embeddings: np.ndarray, labels: Any, ratio: float, *, order: str, n_clusters: int, seed: int,
                 strata: int = 4, class_ratio: Mapping | None = None, normalize: bool = True,
                 classes: Sequence | None = None, max_points_per_centroid: int = 256, kmeans_iters: int = 20,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS) -> np.ndarray:
    """nc_select with another order within each class and fake k-means cluster: 'nearest' (nc_select's picks),
    'farthest' or 'stratified' (`strata` distance-quantile bins, seeded draw within a bin). Ascending rows."""
    check_ratio(ratio)
    if order not in orders.ORDERS:
        raise ValueError(f"order must be one of {list(orders.ORDERS)}, got {order!r}")
    ranking = nc_rank(embeddings, labels, n_clusters=n_clusters, seed=seed, normalize=normalize, classes=classes,
                      max_points_per_centroid=max_points_per_centroid, kmeans_iters=kmeans_iters,
                      chunk_rows=chunk_rows)
    if order == "nearest":
        return select_from_ranking(ranking, ratio, class_ratio)
    labels = np.asarray(labels)
    quota = orders.class_quotas(labels, class_ratios(tuple(ranking.class_rows), ratio, class_ratio))
    return orders.pick_nc_order(order, ranking.distance, ranking.cluster, labels, quota, ranking.fake_class, strata,
                                seed)[0]


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
    per_system = dict(zip(names, balanced_quotas(counts, quota.get(fake, 0))))
    return orders.pick_generator_balanced(ranking.distance, labels, quota, fake, systems, per_system, parents)[0]


# ---------------------------------------------------------------------------- the sample stage's dispatcher


METHODS = ("nc", "random", "full", "kcenter", "farthest", "margin", "generator_balanced")   # sample.method


@dataclass
class MethodInputs:
    """What the orders read beyond each pool's ranking, for every pool at once (`prepare_inputs`)."""

    margins: pd.Series | None                                  # clip row -> |mean teacher margin|; None: no scores
    system_quotas: list[dict[str, int]]                        # per pool: fake rows kept per generator system
    skipped: dict[str, str] = field(default_factory=dict)     # method -> why it is not run
    diag: dict[str, Any] = field(default_factory=dict)         # reports/sampling.json `methods`


@dataclass
class ClipColumns:
    """What the orders read of every clip-table row: in memory the clip table's columns (`of_frame`), streamed
    the ClipStore's codes (stream_stage.py), so both paths give the same picks."""

    fake: np.ndarray          # bool: the row is of the fake class
    system: Any               # its generator system: str array, or a Categorical (the streamed stage's)
    parent: np.ndarray        # its parent: ids (None/NaN: none) or integer codes (negative: none)

    @classmethod
    def of_frame(cls, clips: pd.DataFrame, fake: str = "spoof") -> ClipColumns:
        return cls(fake=(clips["label"] == fake).to_numpy(bool), system=clips["system"].astype(str).to_numpy(),
                   parent=clips["parent_id"].to_numpy(object))


def ordered(method: str, p: Any) -> bool:
    """True when `method` picks through `pick` (the orders), False for nc_select's nearest order and the baselines."""
    return method in orders.EXTRA_METHODS or (method == "nc" and p.nc.order != "nearest")


def runnable(method: str, skipped: Mapping[str, str], log: Any) -> tuple[str, ...]:
    """The methods run (METHODS less the skipped ones, each logged); `method` (sample.method) skipped is a
    ConfigError."""
    if method in skipped:
        raise ConfigError(f"params sample.method: {method} cannot run: {skipped[method]}")
    for m, why in skipped.items():
        log.warning("sample: no %s manifest: %s", m, why)
    return tuple(m for m in METHODS if m not in skipped)


def prepare_inputs(p: Any, pools: Sequence[Any], cols: ClipColumns, train_pos: Sequence[np.ndarray],
                   train_rows: Sequence[np.ndarray], budgets: Mapping[str, int], fake: str = "spoof") -> MethodInputs:
    """Margins and per-system quotas for `pick`. `p`: SampleParams; pools: the stage's Pools (teacher, scores or
    None, threshold, threshold_source); `cols`: the clip rows' columns; train_pos / train_rows: per pool, its
    train rows as clip rows and as rows of its embedding matrix (same order). Margins are keyed by clip row."""
    teachers = [pl.teacher for pl in pools]
    named = p.margin.teachers
    if named is not None:
        all_of("sample.margin.teachers", list(named), teachers)
        missing = [pl.teacher for pl in pools if pl.teacher in named and pl.scores is None]
        if missing:
            raise ConfigError(f"params sample.margin.teachers: {missing} have no scores in their ids.parquet "
                              f"(embedder resemblyzer, or embeddings made before scores were kept): re-run embed")
    use = [i for i, pl in enumerate(pools) if pl.scores is not None and (named is None or pl.teacher in named)]
    margins = orders.clip_margins([(train_pos[i], pools[i].scores[train_rows[i]], pools[i].threshold)
                                   for i in use]) if use else None
    merged = np.unique(np.concatenate(list(train_pos)))
    fake_sys = [pd.Series(cols.system[pos[cols.fake[pos]]]) for pos in train_pos]
    quotas = orders.system_quotas(pd.Series(cols.system[merged[cols.fake[merged]]]), int(budgets.get(fake, 0)),
                                  fake_sys)
    out = MethodInputs(margins, quotas)
    if margins is None:
        out.skipped["margin"] = ("no teacher scores: the pools' ids.parquet have no score column (embeddings made "
                                 "before embed kept scores, or the resemblyzer embedder alone): re-run embed")
    out.diag = {"nc_order": {"order": p.nc.order, "strata": p.nc.strata},
                "margin": {"typical_share": p.margin.typical_share,
                           "teachers": {pools[i].teacher: {"threshold": pools[i].threshold,
                                                           "threshold_source": pools[i].threshold_source}
                                        for i in use}},
                "generator_balanced": {"system_budget": _sum_quotas(quotas),
                                       "pool_system_quota": dict(zip(teachers, quotas))}}
    return out


def _sum_quotas(quotas: Sequence[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for q in quotas:
        for k, v in q.items():
            total[k] = total.get(k, 0) + int(v)
    return dict(sorted(total.items()))


def pool_inputs(inputs: MethodInputs, i: int, cols: ClipColumns, train_pos: np.ndarray) -> orders.PoolOrderInputs:
    """The order inputs of pool i's train rows (clip rows `train_pos`)."""
    u = None if inputs.margins is None else inputs.margins.reindex(train_pos).to_numpy(np.float64)
    return orders.PoolOrderInputs(uncertainty=u, systems=cols.system[train_pos], parents=cols.parent[train_pos],
                                  system_quota=inputs.system_quotas[i])


def pick(method: str, distance: np.ndarray, cluster: np.ndarray | None, labels: np.ndarray, quota: Mapping[Any, int],
         fake_class: Any, pool: orders.PoolOrderInputs, p: Any, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows kept, top-up order key) of an `ordered` method on one pool's train rows: `quota` rows per class
    (keys: the values of `labels`), from the pool's NC distance and k-means cluster (None: not clustered)."""
    if method in ("nc", "margin"):      # generator_balanced reads no cluster: no row-sized int64 copy for it
        cluster = np.full(len(labels), -1, dtype=np.int64) if cluster is None else np.asarray(cluster, dtype=np.int64)
    if method == "nc":
        idx, value = orders.pick_nc_order(p.nc.order, distance, cluster, labels, quota, fake_class, p.nc.strata, seed)
    elif method == "margin":
        if pool.uncertainty is None:
            raise ValueError("margin: no teacher scores for this pool")
        idx, value = orders.pick_margin(pool.uncertainty, distance, cluster, labels, quota, p.margin.typical_share)
    elif method == "generator_balanced":
        idx, value = orders.pick_generator_balanced(distance, labels, quota, fake_class, pool.systems,
                                                    pool.system_quota, pool.parents)
    else:
        raise ValueError(f"pick: {method!r} is not an ordered method")
    # the top-up key: the row's place in its group's order (the fake clusters interleave), ranked per class
    order_value, groups = value()
    return idx, bd.rank_key(group_quantile(order_value, groups), labels)


def pick_pool(method: str, emb: np.ndarray, labels: np.ndarray, p: Any, seed: int, ranking: Any,
              quota: Mapping[str, int], pool: orders.PoolOrderInputs) -> tuple[np.ndarray, np.ndarray]:
    """(rows kept, top-up order key) of any sample.method on one pool held in memory: `p` is the SampleParams
    with the pool's quota as class ratios, `ranking` its nc_rank, `quota` the same quota as counts."""
    if method == "full":
        return np.arange(len(labels)), np.zeros(len(labels))
    if ordered(method, p):
        return pick(method, ranking.distance, ranking.cluster, labels, quota, ranking.fake_class, pool, p, seed)
    if method == "farthest" or (method == "nc" and p.index == "flat"):     # nc_select's picks, without re-ranking
        idx = select_from_ranking(ranking, p.ratio, p.class_ratio, farthest=method == "farthest")
    else:
        kwargs: dict[str, Any] = dict(seed=seed, class_ratio=p.class_ratio, normalize=p.normalize)
        if method == "nc":
            kwargs.update(n_clusters=p.n_clusters, index=p.index, ivf_nlist=p.ivf_nlist, ivf_nprobe=p.ivf_nprobe,
                          max_points_per_centroid=p.max_points_per_centroid, kmeans_iters=p.kmeans_iters)
        idx = {"nc": nc_select, "random": random_select, "kcenter": kcenter_select}[method](emb, labels, p.ratio,
                                                                                         **kwargs)
    return idx, bd.order_key(method, ranking.distance, labels, seed)
