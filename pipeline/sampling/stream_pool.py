"""The sample stage past memory: one pool's picks without its embedding matrix or its clip table in memory.

Reads nothing and writes nothing; pipeline/sampling/stream_stage.py calls `sample_pool` for every pool once a
pool has more train rows than `sample.stream_above_rows`. The matrix stays on disk (memory-mapped emb.npy or
emb-*.npy shards) and is read one block of rows at a time, or as a bounded row sample; the clip table stays in
the stage's ClipStore (clipstore.py): a clip is its row there (an int), never its id string.

- nc: `stream_nc` (streaming.py) over the pool's train rows (`rows=`: gathered block by block, never
  `embeddings[train_rows]`), the same picks, distances and clusters as the in-memory path (same blocks);
- farthest: the rows farthest from their class mean, from the per-row distances that the same pass keeps;
  random and full need the labels only. Same picks as in memory;
- the orders of orders.py (nc farthest/stratified, margin, generator_balanced) read the same per-row distances
  and clusters: the caller passes them as `ordered` functions (methods.pick), the in-memory picks again;
- kcenter is skipped (see SKIPPED): greedy k-center costs O(n_c x n_keep x D), days at 10M rows;
- the top-up candidates of `fill_to_budget` (budget.py) are, per pool and class, only the first
  T = min(n_c, 2 x budget_c) rows in the method's order, not every row. That is enough: the top-up takes
  `need` = budget - |union| rows, and the rows it passes over in a pool are picked clips (at most
  |union|), rows it takes (< need) or rows whose clip it already took from another pool (< need), so
  it never reads past row |union| + 2 need - 1 < 2 budget of any pool's order: the same rows as with
  every candidate. The picked rows never exceed the budget (the quotas sum to it), so nothing is trimmed;
  and a pool's own picks are left out of its candidates (the top-up skips every picked clip: same rows);
- diagnostics: NC1 on a seeded sample of at most `sample.stream_diagnostics_rows` train rows (and of
  the nc picks); class-mean distances from the exact streamed means; counts from the store's codes.

Slim frames (`clip_id` = the clip's row in the store (int32 below 2^31 rows), label and teacher as categoricals,
distance, cluster, order key, pool) hold the picks and candidates (~budget rows each per method; no candidates
when there is one pool: its picks are the budget) and `full`'s every train row (no order key): ~28 bytes a row
(20 for `full`). The
budget's tie rule never reaches the clip id (two rows of one class and pool never share an order key), so
rows instead of id strings give the in-memory manifests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.sampling import budget as bd
from pipeline.sampling.baselines import random_rows
from pipeline.sampling.diagnostics import mean_distances, nc1
from pipeline.sampling.nc import DEFAULT_CHUNK_ROWS
from pipeline.sampling.quotas import class_ratios, n_keep_for
from pipeline.sampling.streaming import StreamedNC, as_shards, stream_nc, take_rows
from pipeline.schema import LABELS

CHUNK_ROWS = DEFAULT_CHUNK_ROWS          # read at call time (tests shrink it)
METHODS = ("nc", "random", "full", "farthest")
SKIPPED = {"kcenter": "greedy k-center costs O(n_c x n_keep x D) per class: not run past "
                      "sample.stream_above_rows train rows"}
CODES = tuple(range(len(LABELS)))        # label codes: index into LABELS
SPOOF = LABELS.index("spoof")


@dataclass
class PoolPicks:
    """One pool's slim frames: picks and top-up candidates per method, and its diagnostics."""

    picks: dict[str, pd.DataFrame] = field(default_factory=dict)
    candidates: dict[str, pd.DataFrame] = field(default_factory=dict)
    diag: dict[str, Any] = field(default_factory=dict)


