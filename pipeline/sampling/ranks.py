"""Ranks within groups, and the first rows of each group: the sorting behind the orders (orders.py).

Reads nothing and writes nothing. Groups are small non-negative integer codes (a class, a class x k-means
cluster, a generator system); a value orders the rows of a group, smallest first, ties to the lower row
(the rule of nc.nearest_rows). Selection needs only each group's first rows (partial sorts, O(N));
a full rank (two sorts) is computed only where an order's definition or the top-up key needs it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.sampling.nc import nearest_rows
from pipeline.sampling.quotas import proportional_quotas


def class_codes(labels: np.ndarray, classes: Sequence) -> np.ndarray:
    """Per row, the index of its label in `classes` (-1: none): one comparison per class, no string sort."""
    codes = np.full(len(labels), -1, dtype=np.int64)
    for k, c in enumerate(classes):
        codes[labels == c] = k
    return codes


def ranks_in_groups(order: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """0-based rank of every row within its group, given `order`: the rows sorted by group first."""
    n = len(order)
    g = groups[order]
    start = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1] if n else np.zeros(0, np.int64)
    del g
    rank = np.empty(n, dtype=np.int64)
    step = np.arange(n)
    step -= np.repeat(start, np.diff(np.r_[start, n]))      # in place: one row-sized temporary fewer
    rank[order] = step
    return rank


def stable_order(value: np.ndarray) -> np.ndarray:
    """np.argsort(value, kind='stable') at quicksort speed: an unstable sort, then (only when the sorted values
    hold ties) the ties put back in row order."""
    order = np.argsort(value)
    v = value[order]
    if len(v) > 1 and (v[1:] == v[:-1]).any():
        order = order[np.lexsort((order, v))]      # rows of equal value: ascending row
    return order


def group_order(groups: np.ndarray) -> np.ndarray:
    """A stable argsort of small non-negative group codes (radix sort on 16-bit codes when they fit)."""
    small = groups.astype(np.int16) if len(groups) and int(groups.max()) < 2**15 else groups
    return np.argsort(small, kind="stable")


def group_rank(value: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """0-based rank of every row within its group by `value` (ties: the lower row)."""
    order = stable_order(value)
    return ranks_in_groups(order[group_order(groups[order])], groups)


def group_quantile(value: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(rank + 0.5) / group size: a row's place in its group's order, comparable across groups of any size."""
    q = group_rank(value, groups).astype(np.float64)
    q += 0.5
    q /= np.bincount(groups)[groups]              # in place: the same values with fewer row-sized temporaries
    return q


def group_slices(groups: np.ndarray):
    """(group code, its rows ascending) for every group present, from one stable sort of the codes."""
    order = group_order(groups)
    g = groups[order]
    cuts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1, len(g)] if len(g) else np.zeros(1, np.int64)
    for a, b in zip(cuts[:-1], cuts[1:]):
        yield int(g[a]), order[a:b]


def first_per_group(value: np.ndarray, groups: np.ndarray, quota: np.ndarray) -> np.ndarray:
    """Ascending rows: the first quota[g] rows of each group g by value (ties: the lower row), by partial sorts."""
    picked = [nearest_rows(rows, value[rows], int(quota[g])) for g, rows in group_slices(groups) if quota[g] > 0]
    return np.sort(np.concatenate(picked)) if picked else np.empty(0, dtype=np.int64)


def cluster_groups(cls: np.ndarray, cluster: np.ndarray) -> tuple[np.ndarray, int]:
    """(class x cluster code per row, codes per class): cluster -1 (none) and each k-means cluster apart."""
    if (cls < 0).any():
        raise ValueError(f"a row's label is not among the classes of the quota (first: row {int(np.argmin(cls))})")
    width = int(cluster.max(initial=-1)) + 2
    return cls * width + (cluster.astype(np.int64) + 1), width


def quota_per_group(cls: np.ndarray, cluster: np.ndarray, quota: Sequence[int],
                    fake: int) -> tuple[np.ndarray, np.ndarray]:
    """(class x cluster code per row, quota per code) from class codes: a class's quota, the fake class's split
    over its k-means clusters in proportion to their sizes (largest remainder, at least one per cluster), as
    nc_select splits it."""
    grp, width = cluster_groups(cls, cluster)
    sizes = np.bincount(grp, minlength=len(quota) * width)
    out = np.zeros(len(sizes), dtype=np.int64)
    for k, q in enumerate(quota):
        codes = k * width + np.flatnonzero(sizes[k * width:(k + 1) * width])
        out[codes] = proportional_quotas(sizes[codes], int(q)) if k == fake and len(codes) > 1 else int(q)
    return grp, out


def top_quantile(value: np.ndarray, groups: np.ndarray, k: np.ndarray) -> np.ndarray:
    """group_quantile for the first k[g] rows of each group g (partial sorts), inf for the others."""
    out = np.full(len(value), np.inf)
    for g, rows in group_slices(groups):
        top = nearest_rows(rows, value[rows], int(min(k[g], len(rows))))
        out[top] = (np.arange(len(top)) + 0.5) / len(rows)
    return out


def quantile_bins(value: np.ndarray, groups: np.ndarray, strata: int) -> np.ndarray:
    """Per row, its equal-count bin in its group: floor(rank x S / n_g), S = min(strata, n_g), rank by value
    (ties: the lower row). Found with a partial sort at the S - 1 cut ranks (O(N)); a group with a tie across a
    cut is ranked in full instead."""
    out = np.zeros(len(value), dtype=np.int64)
    for _, rows in group_slices(groups):
        n, s = len(rows), min(strata, len(rows))
        if s <= 1:
            continue
        v = value[rows]
        cuts = -(-np.arange(1, s) * n // s)                          # ceil(j n / S): the first rank of bin j
        b = np.searchsorted(np.partition(v, cuts)[cuts], v, side="right")
        if not np.array_equal(np.bincount(b, minlength=s), np.diff(np.r_[0, cuts, n])):
            b = group_rank(v, np.zeros(n, dtype=np.int64)) * s // n   # ties across a cut: the row order decides
        out[rows] = b
    return out
