"""Equal per-class budgets across sampling methods (pipeline/sampling/budget.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.sampling import budget as bd


def test_budget_is_ratio_of_the_distinct_clips_split_by_pool_size():
    labels = pd.Series(["bonafide"] * 176 + ["spoof"] * 400)
    budgets = bd.class_budgets(labels, ("bonafide", "spoof"), 0.25)
    assert budgets == {"bonafide": 44, "spoof": 100}
    # both pools hold all 176 bona fide clips; spoofs are 300 in one pool and 100 in the other
    quotas = bd.split_budget(budgets, [{"bonafide": 176, "spoof": 300}, {"bonafide": 176, "spoof": 100}])
    assert quotas == [{"bonafide": 22, "spoof": 75}, {"bonafide": 22, "spoof": 25}]
    assert bd.class_budgets(labels, ("bonafide", "spoof"), 0.25, {"spoof": 0.5})["spoof"] == 200


def _frame(ids, labels, keys, pool):
    return pd.DataFrame({"clip_id": ids, "label": labels, bd.KEY: keys, bd.POOL: pool})


def test_fill_tops_up_in_key_order_and_trims_to_exactly_the_budget():
    picked = _frame(["a", "b", "s1", "s2", "s3"], ["bonafide", "bonafide", "spoof", "spoof", "spoof"],
                    [0.0, 0.1, 0.0, 0.5, 0.2], 0)
    cands = pd.concat([_frame(["a", "c", "d", "e"], ["bonafide"] * 4, [0.0, 0.6, 0.3, 0.3], 0),
                       _frame(["c", "e"], ["bonafide"] * 2, [0.2, 0.9], 1)])
    out, report = bd.fill_to_budget(picked, cands, {"bonafide": 4, "spoof": 2})
    bona = out.loc[out["label"] == "bonafide", "clip_id"].tolist()
    assert bona == ["a", "b", "c", "d"]        # c: key 0.2 (its smaller key, pool 1), then d 0.3 (before e: id)
    assert out.loc[out["label"] == "spoof", "clip_id"].tolist() == ["s1", "s3"]   # s2 has the largest key
    assert report == {"bonafide": {"picked": 2, "added": 2, "trimmed": 0},
                      "spoof": {"picked": 3, "added": 0, "trimmed": 1}}
    assert bd.KEY not in out.columns and out["clip_id"].is_unique


def test_fill_refuses_a_budget_larger_than_the_clips_and_frames_without_keys():
    picked = _frame(["a"], ["bonafide"], [0.0], 0)
    with pytest.raises(ValueError, match="budget 3 but only 2"):
        bd.fill_to_budget(picked, _frame(["a", "b"], ["bonafide"] * 2, [0.0, 0.5], 0), {"bonafide": 3})
    with pytest.raises(ValueError, match="lacks columns"):
        bd.fill_to_budget(picked.drop(columns=bd.KEY), picked, {"bonafide": 1})


def test_order_key_is_a_within_class_quantile():
    labels = np.array(["bonafide", "spoof", "bonafide", "spoof", "bonafide"])
    distance = np.array([0.3, 0.2, 0.1, 0.9, 0.2])
    assert bd.order_key("nc", distance, labels, 0).tolist() == [2 / 3, 0.0, 0.0, 0.5, 1 / 3]
    assert bd.order_key("farthest", distance, labels, 0).tolist() == [0.0, 0.5, 2 / 3, 0.0, 1 / 3]
    a, b = bd.order_key("random", distance, labels, 4), bd.order_key("random", distance, labels, 4)
    assert a.tolist() == b.tolist() and sorted(a[labels == "bonafide"]) == [0.0, 1 / 3, 2 / 3]


def test_quota_ratio_gives_exactly_the_quota():
    from pipeline.sampling import n_keep_for

    for n in (7, 176, 1001):
        for q in range(1, n + 1, max(1, n // 13)):
            assert n_keep_for(n, bd.quota_ratios({"c": q}, {"c": n})["c"]) == q


def _merge_by_sorting(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The merge rule spelled out with a sort: best (distance, NaN last; then order) row per clip, in order."""
    df = pd.concat(frames, ignore_index=True)
    df["_order"] = np.arange(len(df))
    best = df.sort_values(["distance", "_order"], kind="mergesort", na_position="last")
    best = best.drop_duplicates("clip_id", keep="first")
    return best.sort_values("_order", kind="mergesort").drop(columns="_order").reset_index(drop=True)


@pytest.mark.parametrize("ids", ["strings", "rows"])
def test_merge_picks_keeps_each_clips_best_row_as_the_sorting_rule_does(ids):
    rng = np.random.default_rng(4)
    frames = []
    for pool in range(3):          # overlapping pools, tied and missing distances, each pool holds a clip once
        clips = rng.choice(60, size=40, replace=False)
        dist = rng.choice([0.1, 0.2, 0.3, np.nan], size=40)
        frames.append(pd.DataFrame({"clip_id": [f"c{c:02d}" for c in clips] if ids == "strings" else clips,
                                    "distance": dist, "teacher": f"t{pool}"}))
    got = bd.merge_picks(frames)
    pd.testing.assert_frame_equal(got, _merge_by_sorting(frames))
    assert got["clip_id"].is_unique
    pd.testing.assert_frame_equal(bd.merge_picks(frames[:1]), frames[0])


@pytest.mark.parametrize("method", ["nc", "farthest", "random", "kcenter"])
def test_order_key_ranks_ties_and_permutations_as_a_two_key_sort_does(method):
    rng = np.random.default_rng(1)
    labels = rng.choice(np.array(["bonafide", "spoof"]), size=300)
    distance = rng.choice([0.5, 1.0, 1.5], size=300)            # many ties: the lower row ranks first
    got = bd.order_key(method, distance, labels, seed=9)
    value = (distance if method == "nc" else -distance if method == "farthest"
             else np.random.default_rng(9).permutation(300).astype(np.float64))
    for c in ("bonafide", "spoof"):
        rows = np.flatnonzero(labels == c)
        order = rows[np.lexsort((rows, value[rows]))]
        np.testing.assert_array_equal(got[order], np.arange(len(rows)) / len(rows))