def sample_pool(embeddings: Any, train_rows: np.ndarray, clip_pos: np.ndarray, codes: np.ndarray, store: Any,
                p: Any, *, teacher: str, pool: int, seed: int, quota: dict[str, int],
                budgets: dict[str, int], ordered: Mapping[str, Callable] | None = None,
                teachers: Sequence[str] | None = None, top_up: bool = True) -> PoolPicks:
    """Pick from one pool's train rows (`train_rows`: rows of its matrix, ascending; `clip_pos`: their rows
    in the ClipStore `store`; `codes`: their label codes) with every method of METHODS, and of `ordered`
    ({method: f(distance, cluster) -> (rows, order key)}, which replaces a method of METHODS it names); `p` is
    the stage's SampleParams; `teachers`: every pool's teacher (the categories of the slim `teacher` column),
    None: this pool's alone; `top_up`: False when this is the only pool (its picks are exactly the budget, the
    top-up never runs: no candidates are kept)."""
    ordered = ordered or {}
    sizes = {LABELS[k]: int((codes == k).sum()) for k in CODES}
    for c, n in sizes.items():
        if not n:
            raise ValueError(f"class {c!r} has no rows: NC sampling needs every class {list(LABELS)} in the pool")
    ratios = class_ratios(CODES, p.ratio, {LABELS.index(c): r for c, r in bd.quota_ratios(quota, sizes).items()})
    st = stream_nc(embeddings, codes, p.ratio, class_ratio=ratios, n_clusters=p.n_clusters, seed=seed,
                   normalize=p.normalize, classes=CODES, fake_class=SPOOF,
                   max_points_per_centroid=p.max_points_per_centroid, kmeans_iters=p.kmeans_iters,
                   chunk_rows=CHUNK_ROWS, rows=train_rows, keep_distances=True)
    out = PoolPicks()
    frame = _Slim(clip_pos, codes, st, tuple(teachers or (teacher,)), teacher, pool)
    distance = st.all_distance          # every row's, as kept by the pass (not a copy)
    kept = np.array([quota[c] > 0 for c in LABELS], dtype=bool)    # a class whose quota in this pool is 0
    nc_idx = st.indices[kept[codes[st.indices]]]
    # the orders-only methods first: their row-sized sorts (generator_balanced's the largest) run before the
    # other methods' slim frames (full's holds every train row) exist, so the two never add up at the peak
    for method in (*(m for m in ordered if m not in METHODS), *METHODS):
        if method == "full":
            out.picks[method] = frame(np.arange(len(codes)), None, distance)      # no top-up: no order key
            continue
        if method in ordered:
            idx, key = ordered[method](distance, st.cluster)
            nc_idx = idx[kept[codes[idx]]] if method == "nc" else nc_idx
        else:
            if method == "nc":
                idx = nc_idx
            elif method == "random":      # random_select's draw, from the labels alone
                idx = random_rows(codes, CODES, ratios, seed)
            else:
                idx = _farthest(distance, codes, ratios)
            key = bd.order_key(method, distance, codes, seed)
        idx = idx[kept[codes[idx]]]
        out.picks[method] = frame(idx, key, distance)
        picked = np.zeros(len(codes), dtype=bool)
        picked[idx] = True
        first = _first_rows(key, codes, budgets) if top_up else idx[:0]   # less the picks (the top-up skips them)
        out.candidates[method] = frame(first[~picked[first]], key, distance)
    out.diag = _diagnostics(embeddings, train_rows, codes, st, nc_idx, store, clip_pos, p, seed)
    return out


