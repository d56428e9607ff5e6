"""Selection orders beyond the most typical: NC order (nearest, farthest, stratified), teacher margin, and
generator-balanced sampling; each keeps a given number of rows per class from one pool.

Reads nothing and writes nothing: pure functions on per-row arrays of one pool (the NC distance to the
class mean and k-means cluster of `nc_rank`, labels, and per method the teachers' margins or the rows'
generator systems and parents), so that the in-memory and the streamed sample stage (pipeline/sample.py,
stream_pool.py) pick the same rows. Each picker returns the rows kept and an order key (budget.rank_key:
the row's rank in the method's order within its class, as a quantile in [0, 1)) that tops the merged
picks up to the budget (budget.fill_to_budget).

- `nc` order (params sample.nc.order): within each class, and each k-means cluster of the fake class (its
  quota split over clusters by size, as nc_select does), keep the rows `nearest` the class mean (the paper;
  nc.py does it), the `farthest` (Combei et al. 2025 compare centroid-closest with centroid-furthest), or
  `stratified`: the group's rows are cut into `strata` equal-count bins by distance (typical to atypical),
  and the picks take one seeded random row per bin in turn, so every bin gets an equal share (+-1); within
  a turn the bins are visited in bit-reversed order (0, S/2, S/4, ...), so that a quota smaller than S still
  spans typical to atypical.
- `margin` (Wang & Yamagishi 2022, arXiv 2203.14553: the samples a detector is least sure of): per class,
  the rows with the smallest uncertainty u = |mean over teachers of (score - threshold) / scale| (see
  `clip_margins`), mixed with a `typical_share` of NC-nearest rows: a row's turn is min(t_typ / s,
  t_unc / (1 - s)), t_typ and t_unc its quantile in the typical (per class and cluster) and uncertain (per
  class) orders, s the share; the first quota rows by turn hold about s typical and 1 - s uncertain rows.
- `generator_balanced` (Yi et al. 2026: generator diversity over scale): the fake quota is spread evenly over
  generator systems (`balanced_quotas`: equal shares, a system with fewer rows gives the rest to the others),
  and within a system over parents: rows ordered by (how many nearer fakes of the same parent the pool has,
  distance), so every parent's nearest fake comes before any parent's second. Bona fide rows: NC nearest.

Cost: a few O(N log N) sorts per pool, against nc_rank's passes over the N x D matrix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pipeline.params import ConfigError, Section, as_list, number, one_of
from pipeline.sampling.quotas import proportional_quotas

ORDERS = ("nearest", "farthest", "stratified")
EXTRA_METHODS = ("margin", "generator_balanced")


@dataclass(frozen=True)
class NCOrderParams(Section):
    """params `sample.nc`: the order in which nc keeps a class's (and fake cluster's) rows."""

    NAME: ClassVar[str] = "sample.nc"
    order: str = "nearest"       # nearest (the paper) | farthest | stratified
    strata: int = 4              # stratified: distance-quantile bins per class and fake cluster

    def check(self) -> None:
        one_of(f"{self.where}.order", self.order, ORDERS)
        number(f"{self.where}.strata", self.strata, low=1, integer=True)


@dataclass(frozen=True)
class MarginParams(Section):
    """params `sample.margin`: the typical share mixed into the least-sure rows, and whose scores count."""

    NAME: ClassVar[str] = "sample.margin"
    typical_share: float = 0.25
    teachers: tuple[str, ...] | None = None     # null = every teacher whose embeddings carry scores

    @classmethod
    def convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        if kw.get("teachers") is not None:
            kw = {**kw, "teachers": tuple(as_list(f"{cls.NAME}.teachers", kw["teachers"]))}
        return kw

    def check(self) -> None:
        number(f"{self.where}.typical_share", self.typical_share, low=0, high=1)
        if self.teachers is not None and not self.teachers:
            raise ConfigError(f"params {self.where}.teachers: name at least one teacher, or null for all")


@dataclass
class PoolOrderInputs:
    """What the orders read of one pool's train rows besides distance, cluster and labels (None: not available)."""

    uncertainty: np.ndarray | None = None          # |mean teacher margin| per row (margin)
    systems: np.ndarray | None = None              # generator system per row (generator_balanced)
    parents: np.ndarray | None = None              # parent clip id per row, None/NaN = its own parent
    system_quota: dict[str, int] = field(default_factory=dict)   # fake rows kept per system in this pool


# ---------------------------------------------------------------------------- ranks and keys


def codes_of(values: np.ndarray) -> np.ndarray:
    """Integer code per row (equal values, equal codes; order of first sorted value)."""
    return np.unique(np.asarray(values), return_inverse=True)[1].reshape(-1).astype(np.int64)


