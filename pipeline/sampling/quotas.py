"""How many rows a sampler keeps: ratios per class, rows kept of a class, a class's quota split over groups
(in proportion to their sizes, or evenly: `balanced_quotas`).

Pure functions on counts; used by NC selection (nc.py, streaming.py), the baselines and the equal budgets
(budget.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)


def check_ratio(ratio: float, what: str = "ratio") -> float:
    """Return `ratio` as a float or raise ValueError unless 0 < ratio <= 1 (a bool or a string is no ratio)."""
    if isinstance(ratio, (bool, np.bool_, str, bytes)):
        raise ValueError(f"{what} must be a number in (0, 1], got {ratio!r}")
    try:
        value = float(ratio)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be a number in (0, 1], got {ratio!r}") from exc
    if not (0.0 < value <= 1.0):
        raise ValueError(f"{what} must be in (0, 1], got {ratio!r}")
    return value


def n_keep_for(n: int, ratio: float) -> int:
    """Rows kept from a class of n rows at `ratio`: round half up, at least 1 (0 for an empty class)."""
    if n <= 0:
        return 0
    return int(min(n, max(1, np.floor(ratio * n + 0.5))))


def class_ratios(classes: Sequence, ratio: float, class_ratio: Mapping | None = None) -> dict:
    """The ratio of every class: `class_ratio[c]` where given, else `ratio` (each checked in (0, 1])."""
    ratio = check_ratio(ratio)
    class_ratio = dict(class_ratio or {})
    names = {str(c): c for c in classes}
    unknown = sorted(str(k) for k in class_ratio if str(k) not in names)
    if unknown:
        raise ValueError(f"class_ratio names unknown classes {unknown}; known: {list(classes)}")
    out = {c: ratio for c in classes}
    for k, v in class_ratio.items():
        out[names[str(k)]] = check_ratio(v, f"class_ratio[{k!r}]")
    return out


def proportional_quotas(sizes: np.ndarray, n_keep: int) -> np.ndarray:
    """Split n_keep over groups of the given sizes in proportion (largest remainder, ties to the lower id),
    giving every non-empty group at least one row when n_keep allows it."""
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    if total == 0 or n_keep <= 0:
        return np.zeros_like(sizes)
    exact = n_keep * sizes / total
    quota = np.floor(exact).astype(np.int64)
    rest = n_keep - int(quota.sum())
    order = np.lexsort((np.arange(len(sizes)), -(exact - quota)))
    quota[order[:rest]] += 1
    nonempty = sizes > 0
    if n_keep < int(nonempty.sum()):
        log.warning("only %d rows kept for %d non-empty clusters: some clusters go unrepresented",
                    n_keep, int(nonempty.sum()))
        return np.minimum(quota, sizes)
    for j in np.flatnonzero(nonempty & (quota == 0)):
        donor = int(np.argmax(quota))       # the largest quota always has more than one row here
        quota[donor] -= 1
        quota[j] += 1
    return np.minimum(quota, sizes)


def balanced_quotas(sizes: np.ndarray, total: int) -> np.ndarray:
    """Split `total` evenly over groups of the given sizes, never past a group's size (water filling): a
    group with fewer rows than its share keeps them all and the rest goes to the others; the last rows go
    to the first groups (lower index) with room left. The same counts as taking one row of every group with
    rows left in turn, in index order."""
    sizes = np.asarray(sizes, dtype=np.int64)
    quota = np.zeros_like(sizes)
    left = int(min(total, sizes.sum()))
    while left > 0:
        open_ = np.flatnonzero(sizes - quota > 0)
        share = left // len(open_)
        if share == 0:
            quota[open_[:left]] += 1
            break
        add = np.minimum(share, (sizes - quota)[open_])
        quota[open_] += add
        left -= int(add.sum())
    return quota
