"""Equal budgets: every method's manifest keeps the same number of clips per class at a given ratio.

Reads nothing and writes nothing; the sample stage calls these functions. Without them, each pool is
sampled at `ratio` and the union over pools is de-duplicated, so a class shared by the pools (the bona
fide clips, which every teacher's pool holds) keeps far more than `ratio` of its clips, and every method
a different total. Here:

1. budget_c = n_keep_for(n_c, ratio_c): round half up (at least 1) of ratio_c times the number of
   DISTINCT train clips of class c over the merged pools (`class_budgets`);
2. budget_c is split over the pools in proportion to each pool's train clips of class c (largest
   remainder, at least one per pool when the budget allows: `split_budget`); each pool's sampler keeps
   exactly its quota of class c;
3. the pools' picks are merged (a clip picked twice counts once), then `fill_to_budget` tops the union
   up (or trims it) to exactly budget_c, in a deterministic order: picked rows first, then the other
   train rows by their `order_key` (the row's rank within its pool's class as a quantile in [0, 1), so
   pools of different sizes interleave; the smaller key over pools wins), then pool order, then clip_id.

`order_key`: nc, the distance to the class mean (nearest first); farthest, the same reversed; random and
kcenter, a seeded permutation (kcenter's greedy order lives in one pool's space and does not extend
across pools; the top-up is a small remainder); the orders of pipeline/sampling/orders.py (nc farthest or
stratified, margin, generator_balanced) give their own value to `rank_key`. `full` keeps every train clip
and has no budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.sampling.quotas import class_ratios, n_keep_for, proportional_quotas

KEY = "_order_key"
POOL = "_pool"


def class_budgets(labels: pd.Series, classes: Sequence[str], ratio: float,
                  class_ratio: Mapping[str, float] | None = None) -> dict[str, int]:
    """Clips kept per class: n_keep_for(distinct train clips of the class, its ratio). `labels` is indexed by
    clip_id (one entry per distinct clip)."""
    ratios = class_ratios(tuple(classes), ratio, class_ratio)
    counts = labels.value_counts()
    return {c: n_keep_for(int(counts.get(c, 0)), ratios[c]) for c in classes}


def split_budget(budgets: Mapping[str, int], pool_sizes: Sequence[Mapping[str, int]]) -> list[dict[str, int]]:
    """Per pool, per class quota: each class's budget split over the pools in proportion to their sizes."""
    quotas: list[dict[str, int]] = [{} for _ in pool_sizes]
    for c, budget in budgets.items():
        sizes = np.array([int(s.get(c, 0)) for s in pool_sizes], dtype=np.int64)
        for i, q in enumerate(proportional_quotas(sizes, int(budget))):
            quotas[i][c] = int(q)
    return quotas


def quota_ratios(quota: Mapping[str, int], sizes: Mapping[str, int]) -> dict[str, float]:
    """The per-class ratio that makes n_keep_for(size, ratio) == quota (a quota of 0 asks for 1 row, which
    the caller drops: a sampler cannot keep nothing of a class)."""
    out = {}
    for c, n in sizes.items():
        if n > 0:
            out[c] = max(int(quota.get(c, 0)), 1) / n
    return out