def ranks_in_groups(order: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """0-based rank of every row within its group, given `order`: the rows sorted by group first."""
    n = len(order)
    g = groups[order]
    start = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1] if n else np.zeros(0, np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(start, np.diff(np.r_[start, n]))
    return rank


def group_rank(value: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """0-based rank of every row within its group by `value` (ties: the lower row)."""
    return ranks_in_groups(np.lexsort((np.arange(len(value)), value, groups)), groups)


def group_quantile(value: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(rank + 0.5) / group size: a row's place in its group's order, comparable across groups of any size."""
    sizes = np.bincount(groups)[groups]
    return (group_rank(value, groups) + 0.5) / sizes


def _group_codes(labels: np.ndarray, cluster: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class code, class x cluster code) per row."""
    cls = codes_of(labels)
    return cls, cls * (int(cluster.max(initial=-1)) + 2) + (cluster.astype(np.int64) + 1)


def first_per_group(value: np.ndarray, groups: np.ndarray, quota: np.ndarray) -> np.ndarray:
    """Ascending rows: the first quota[g] rows of each group g by value (ties: the lower row)."""
    return np.flatnonzero(group_rank(value, groups) < quota[groups])


def class_quota_per_group(labels: np.ndarray, cluster: np.ndarray, quota: Mapping[Any, int],
                          fake_class: Any) -> tuple[np.ndarray, np.ndarray]:
    """(class x cluster code per row, quota per code): a class's quota, the fake class's split over its k-means
    clusters in proportion to their sizes (largest remainder, at least one per cluster), as nc_select splits it."""
    _, grp = _group_codes(labels, cluster)
    sizes = np.bincount(grp)
    out = np.zeros(len(sizes), dtype=np.int64)
    for c in np.unique(labels):
        codes = np.unique(grp[labels == c])
        q = int(quota.get(c, 0))
        out[codes] = proportional_quotas(sizes[codes], q) if c == fake_class and len(codes) > 1 else q
    return grp, out


# ---------------------------------------------------------------------------- nc orders


def bit_reversed(n: int) -> np.ndarray:
    """Visit position of each of n bins: bins sorted by the base-2 radical inverse of their index (0, n/2, ...)."""
    inverse = np.array([int(f"{i:032b}"[::-1], 2) for i in range(n)], dtype=np.int64)
    pos = np.empty(n, dtype=np.int64)
    pos[np.argsort(inverse, kind="stable")] = np.arange(n)
    return pos


def nc_order_value(order: str, distance: np.ndarray, groups: np.ndarray, strata: int, seed: int) -> np.ndarray:
    """Per row, its place in its group's `order` (smaller = kept first; see the module doc)."""
    if order == "nearest":
        return distance
    if order == "farthest":
        return -distance
    if order != "stratified":
        raise ValueError(f"unknown nc order {order!r}; known: {list(ORDERS)}")
    sizes = np.bincount(groups)[groups]
    bins = np.minimum(sizes, strata)                                   # a group smaller than S: one row per bin
    b = group_rank(distance, groups) * bins // sizes                   # equal-count distance-quantile bin
    draw = np.random.default_rng(seed).permutation(len(distance)).astype(np.float64)
    turn = group_rank(draw, groups * (strata + 1) + b)                 # seeded random order within a bin
    visit = np.zeros(len(distance), dtype=np.int64)
    for s in np.unique(bins):
        m = bins == s
        visit[m] = bit_reversed(int(s))[b[m]]
    return (turn * bins + visit).astype(np.float64)


def pick_nc_order(order: str, distance: np.ndarray, cluster: np.ndarray, labels: np.ndarray,
                  quota: Mapping[Any, int], fake_class: Any, strata: int = 4, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(rows kept, order value) of an nc order: per class and fake cluster, the first rows of the order."""
    grp, per_group = class_quota_per_group(labels, cluster, quota, fake_class)
    value = nc_order_value(order, distance, grp, strata, seed)
    return first_per_group(value, grp, per_group), group_quantile(value, grp)


# ---------------------------------------------------------------------------- margin


def mixed_turn(typical: np.ndarray, uncertain: np.ndarray, share: float) -> np.ndarray:
    """min(typical / share, uncertain / (1 - share)) of two quantiles in (0, 1): the rows first in this turn
    hold about `share` of the typical order's top rows and 1 - share of the uncertain order's."""
    with np.errstate(divide="ignore"):
        a = typical / share if share > 0 else np.full(len(typical), np.inf)
        b = uncertain / (1.0 - share) if share < 1 else np.full(len(uncertain), np.inf)
    return np.minimum(a, b)


def pick_margin(uncertainty: np.ndarray, distance: np.ndarray, cluster: np.ndarray, labels: np.ndarray,
                quota: Mapping[Any, int], typical_share: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows kept, turn): per class, the quota of rows first by `mixed_turn` of typical and least-sure rows."""
    cls, grp = _group_codes(labels, cluster)
    u = np.where(np.isfinite(uncertainty), uncertainty, np.inf)        # an unscored row is never "unsure"
    turn = mixed_turn(group_quantile(distance, grp), group_quantile(u, cls), typical_share)
    names = np.unique(labels)
    per_class = np.array([int(quota.get(c, 0)) for c in names], dtype=np.int64)
    return first_per_group(turn, cls, per_class), turn


def clip_margins(teacher_scores: Sequence[tuple[np.ndarray, np.ndarray, float]]) -> pd.Series:
    """Per clip, u = |mean over the teachers holding it of (score - threshold) / scale| (index clip_id).

    `teacher_scores`: per teacher (clip ids of its train rows, their bona fide scores, its decision threshold).
    scale = the standard deviation of the teacher's train scores (1 when it is 0), so that teachers with
    differently scaled logits weigh alike; two teachers sure of opposite classes average to an unsure clip.
    """
    parts = []
    for ids, scores, threshold in teacher_scores:
        s = np.asarray(scores, dtype=np.float64)
        finite = np.isfinite(s)
        scale = float(np.std(s[finite])) if finite.any() else 0.0
        parts.append(pd.Series((s - threshold) / (scale if scale > 0 else 1.0), index=pd.Index(ids, name="clip_id")))
    if not parts:
        return pd.Series(dtype=np.float64)
    return pd.concat(parts).groupby(level=0, sort=False).mean().abs()


# ---------------------------------------------------------------------------- generator balance


def balanced_quotas(sizes: np.ndarray, total: int) -> np.ndarray:
    """Split `total` evenly over groups of the given sizes, never past a group's size (water filling): a
    group with fewer rows than its share keeps them all and the rest goes to the others; the last rows go
    to the groups with the most room left (ties: the lower index)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    quota = np.zeros_like(sizes)
    left = int(min(total, sizes.sum()))
    while left > 0:
        room = sizes - quota
        open_ = np.flatnonzero(room > 0)
        share = left // len(open_)
        if share == 0:
            order = open_[np.lexsort((open_, -room[open_]))]
            quota[order[:left]] += 1
            break
        add = np.minimum(share, room[open_])
        quota[open_] += add
        left -= int(add.sum())
    return quota


def parent_turn(distance: np.ndarray, parents: np.ndarray | None) -> np.ndarray:
    """Per row, how many rows of the same parent are nearer the class mean (a row without a parent: 0)."""
    if parents is None:
        return np.zeros(len(distance), dtype=np.int64)
    codes = pd.factorize(pd.Series(parents, dtype=object))[0].astype(np.int64)   # null -> -1
    own = codes < 0
    codes[own] = codes.max(initial=-1) + 1 + np.arange(int(own.sum()))       # each its own parent
    return group_rank(distance, codes)


def pick_generator_balanced(distance: np.ndarray, labels: np.ndarray, quota: Mapping[Any, int], fake_class: Any,
                            systems: np.ndarray, system_quota: Mapping[str, int],
                            parents: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rows kept, order value): fake rows, `system_quota[s]` per system s, first by (parent turn, distance);
    other classes: their quota nearest the class mean. The value interleaves the systems round-robin."""
    fake = labels == fake_class
    value = np.zeros(len(labels), dtype=np.float64)
    keep = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels[~fake]):
        rows = np.flatnonzero(labels == c)
        r = group_rank(distance[rows], np.zeros(len(rows), dtype=np.int64))
        value[rows] = r
        keep[rows] = r < int(quota.get(c, 0))
    rows = np.flatnonzero(fake)
    if len(rows):
        sys_names, sys_code = np.unique(np.asarray(systems)[rows].astype(str), return_inverse=True)
        sys_code = sys_code.reshape(-1)
        turn = parent_turn(distance[rows], None if parents is None else np.asarray(parents, dtype=object)[rows])
        r = ranks_in_groups(np.lexsort((np.arange(len(rows)), distance[rows], turn, sys_code)), sys_code)
        want = np.array([int(system_quota.get(s, 0)) for s in sys_names], dtype=np.int64)
        keep[rows] = r < want[sys_code]
        value[rows] = r * len(sys_names) + sys_code
    return np.flatnonzero(keep), value


def system_quotas(systems: pd.Series, budget: int, pool_systems: Sequence[pd.Series]) -> list[dict[str, int]]:
    """Per pool, fake rows kept per system: `budget` spread evenly over the distinct systems of the merged fake
    train clips (`systems`, one per distinct clip), each system's share split over the pools holding it in
    proportion to their rows of it."""
    sizes = systems.astype(str).value_counts().sort_index()
    per_system = dict(zip(sizes.index, balanced_quotas(sizes.to_numpy(), budget)))
    counts = [s.astype(str).value_counts() for s in pool_systems]
    out: list[dict[str, int]] = [{} for _ in pool_systems]
    for name, q in per_system.items():
        split = proportional_quotas(np.array([int(c.get(name, 0)) for c in counts]), int(q))
        for i, v in enumerate(split):
            if v:
                out[i][name] = int(v)
    return out


def class_quotas(labels: np.ndarray, ratios: Mapping[Any, float]) -> dict[Any, int]:
    """Rows kept per class of one pool at per-class ratios (n_keep_for: round half up, at least 1)."""
    from pipeline.sampling.quotas import n_keep_for

    return {c: n_keep_for(int((labels == c).sum()), ratios[c]) for c in np.unique(labels)}