class _Slim:
    """Slim frames of a pool's train rows: clip_id (the store row), label and teacher (categorical: a byte a row),
    distance, cluster, KEY (not for `full`: it has no top-up) and POOL (int16): ~28 bytes a row."""

    def __init__(self, clip_pos: np.ndarray, codes: np.ndarray, st: StreamedNC, teachers: tuple, teacher: str,
                 pool: int) -> None:
        self.pos, self.codes = clip_pos, codes
        self.pos_type = np.int32 if len(clip_pos) and int(clip_pos.max()) < 2**31 else np.int64   # 4 bytes a row
        self.cluster, self.teachers, self.pool = st.cluster, teachers, pool
        self.teacher_code = teachers.index(teacher)

    def __call__(self, idx: np.ndarray, key: np.ndarray | None, distance: np.ndarray) -> pd.DataFrame:
        n = len(idx)
        cluster = np.full(n, -1, dtype=np.int32) if self.cluster is None else self.cluster[idx]
        cols = {"clip_id": self.pos[idx].astype(self.pos_type),
                "label": pd.Categorical.from_codes(self.codes[idx], LABELS),
                "teacher": pd.Categorical.from_codes(np.full(n, self.teacher_code, dtype=np.int8), self.teachers),
                "distance": distance[idx], "cluster": cluster.astype(np.int32)}
        if key is not None:
            cols[bd.KEY] = key[idx]
        return pd.DataFrame({**cols, bd.POOL: np.full(n, self.pool, dtype=np.int16)})


def _farthest(distance: np.ndarray, codes: np.ndarray, ratios: dict) -> np.ndarray:
    """select_from_ranking(farthest=True): per class, the n_keep rows farthest from the mean (ties: lower row)."""
    from pipeline.sampling.nc import nearest_rows

    picked = []
    for k in CODES:
        rows = np.flatnonzero(codes == k)
        picked.append(nearest_rows(rows, -distance[rows], n_keep_for(len(rows), ratios[k])))
    return np.sort(np.concatenate(picked))


def _first_rows(key: np.ndarray, codes: np.ndarray, budgets: dict[str, int]) -> np.ndarray:
    """Per class, the rows whose order key ranks below 2 x the class budget (the candidates the top-up can
    reach, see the module doc), ascending."""
    keep = np.zeros(len(key), dtype=bool)
    for k in CODES:
        m = codes == k
        n = int(m.sum())
        keep |= m & (key < min(n, 2 * budgets[LABELS[k]]) / max(n, 1))   # key = rank / n
    return np.flatnonzero(keep)


def _sample_rows(n: int, limit: int, seed: int, salt: int) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    rng = np.random.default_rng(np.random.SeedSequence([seed, salt]))
    return np.sort(rng.choice(n, size=limit, replace=False))


def _nc1_sample(embeddings: Any, rows: np.ndarray, codes: np.ndarray, normalize: bool) -> float | None:
    """NC1 of the given matrix rows (a bounded sample), None unless both classes are in it (or not finite)."""
    if len(np.unique(codes)) < len(CODES):
        return None
    value = nc1(take_rows(as_shards(embeddings), rows), np.array(LABELS)[codes], normalize=normalize)
    return float(value) if np.isfinite(value) else None


def _diagnostics(embeddings: Any, train_rows: np.ndarray, codes: np.ndarray, st: StreamedNC, nc_idx: np.ndarray,
                 store: Any, clip_pos: np.ndarray, p: Any, seed: int) -> dict[str, Any]:
    """The pool's entry of reports/sampling.json, from bounded row samples (see the module doc)."""
    limit = p.stream_diagnostics_rows
    sub = _sample_rows(len(codes), limit, seed, 1)
    sel = nc_idx[_sample_rows(len(nc_idx), limit, seed, 2)]
    return {
        "streamed": True, "diagnostics_rows": int(len(sub)), "diagnostics_selected_rows": int(len(sel)),
        "dim": int(as_shards(embeddings)[0].shape[1]),
        "nc1": _nc1_sample(embeddings, train_rows[sub], codes[sub], p.normalize),
        "nc1_selected": _nc1_sample(embeddings, train_rows[sel], codes[sel], p.normalize),
        "class_mean_distance": mean_distances({LABELS[k]: m for k, m in st.means.items()}),
        "before": store.counts(clip_pos),
        "skipped": dict(SKIPPED),
    }