def order_key(method: str, distance: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """Per row, its rank within its class as a quantile in [0, 1): the top-up order of `method` (see above)."""
    n = len(labels)
    if method in ("nc", "farthest"):
        return rank_key(distance if method == "nc" else -distance, labels)
    # a seeded permutation: its values are distinct, so each class's order is the permutation's order
    # restricted to the class, read off the inverse permutation without a sort
    key = np.zeros(n, dtype=np.float64)
    by_value = np.empty(n, dtype=np.int64)
    by_value[np.random.default_rng(seed).permutation(n)] = np.arange(n)     # by_value[v] = the row holding v
    sorted_labels = labels[by_value]
    for c in np.unique(labels):
        order = by_value[sorted_labels == c]
        key[order] = np.arange(len(order)) / len(order)
    return key


def rank_key(value: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per row, its rank by `value` (smaller first; ties: the lower row) within its class, divided by the
    class size: a quantile in [0, 1), so that pools of different sizes interleave."""
    key = np.zeros(len(labels), dtype=np.float64)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        order = rows[np.argsort(value[rows], kind="stable")]      # ties: the lower row (rows ascend)
        key[order] = np.arange(len(rows)) / len(rows)
    return key


def fill_to_budget(picked: pd.DataFrame, candidates: pd.DataFrame,
                   budgets: Mapping[str, int]) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    """Exactly budgets[c] rows of each class: the picked rows, topped up from (or trimmed by) the candidates.

    Both frames carry `label`, `clip_id`, KEY and POOL; `picked` has one row per clip. Returns the rows (KEY
    and POOL dropped; picked rows first, top-ups after) and {class: {picked, added, trimmed}}.
    """
    for name, df in (("picked", picked), ("candidates", candidates)):
        missing = {KEY, POOL, "label", "clip_id"} - set(df.columns)
        if missing:
            raise ValueError(f"fill_to_budget: {name} lacks columns {sorted(missing)}")
    have_n = picked["label"].value_counts()
    rest = candidates.iloc[:0]
    if any(have_n.get(c, 0) < budget for c, budget in budgets.items()):   # a top-up: order the candidates
        rest = candidates[~candidates["clip_id"].isin(picked["clip_id"])]
        rest = rest.sort_values([KEY, POOL, "clip_id"], kind="mergesort").drop_duplicates("clip_id", keep="first")
    drop, adds, report = [], [], {}
    for c, budget in budgets.items():
        have = picked[picked["label"] == c]
        if len(have) > budget:
            drop += list(have.sort_values([KEY, POOL, "clip_id"], kind="mergesort").index[budget:])
            report[c] = {"picked": int(len(have)), "added": 0, "trimmed": int(len(have) - budget)}
            continue
        add = rest[rest["label"] == c].head(budget - len(have))
        if len(have) + len(add) < budget:
            raise ValueError(f"class {c!r}: budget {budget} but only {len(have) + len(add)} distinct train clips")
        adds.append(add)
        report[c] = {"picked": int(len(have)), "added": int(len(add)), "trimmed": 0}
    out = pd.concat([picked.drop(index=drop), *adds], ignore_index=True)
    return out.drop(columns=[KEY, POOL]), report


def budget_diagnostics(budgets: Mapping[str, int], merged_sizes: Mapping[str, int], teachers: Sequence[str],
                       pool_sizes: Sequence[Mapping[str, int]], quotas: Sequence[Mapping[str, int]]) -> dict[str, Any]:
    """The `budget` block of reports/sampling.json: how many clips per class every method keeps, and why."""
    return {
        "rule": "budget per class = round(ratio x distinct train clips of the class over the merged pools), "
                "split over pools in proportion to pool size; union de-duplicated, then topped up or "
                "trimmed to exactly the budget (pipeline/sampling/budget.py); `full` keeps every clip",
        "per_class": dict(budgets),
        "train_clips": dict(merged_sizes),
        "pools": {t: {"train_clips": dict(s), "quota": dict(q)} for t, s, q in zip(teachers, pool_sizes, quotas)},
    }


def merge_picks(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate the pools' picks (each holds a clip once); a clip picked by several pools keeps the row with
    the smallest distance (ties and missing distances: the earlier pool). One pass, no sort: every clip's best
    row so far is kept in arrays indexed by the clip's code."""
    if not frames:
        raise ValueError("no pools to merge")
    if len(frames) == 1:
        return frames[0].reset_index(drop=True)
    df = pd.concat(frames, ignore_index=True)
    clip = pd.factorize(df["clip_id"])[0]
    distance = np.nan_to_num(df["distance"].to_numpy(np.float64, na_value=np.nan), nan=np.inf)
    best = np.full(clip.max(initial=-1) + 1, -1, dtype=np.int64)
    bounds = np.cumsum([0] + [len(f) for f in frames])
    for a, b in zip(bounds[:-1], bounds[1:]):        # pool by pool: a later pool wins only by a smaller distance
        rows = np.arange(a, b)
        held = best[clip[rows]]
        better = (held < 0) | (distance[rows] < np.where(held < 0, np.inf, distance[held]))
        best[clip[rows[better]]] = rows[better]
    keep = np.zeros(len(df), dtype=bool)
    keep[best[best >= 0]] = True
    return df[keep].reset_index(drop=True)


def pool_seed(seed: int, i: int) -> int:
    """The seed of pool i (k-means, random and k-center draws) from the stage seed."""
    # one seed per pool: with the params seed alone, random/kcenter would pick the same n-th bona fide
    # clips in every pool (pools share their bona fide rows), and the merge would shrink to one pool's picks
    return int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
