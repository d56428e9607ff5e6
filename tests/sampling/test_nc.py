"""Tests of pipeline/sampling: NC class-mean selection, k-means coverage, baselines, diagnostics, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.sampling import (
    SAMPLERS,
    farthest_select,
    full_select,
    kcenter_select,
    n_keep_for,
    nc1,
    nc_rank,
    nc_select,
    proportional_quotas,
    random_select,
)


@pytest.fixture(autouse=True)
def _one_faiss_thread():
    import faiss

    faiss.omp_set_num_threads(1)


def two_classes(n_bona: int = 300, n_spoof: int = 400, d: int = 16, seed: int = 0):
    """Gaussian blobs per class (spoof = several modes), float16 like the embed stage writes."""
    rng = np.random.default_rng(seed)
    bona = rng.normal(0, 1, (n_bona, d)) + 4.0 * np.eye(d)[0]
    centres = 3.0 * rng.normal(0, 1, (4, d))
    modes = rng.integers(0, 4, n_spoof)
    spoof = centres[modes] + rng.normal(0, 0.5, (n_spoof, d))
    emb = np.concatenate([bona, spoof]).astype(np.float16)
    labels = np.array(["bonafide"] * n_bona + ["spoof"] * n_spoof)
    perm = rng.permutation(len(labels))
    return emb[perm], labels[perm]


def brute_nearest(emb, labels, cls, ratio, normalize=True):
    x = emb.astype(np.float64)
    if normalize:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    rows = np.flatnonzero(labels == cls)
    d = np.linalg.norm(x[rows] - x[rows].mean(axis=0), axis=1)
    return set(rows[np.argsort(d, kind="stable")[:n_keep_for(len(rows), ratio)]].tolist())


@pytest.mark.parametrize("normalize", [True, False])
def test_nc_select_is_exactly_the_nearest_to_mean_set_at_the_ratio(normalize):
    emb, labels = two_classes()
    idx = nc_select(emb, labels, 0.2, n_clusters=0, seed=0, normalize=normalize)
    expected = brute_nearest(emb, labels, "bonafide", 0.2, normalize) | brute_nearest(emb, labels, "spoof", 0.2,
                                                                                     normalize)
    assert set(idx.tolist()) == expected
    assert len(idx) == n_keep_for(300, 0.2) + n_keep_for(400, 0.2) == 60 + 80
    assert np.all(np.diff(idx) > 0)


def test_nc_select_honours_per_class_ratios():
    emb, labels = two_classes()
    idx = nc_select(emb, labels, 0.1, n_clusters=0, seed=0, class_ratio={"bonafide": 0.5})
    assert (labels[idx] == "bonafide").sum() == 150
    assert (labels[idx] == "spoof").sum() == 40
    assert set(idx[labels[idx] == "bonafide"].tolist()) == brute_nearest(emb, labels, "bonafide", 0.5)


def test_nc_select_accepts_integer_labels_with_spoof_as_zero():
    emb, labels = two_classes()
    ints = (labels == "bonafide").astype(np.int64)
    a = nc_select(emb, labels, 0.3, n_clusters=4, seed=7)
    b = nc_select(emb, ints, 0.3, n_clusters=4, seed=7)
    assert np.array_equal(a, b)


def test_every_kmeans_cluster_is_represented_even_a_small_far_mode():
    rng = np.random.default_rng(1)
    d = 8
    bona = rng.normal(0, 0.3, (200, d))
    big = rng.normal(0, 0.3, (900, d)) + 5 * np.eye(d)[1]
    small = rng.normal(0, 0.3, (30, d)) - 5 * np.eye(d)[1] + 5 * np.eye(d)[2]    # far from the spoof mean
    emb = np.concatenate([bona, big, small]).astype(np.float32)
    labels = np.array(["bonafide"] * 200 + ["spoof"] * 930)
    plain = nc_select(emb, labels, 0.05, n_clusters=0, seed=0)
    assert not np.any(plain >= 1100), "plain nearest-to-mean drops the small far mode"
    idx = nc_select(emb, labels, 0.05, n_clusters=2, seed=0)
    assert np.any(idx >= 1100)
    ranking = nc_rank(emb, labels, n_clusters=2, seed=0)
    spoof_rows = np.flatnonzero(labels == "spoof")
    assert set(ranking.cluster[idx[labels[idx] == "spoof"]]) == set(ranking.cluster[spoof_rows])
    assert (labels[idx] == "spoof").sum() == n_keep_for(930, 0.05)


def test_every_cluster_is_represented_with_many_clusters():
    emb, labels = two_classes(n_spoof=800, seed=3)
    ranking = nc_rank(emb, labels, n_clusters=8, seed=5)
    idx = nc_select(emb, labels, 0.05, n_clusters=8, seed=5)
    spoof = idx[labels[idx] == "spoof"]
    assert set(ranking.cluster[spoof]) == set(ranking.cluster[labels == "spoof"])
    assert len(set(ranking.cluster[labels == "spoof"])) == 8
    assert np.all(ranking.cluster[labels == "bonafide"] == -1)


def test_proportional_quotas_sum_to_n_keep_and_cover_every_nonempty_group():
    q = proportional_quotas(np.array([1000, 5, 0, 300]), 20)
    assert q.sum() == 20 and q[1] >= 1 and q[2] == 0 and q[0] > q[3]


def test_same_seed_same_indices_different_seed_may_differ():
    emb, labels = two_classes(seed=4)
    for name, fn in SAMPLERS.items():
        kwargs = {"n_clusters": 4} if name == "nc" else {}
        a = fn(emb, labels, 0.25, seed=11, **kwargs)
        b = fn(emb, labels, 0.25, seed=11, **kwargs)
        assert np.array_equal(a, b), name
    assert not np.array_equal(random_select(emb, labels, 0.25, seed=1), random_select(emb, labels, 0.25, seed=2))


def test_ivf_index_finds_the_exact_set_when_it_probes_every_list():
    emb, labels = two_classes()
    exact = nc_select(emb, labels, 0.2, n_clusters=0, seed=0)
    ivf = nc_select(emb, labels, 0.2, n_clusters=0, seed=0, index="ivf", ivf_nlist=4, ivf_nprobe=4)
    assert np.array_equal(exact, ivf)


def test_baselines_keep_the_same_counts_per_class():
    emb, labels = two_classes()
    nc = nc_select(emb, labels, 0.3, n_clusters=4, seed=0)
    for fn in (random_select, kcenter_select, farthest_select):
        idx = fn(emb, labels, 0.3, seed=0)
        for c in ("bonafide", "spoof"):
            assert (labels[idx] == c).sum() == (labels[nc] == c).sum(), fn.__name__
        assert len(set(idx.tolist())) == len(idx)
    assert np.array_equal(full_select(emb, labels, 0.3, seed=0), np.arange(len(labels)))


def test_farthest_is_the_complement_end_of_the_nc_ranking():
    emb, labels = two_classes()
    far = farthest_select(emb, labels, 0.1, seed=0)
    ranking = nc_rank(emb, labels, n_clusters=0, seed=0)
    for c in ("bonafide", "spoof"):
        rows = np.flatnonzero(labels == c)
        picked = far[labels[far] == c]
        assert ranking.distance[picked].min() >= np.sort(ranking.distance[rows])[-len(picked)] - 1e-12


def test_kcenter_spreads_over_the_modes():
    rng = np.random.default_rng(0)
    centres = 10 * np.eye(4, 6)
    x = np.concatenate([c + rng.normal(0, 0.1, (50, 6)) for c in centres]).astype(np.float32)
    labels = np.array(["bonafide"] * 100 + ["spoof"] * 100)
    idx = kcenter_select(x, labels, 0.04, seed=0, normalize=False)
    assert sorted({int(i) // 50 for i in idx}) == [0, 1, 2, 3]


def test_nc1_is_small_for_collapsed_classes_and_large_for_overlap():
    rng = np.random.default_rng(0)
    d = 8
    labels = np.array(["bonafide"] * 200 + ["spoof"] * 200)
    tight = np.concatenate([rng.normal(0, 0.01, (200, d)) + np.eye(d)[0],
                            rng.normal(0, 0.01, (200, d)) + np.eye(d)[1]])
    loose = rng.normal(0, 1, (400, d))
    assert nc1(tight, labels) < 1e-3
    assert nc1(loose, labels) > 1.0


def test_nc1_matches_the_pseudo_inverse_formula():
    emb, labels = two_classes(d=6)
    x = emb.astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    mus = np.stack([x[labels == c].mean(0) for c in ("bonafide", "spoof")])
    centred = x - np.where((labels == "bonafide")[:, None], mus[0], mus[1])
    sw = centred.T @ centred / len(x)
    mb = mus - mus.mean(0)
    sb = mb.T @ mb / 2
    expected = np.trace(sw @ np.linalg.pinv(sb)) / 2
    assert nc1(emb, labels) == pytest.approx(expected, rel=1e-4)


def test_nan_embeddings_give_a_clear_error_naming_the_row():
    emb, labels = two_classes()
    emb[17, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or inf.*row 17"):
        nc_select(emb, labels, 0.2, n_clusters=4, seed=0)


def test_a_class_with_no_rows_gives_a_clear_error():
    emb, labels = two_classes()
    with pytest.raises(ValueError, match="class 'spoof' has no rows"):
        nc_select(emb[labels == "bonafide"], labels[labels == "bonafide"], 0.2, n_clusters=4, seed=0)


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5, float("nan"), "a lot"])
def test_a_ratio_outside_0_1_gives_a_clear_error(ratio):
    emb, labels = two_classes()
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        nc_select(emb, labels, ratio, n_clusters=4, seed=0)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        random_select(emb, labels, ratio, seed=0)


def test_a_bad_class_ratio_gives_a_clear_error():
    emb, labels = two_classes()
    with pytest.raises(ValueError, match=r"class_ratio\['spoof'\] must be in \(0, 1\]"):
        nc_select(emb, labels, 0.2, n_clusters=4, seed=0, class_ratio={"spoof": 2})
    with pytest.raises(ValueError, match="unknown classes"):
        nc_select(emb, labels, 0.2, n_clusters=4, seed=0, class_ratio={"fake": 0.5})


def test_misaligned_labels_give_a_clear_error():
    emb, labels = two_classes()
    with pytest.raises(ValueError, match="misaligned"):
        nc_select(emb, labels[:-1], 0.2, n_clusters=4, seed=0)


def test_unknown_labels_and_bad_index_give_clear_errors():
    emb, labels = two_classes()
    bad = labels.copy()
    bad[0] = "fake"
    with pytest.raises(ValueError, match="not among the classes"):
        nc_select(emb, bad, 0.2, n_clusters=4, seed=0)
    with pytest.raises(ValueError, match="index must be"):
        nc_select(emb, labels, 0.2, n_clusters=4, seed=0, index="hnsw")


def test_the_kernels_float16_copy_is_exact_for_every_kind_of_half():
    """torch's vectorised copy and numpy's cast give the same floats: zeros, subnormals, extremes, inf; a NaN
    stays NaN (F16C sets the quiet bit numpy keeps: its row is refused either way)."""
    from pipeline.sampling import kernel

    halves = np.arange(65536, dtype=np.uint16).view(np.float16).reshape(-1, 256)   # every half there is
    fast = kernel.to_f32(halves, fast=True)
    slow = kernel.to_f32(halves, fast=False)
    assert fast.dtype == np.float32 and fast.flags.c_contiguous
    nan = np.isnan(slow)
    assert nan.sum() == 2 * 1023 and np.isnan(fast[nan]).all()
    np.testing.assert_array_equal(fast[~nan].view(np.uint32), slow[~nan].view(np.uint32))   # bit for bit


def test_nc_rank_gives_the_same_ranking_through_torch_or_numpy_and_any_thread_count(monkeypatch):
    from pipeline.sampling import kernel, nc_rank

    rng = np.random.default_rng(5)
    labels = np.where(rng.random(5000) < 0.4, "bonafide", "spoof")
    emb = (rng.standard_normal((5000, 24)) + np.where(labels == "spoof", 1.5, 0.0)[:, None]).astype(np.float16)
    ref = nc_rank(emb, labels, n_clusters=3, seed=2, chunk_rows=700, threads=1)
    monkeypatch.setattr(kernel, "SUB_ROWS", 256)                  # many sub-blocks per block, and per thread
    monkeypatch.setattr(kernel, "use_torch", lambda values: True)
    for threads in (1, 3):
        got = nc_rank(emb, labels, n_clusters=3, seed=2, chunk_rows=700, threads=threads)
        monkeypatch.setattr(kernel, "SUB_ROWS", 2048)
        np.testing.assert_array_equal(got.cluster, ref.cluster)
        if threads == 3:       # same sub-blocks as ref: bit for bit
            np.testing.assert_array_equal(got.distance, ref.distance)
        else:                  # smaller sub-blocks sum the means in another order: float32 rounding apart
            np.testing.assert_allclose(got.distance, ref.distance, rtol=1e-5, atol=1e-6)
