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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pipeline.params import ConfigError, Section, as_list, number, one_of
from pipeline.sampling.quotas import balanced_quotas, n_keep_for, proportional_quotas
from pipeline.sampling.ranks import (
    class_codes,
    cluster_groups,
    first_per_group,
    group_quantile,
    group_rank,
    quantile_bins,
    quota_per_group,
    top_quantile,
)

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
    systems: Any = None                            # generator system per row: strings or a Categorical
    parents: np.ndarray | None = None              # parent clip id per row, None/NaN = its own parent
    system_quota: dict[str, int] = field(default_factory=dict)   # fake rows kept per system in this pool


# ---------------------------------------------------------------------------- nc orders


def bit_reversed(n: int) -> np.ndarray:
    """Visit position of each of n bins: bins sorted by the base-2 radical inverse of their index (0, n/2, ...)."""
    inverse = np.array([int(f"{i:032b}"[::-1], 2) for i in range(n)], dtype=np.int64)
    pos = np.empty(n, dtype=np.int64)
    pos[np.argsort(inverse, kind="stable")] = np.arange(n)
    return pos


@dataclass
class Strata:
    """The stratified order's cells: per row its distance-quantile bin, the bins of its group, its visit
    position within a round, and a seeded random draw that orders the rows of a cell."""

    cell: np.ndarray
    bins: np.ndarray
    visit: np.ndarray
    draw: np.ndarray

    @classmethod
    def of(cls, distance: np.ndarray, groups: np.ndarray, strata: int, seed: int) -> Strata:
        sizes = np.bincount(groups)[groups]
        bins = np.minimum(sizes, strata)                               # a group smaller than S: one row per bin
        b = quantile_bins(distance, groups, strata)                    # equal-count distance-quantile bin
        visit = np.zeros(len(distance), dtype=np.int64)
        for s in np.unique(bins):
            m = bins == s
            visit[m] = bit_reversed(int(s))[b[m]]
        return cls(groups * (strata + 1) + b, bins, visit, np.random.default_rng(seed).random(len(distance)))

    def value(self) -> np.ndarray:
        """turn x bins + visit: one row of every bin per turn, the bins in visit order (a full sort per cell)."""
        return (group_rank(self.draw, self.cell) * self.bins + self.visit).astype(np.float64)

    def picks(self, groups: np.ndarray, per_group: np.ndarray) -> np.ndarray | None:
        """The first per_group[g] rows of each group by `value`, as a partial sort per cell: q // S rows of every
        bin, one more for the first q % S bins in visit order (None when a cell would run out: use value())."""
        q, s = per_group[groups], self.bins
        want = q // s + (self.visit < q % s)
        k = np.zeros(int(self.cell.max(initial=-1)) + 1, dtype=np.int64)
        k[self.cell] = want
        if (k > np.bincount(self.cell, minlength=len(k))).any():
            return None
        return first_per_group(self.draw, self.cell, k)


def pick_nc_order(order: str, distance: np.ndarray, cluster: np.ndarray, labels: np.ndarray,
                  quota: Mapping[Any, int], fake_class: Any, strata: int = 4, seed: int = 0
                  ) -> tuple[np.ndarray, Callable[[], tuple[np.ndarray, np.ndarray]]]:
    """(rows kept, () -> (order value, group)) of an nc order: per class and fake cluster, the first rows of the
    order (see the module doc); the value (for the top-up key) is computed only when asked for."""
    if order not in ORDERS:
        raise ValueError(f"unknown nc order {order!r}; known: {list(ORDERS)}")
    classes = list(quota)
    fake = classes.index(fake_class) if fake_class in classes else -1
    grp, per_group = quota_per_group(class_codes(labels, classes), cluster, [quota[c] for c in classes], fake)
    if order != "stratified":
        value = distance if order == "nearest" else -distance
        return first_per_group(value, grp, per_group), lambda: (value, grp)
    cells = Strata.of(distance, grp, strata, seed)
    idx = cells.picks(grp, per_group)
    return (first_per_group(cells.value(), grp, per_group) if idx is None else idx), lambda: (cells.value(), grp)


# ---------------------------------------------------------------------------- margin


def mixed_turn(typical: np.ndarray, uncertain: np.ndarray, share: float) -> np.ndarray:
    """min(typical / share, uncertain / (1 - share)) of two quantiles in (0, 1): the rows first in this turn
    hold about `share` of the typical order's top rows and 1 - share of the uncertain order's."""
    with np.errstate(divide="ignore"):
        a = typical / share if share > 0 else np.full(len(typical), np.inf)
        b = uncertain / (1.0 - share) if share < 1 else np.full(len(uncertain), np.inf)
    return np.minimum(a, b)


