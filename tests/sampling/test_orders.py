"""The selection orders beyond nearest-to-mean on planted data: farthest, stratified, margin, generator balance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.params import ConfigError
from pipeline.sampling import generator_balanced_select, margin_select, n_keep_for, nc_select, order_select, orders
from pipeline.sampling.quotas import balanced_quotas
from pipeline.sampling.ranks import first_per_group, group_rank, quantile_bins, stable_order


@pytest.fixture(autouse=True)
def _one_faiss_thread():
    import faiss

    faiss.omp_set_num_threads(1)


def planted(n_bona: int = 200, n_spoof: int = 300, n_out: int = 10, d: int = 8, seed: int = 0):
    """Tight class blobs (no normalisation needed) with `n_out` planted outliers per class, far from the mean."""
    rng = np.random.default_rng(seed)
    bona = rng.normal(0, 0.1, (n_bona, d)) + 5.0 * np.eye(d)[0]
    spoof = rng.normal(0, 0.1, (n_spoof, d)) - 5.0 * np.eye(d)[0]
    bona[:n_out] += 3.0 * np.eye(d)[1]
    spoof[:n_out] += 3.0 * np.eye(d)[2]
    emb = np.concatenate([bona, spoof]).astype(np.float32)
    labels = np.array(["bonafide"] * n_bona + ["spoof"] * n_spoof)
    outliers = np.r_[np.arange(n_out), n_bona + np.arange(n_out)]
    return emb, labels, outliers


def test_farthest_order_picks_the_planted_outliers():
    emb, labels, outliers = planted()
    idx = order_select(emb, labels, 0.05, n_clusters=0, seed=0, normalize=False, order="farthest")
    assert set(outliers.tolist()) <= set(idx.tolist())          # 10 of 200 bona fide, 15 of 300 spoofs
    assert set(idx[labels[idx] == "bonafide"].tolist()) == set(outliers[:10].tolist()) and len(idx) == 25
    near = nc_select(emb, labels, 0.05, n_clusters=0, seed=0, normalize=False)
    assert not set(near.tolist()) & set(outliers.tolist())      # nearest (the default) never takes one


def test_stratified_order_covers_every_distance_quantile_equally():
    emb, labels, _ = planted(n_out=0)
    for ratio, strata in ((0.2, 4), (0.1, 5), (0.02, 4)):
        idx = order_select(emb, labels, ratio, n_clusters=0, seed=3, normalize=False, order="stratified", strata=strata)
        for c in ("bonafide", "spoof"):
            rows = np.flatnonzero(labels == c)
            d = np.linalg.norm(emb[rows] - emb[rows].mean(axis=0), axis=1)
            quantile = np.empty(len(rows), dtype=int)
            quantile[np.lexsort((rows, d))] = np.arange(len(rows)) * strata // len(rows)
            kept = quantile[np.isin(rows, idx)]
            n_keep = n_keep_for(len(rows), ratio)
            per_bin = np.bincount(kept, minlength=strata)
            assert per_bin.sum() == n_keep
            assert per_bin.max() - per_bin.min() <= 1, (ratio, c, per_bin)   # equal shares, up to rounding
            if n_keep < strata:        # 4 of 200 bona fide at 2%: one per bin; 6 spoofs: both extremes first
                assert per_bin[0] >= 1 and per_bin[-1] >= 1
    first, again, other = (order_select(emb, labels, 0.2, n_clusters=0, seed=s, normalize=False, order="stratified")
                           for s in (3, 3, 4))
    np.testing.assert_array_equal(first, again)
    assert set(other.tolist()) != set(again.tolist())           # the draw within a bin follows the seed


def test_stratified_within_fake_clusters_splits_the_quota_by_cluster_size():
    labels = np.array(["bonafide"] * 20 + ["spoof"] * 40)
    cluster = np.r_[np.full(20, -1), np.zeros(30, int), np.ones(10, int)]
    distance = np.r_[np.linspace(0, 1, 20), np.linspace(0, 1, 30), np.linspace(0, 1, 10)]
    idx, full = orders.pick_nc_order("stratified", distance, cluster, labels, {"bonafide": 4, "spoof": 8}, "spoof",
                                     strata=2, seed=0)
    value, groups = full()
    spoof = idx[labels[idx] == "spoof"]
    assert (cluster[spoof] == 0).sum() == 6 and (cluster[spoof] == 1).sum() == 2      # 8 split 30 : 10
    assert ((distance[spoof] < 0.5) & (cluster[spoof] == 0)).sum() == 3               # half per distance bin
    assert ((labels == "bonafide") & (distance < 0.5))[idx].sum() == 2
    assert value.shape == labels.shape and len(np.unique(groups)) == 3         # bona fide, two fake clusters
    for g in np.unique(groups):                      # the picks are the first of their group's order
        rows = np.flatnonzero(groups == g)
        assert set(idx) & set(rows) == set(rows[np.argsort(value[rows], kind="stable")][:len(set(idx) & set(rows))])


def test_margin_picks_the_clips_nearest_the_decision_boundary():
    emb, labels, _ = planted(n_out=0)
    rng = np.random.default_rng(1)
    margins = rng.normal(0, 1, len(labels)) + np.where(labels == "bonafide", 6.0, -6.0)   # confident
    boundary = np.r_[np.arange(5, 25), 200 + np.arange(40, 70)]                        # 20 + 30 unsure
    margins[boundary] = rng.uniform(-0.1, 0.1, len(boundary))
    idx = margin_select(emb, labels, 0.1, margins=margins, typical_share=0.0, n_clusters=0, seed=0)
    assert set(idx.tolist()) == set(boundary.tolist())
    mixed = margin_select(emb, labels, 0.1, margins=margins, typical_share=0.5, n_clusters=2, seed=0)
    assert len(mixed) == 50
    for c, half in (("bonafide", 10), ("spoof", 15)):        # at least half of each class: its least sure rows
        rows = np.flatnonzero(labels == c)
        unsure = rows[np.argsort(np.abs(margins[rows]), kind="stable")[:half]]
        assert set(unsure.tolist()) <= set(mixed.tolist())
    assert 25 <= len(set(mixed.tolist()) & set(boundary.tolist())) < 50
    near = nc_select(emb, labels, 0.05, n_clusters=0, seed=0, normalize=True)
    assert set(mixed.tolist()) - set(boundary.tolist()) <= set(near.tolist()) | set(
        nc_select(emb, labels, 0.05, n_clusters=2, seed=0).tolist())                     # the rest: typical
    with pytest.raises(ValueError, match="margins: one per embedding row"):
        margin_select(emb, labels, 0.1, margins=margins[:-1], n_clusters=0, seed=0)
    with pytest.raises(ValueError, match="typical_share must be in"):
        margin_select(emb, labels, 0.1, margins=margins, typical_share=1.5, n_clusters=0, seed=0)


def test_clip_margins_average_scaled_teacher_margins():
    a = (np.array(["x", "y", "z"]), np.array([1.0, 3.0, 5.0]), 3.0)     # std sqrt(8/3)
    b = (np.array(["y", "z"]), np.array([10.0, 30.0]), 10.0)            # std 10
    u = orders.clip_margins([a, b])
    s = np.sqrt(8 / 3)
    assert u["x"] == pytest.approx(2 / s)
    assert u["y"] == pytest.approx(0.0)
    assert u["z"] == pytest.approx((2 / s + 2.0) / 2)
    assert orders.clip_margins([]).empty


def test_generator_balanced_gives_equal_counts_per_system_and_spreads_parents():
    rng = np.random.default_rng(0)
    sizes = {"a": 120, "b": 60, "c": 30, "d": 6}
    systems = np.array(["-"] * 100 + [s for s, n in sizes.items() for _ in range(n)])
    labels = np.where(systems == "-", "bonafide", "spoof")
    parents = np.array([None] * 100 + [f"p{i % 40}" for i in range(len(systems) - 100)], dtype=object)
    emb = rng.normal(0, 1, (len(labels), 8)).astype(np.float32) + np.where(labels == "bonafide", 3, -3)[:, None]
    idx = generator_balanced_select(emb, labels, 0.25, systems=systems, parents=parents, seed=0)
    kept = pd.Series(systems[idx]).value_counts().to_dict()
    # 25% of 216 spoofs = 54: d keeps all 6, the other 48 split 16 / 16 / 16
    assert kept == {"-": 25, "a": 16, "b": 16, "c": 16, "d": 6}
    a_rows = idx[systems[idx] == "a"]
    assert pd.Series(parents[a_rows]).is_unique        # 16 of a's 40 parents: none twice
    assert balanced_quotas(np.array([100, 100, 100, 10]), 101).tolist() == [31, 30, 30, 10]
    assert balanced_quotas(np.array([10, 100, 100]), 23).tolist() == [8, 8, 7]      # round robin: 0, 1 first
    assert balanced_quotas(np.array([3, 0, 5]), 20).tolist() == [3, 0, 5]
    with pytest.raises(ValueError, match="systems: one per embedding row"):
        generator_balanced_select(emb, labels, 0.25, systems=systems[:-1])


def test_system_quotas_spread_the_budget_over_the_merged_systems_and_split_shared_ones():
    merged = pd.Series(["a"] * 50 + ["b"] * 50 + ["t"] * 20)
    pools = [pd.Series(["a"] * 50 + ["t"] * 20), pd.Series(["b"] * 50 + ["t"] * 20)]
    quotas = orders.system_quotas(merged, 30, pools)
    assert quotas == [{"a": 10, "t": 5}, {"b": 10, "t": 5}]


def test_order_params_are_checked_with_their_full_key():
    assert orders.NCOrderParams.from_params({"order": "stratified", "strata": 5}).strata == 5
    with pytest.raises(ConfigError, match=r"sample.nc.order: unknown value 'middle'"):
        orders.NCOrderParams.from_params({"order": "middle"})
    with pytest.raises(ConfigError, match=r"sample.nc.strata: must be >= 1"):
        orders.NCOrderParams.from_params({"strata": 0})
    with pytest.raises(ConfigError, match=r"sample.margin.typical_share: must be <= 1"):
        orders.MarginParams.from_params({"typical_share": 2})
    with pytest.raises(ConfigError, match=r"sample.margin.teachers: expected a list"):
        orders.MarginParams.from_params({"teachers": "t1"})
    assert orders.MarginParams.from_params({"teachers": ["t1"]}).teachers == ("t1",)
    with pytest.raises(ValueError, match="order must be one of"):
        order_select(np.ones((4, 2), np.float32), ["bonafide", "spoof"] * 2, 0.5, n_clusters=0, seed=0, order="x")
    emb, labels, _ = planted(n_out=0)          # the nearest order is nc_select's
    np.testing.assert_array_equal(order_select(emb, labels, 0.1, order="nearest", n_clusters=2, seed=1),
                                  nc_select(emb, labels, 0.1, n_clusters=2, seed=1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_fast_picks_are_the_first_rows_of_the_full_order(seed):
    """The pickers select by partial sorts; the top-up key ranks the full order: both must agree."""
    rng = np.random.default_rng(seed)
    n = 3000
    labels = np.where(rng.random(n) < 0.3, "bonafide", "spoof")
    distance = np.round(rng.random(n), 3)                               # ties on purpose
    cluster = np.where(labels == "spoof", rng.integers(0, 5, n), -1)
    quota = {"bonafide": int(rng.integers(1, 600)), "spoof": int(rng.integers(1, 1500))}
    u = np.where(rng.random(n) < 0.05, np.nan, np.round(rng.random(n), 2))
    systems = np.where(labels == "spoof", rng.choice(["a", "b", "c"], n, p=[0.1, 0.3, 0.6]), "-")
    parents = np.where(labels == "spoof", rng.integers(0, 300, n).astype(str), None)
    cases = [orders.pick_nc_order(o, distance, cluster, labels, quota, "spoof", 4, seed)
             for o in ("farthest", "stratified")]
    cases.append(orders.pick_margin(u, distance, cluster, labels, quota, 0.3))
    sq = dict(zip("abc", balanced_quotas(np.bincount(pd.factorize(systems[labels == "spoof"], sort=True)[0]),
                                         quota["spoof"])))
    cases.append(orders.pick_generator_balanced(distance, labels, quota, "spoof", systems, sq, parents))
    for idx, full in cases:
        value, groups = full()
        kept = {g: int(np.isin(np.flatnonzero(groups == g), idx).sum()) for g in np.unique(groups)}
        expected = first_per_group(value, groups, np.array([kept.get(g, 0) for g in range(groups.max() + 1)]))
        np.testing.assert_array_equal(idx, expected)
    assert (stable_order(distance) == np.argsort(distance, kind="stable")).all()
    groups = cluster + 1
    for v in (distance, rng.random(n)):                      # with ties (the full-rank fallback) and without
        sizes = np.bincount(groups)[groups]
        np.testing.assert_array_equal(quantile_bins(v, groups, 4), group_rank(v, groups) * np.minimum(sizes, 4)
                                      // sizes)
    assert (group_rank(distance, cluster + 1) == group_rank(distance + 0.0, cluster + 1)).all()


def test_parent_turn_reads_integer_codes_as_the_streamed_stage_gives_them():
    """The streamed stage passes parents as codes (negative: none); only which rows share a parent counts."""
    distance = np.array([0.3, 0.1, 0.2, 0.5, 0.4, 0.0])
    names = np.array(["p1", "p1", None, "p2", "p2", None], dtype=object)
    codes = np.array([7, 7, -1, 2, 2, -1])
    assert orders.parent_turn(distance, codes).tolist() == orders.parent_turn(distance, names).tolist()
    assert orders.parent_turn(distance, codes).tolist() == [1, 0, 0, 1, 0, 0]