def pick_margin(uncertainty: np.ndarray, distance: np.ndarray, cluster: np.ndarray, labels: np.ndarray,
                quota: Mapping[Any, int], typical_share: float
                ) -> tuple[np.ndarray, Callable[[], tuple[np.ndarray, np.ndarray]]]:
    """(rows kept, () -> (turn, class code)): per class, the quota of rows first by `mixed_turn` of typical (per
    class and fake cluster) and least-sure rows.

    The picks need the quantiles of the rows that can be picked only: a group's first k rows, k = its share of
    (quota + number of groups) + 1 (typical) or quota + 1 (uncertain): every row whose turn is below the
    quota-th is among them, so the partial quantiles give the picks of the full ones."""
    classes = list(quota)
    cls = class_codes(labels, classes)
    grp, _ = cluster_groups(cls, cluster)
    u = np.where(np.isfinite(uncertainty), uncertainty, np.inf)        # an unscored row is never "unsure"
    q = np.array([quota[c] for c in classes], dtype=np.int64)
    n_cls = np.bincount(cls, minlength=len(classes))
    n_grp = np.bincount(grp)
    owner = np.zeros(len(n_grp), dtype=np.int64)
    owner[grp] = cls
    n_groups = np.bincount(owner[n_grp > 0], minlength=len(classes))
    k_typ = np.ceil((q[owner] + n_groups[owner]) * n_grp / np.maximum(n_cls[owner], 1)).astype(np.int64) + 1
    turn = mixed_turn(top_quantile(distance, grp, k_typ), top_quantile(u, cls, q + 1), typical_share)
    full = lambda: (mixed_turn(group_quantile(distance, grp), group_quantile(u, cls), typical_share), cls)  # noqa: E731
    return first_per_group(turn, cls, q), full


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


def parent_turn(distance: np.ndarray, parents: np.ndarray | None) -> np.ndarray:
    """Per row, how many rows of the same parent are nearer the class mean (a row without a parent: 0).
    `parents`: ids (None/NaN: none) or integer codes (negative: none); only which rows share one counts."""
    if parents is None:
        return np.zeros(len(distance), dtype=np.int64)
    if parents.dtype.kind in "iu":          # codes already (the streamed stage's): negative = no parent
        codes = np.where(parents < 0, -1, parents).astype(np.int64)
    else:
        codes = pd.factorize(pd.Series(parents, dtype=object))[0].astype(np.int64)   # null -> -1
    own = codes < 0
    codes[own] = codes.max(initial=-1) + 1 + np.arange(int(own.sum()))       # each its own parent
    return group_rank(distance, codes)


def pick_generator_balanced(distance: np.ndarray, labels: np.ndarray, quota: Mapping[Any, int], fake_class: Any,
                            systems: np.ndarray, system_quota: Mapping[str, int], parents: np.ndarray | None = None
                            ) -> tuple[np.ndarray, Callable[[], tuple[np.ndarray, np.ndarray]]]:
    """(rows kept, () -> (order value, class code)): fake rows, `system_quota[s]` per system s, first by (parent
    turn, distance); other classes: their quota nearest the class mean. The fakes' value interleaves the systems
    round-robin (the top-up order)."""
    classes = list(quota)
    cls = class_codes(labels, classes)
    fake_code = classes.index(fake_class) if fake_class in classes else -2
    fake = cls == fake_code
    counts = np.array([0 if k == fake_code else quota[c] for k, c in enumerate(classes)], dtype=np.int64)
    keep = [first_per_group(distance, np.where(fake, len(classes), cls), np.r_[counts, 0])]
    rows = np.flatnonzero(fake)
    sys_code, sys_names = pd.factorize(_take(systems, rows), sort=True)
    turn = parent_turn(distance[rows], None if parents is None else _parent_values(parents)[rows])
    # (parent turn, distance) as one value: the turn dominates (distances span less than `span`)
    span = float(np.ptp(distance[rows])) + 1.0 if len(rows) else 1.0
    lead = turn * span + (distance[rows] - distance[rows].min(initial=0.0))
    want = np.array([int(system_quota.get(str(s), 0)) for s in sys_names], dtype=np.int64)
    keep.append(rows[first_per_group(lead, sys_code.astype(np.int64), want)])

    def value() -> tuple[np.ndarray, np.ndarray]:
        out = distance.astype(np.float64, copy=True)
        out[rows] = group_rank(lead, sys_code) * max(len(sys_names), 1) + sys_code
        return out, cls

    return np.sort(np.concatenate(keep)), value


def _take(systems: Any, rows: np.ndarray) -> Any:
    """The systems of `rows`: a Categorical stays one (the streamed stage's: sorted categories, factorized in the
    strings' order), anything else becomes objects."""
    return systems[rows] if isinstance(systems, pd.Categorical) else np.asarray(systems, dtype=object)[rows]


def _parent_values(parents: Any) -> np.ndarray:
    """Parents as an array: integer codes as they are, anything else as objects (None and NaN stay null)."""
    arr = np.asarray(parents)
    return arr if arr.dtype.kind in "iu" else np.asarray(parents, dtype=object)


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
    return {c: n_keep_for(int((labels == c).sum()), r) for c, r in ratios.items()}
