"""compute_det_curve / compute_eer against hand-made cases and an independent computation; the bootstrap CI; the
ASVspoof 5 metrics (minDCF, actDCF, Cllr) against a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.metrics import (
    DCF_COSTS,
    DcfCosts,
    act_dcf,
    bootstrap_eer_ci,
    cllr,
    compute_det_curve,
    compute_eer,
    min_dcf,
)


def _asvspoof_style_eer(bona: np.ndarray, spoof: np.ndarray) -> tuple[float, float]:
    """Independent re-derivation of the evaluation package's sort-and-cumsum EER (valid without ties)."""
    scores = np.concatenate([bona, spoof])
    is_bona = np.concatenate([np.ones(bona.size), np.zeros(spoof.size)])
    order = np.argsort(scores, kind="mergesort")
    bona_below = np.cumsum(is_bona[order])
    spoof_below = np.arange(1, scores.size + 1) - bona_below
    frr = np.concatenate([[0.0], bona_below / bona.size])
    far = np.concatenate([[1.0], (spoof.size - spoof_below) / spoof.size])
    thr = np.concatenate([[scores[order[0]] - 0.001], scores[order]])
    i = int(np.argmin(np.abs(frr - far)))
    return (frr[i] + far[i]) / 2, thr[i]


def _brute_force_eer(bona: np.ndarray, spoof: np.ndarray) -> float:
    """Loop over every candidate threshold; EER = mean(FRR, FAR) where |FRR - FAR| is smallest."""
    best = None
    for t in [min(bona.min(), spoof.min()) - 1.0, *sorted(set(bona) | set(spoof))]:
        frr = float(np.mean(bona <= t))
        far = float(np.mean(spoof > t))
        if best is None or abs(frr - far) < best[0]:
            best = (abs(frr - far), (frr + far) / 2)
    return best[1]


def test_fully_separated_scores_give_zero_eer():
    eer, thr = compute_eer(np.array([2.0, 3.0, 4.0]), np.array([-1.0, 0.0, 1.0]))
    assert eer == 0.0
    # Accept iff score > threshold: the threshold sits at the top spoof score.
    assert thr == 1.0


def test_inverted_scores_give_eer_one():
    eer, _ = compute_eer(np.array([-1.0, 0.0]), np.array([2.0, 3.0]))
    assert eer == 1.0


def test_identical_distributions_give_about_half():
    rng = np.random.default_rng(0)
    eer, _ = compute_eer(rng.normal(size=20000), rng.normal(size=20000))
    assert abs(eer - 0.5) < 0.02


def test_all_tied_scores_give_half():
    eer, _ = compute_eer(np.zeros(5), np.zeros(7))
    assert eer == 0.5


def test_ties_across_classes_move_together():
    # bona {1, 2, 2}, spoof {0, 2}: at t=1 FRR=1/3, FAR=1/2; at t=2 FRR=1, FAR=0; at t=0 FRR=0, FAR=1/2.
    eer, thr = compute_eer(np.array([1.0, 2.0, 2.0]), np.array([0.0, 2.0]))
    assert thr == 1.0
    assert eer == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_single_score_per_class():
    assert compute_eer(np.array([1.0]), np.array([0.0]))[0] == 0.0
    assert compute_eer(np.array([0.0]), np.array([1.0]))[0] == 1.0
    assert compute_eer(np.array([0.5]), np.array([0.5]))[0] == 0.5


def test_known_overlap_case():
    # bona 0.401..0.901, spoof 0.1..0.6 (6 each): at t=0.5 FRR = 1/6 (0.401) and FAR = 1/6 (0.6).
    bona = np.array([0.4, 0.5, 0.6, 0.7, 0.8, 0.9]) + 0.001
    spoof = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    eer, thr = compute_eer(bona, spoof)
    assert eer == pytest.approx(1 / 6)
    assert thr == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(5))
def test_matches_independent_computations_on_random_scores(seed):
    rng = np.random.default_rng(seed)
    bona = rng.normal(1.0, 1.0, size=rng.integers(5, 300))
    spoof = rng.normal(0.0, 1.3, size=rng.integers(5, 300))
    eer, thr = compute_eer(bona, spoof)
    ref_eer, ref_thr = _asvspoof_style_eer(bona, spoof)
    assert eer == pytest.approx(ref_eer, abs=1e-12)
    assert thr == pytest.approx(ref_thr)
    assert eer == pytest.approx(_brute_force_eer(bona, spoof), abs=1e-12)


def test_matches_brute_force_with_many_ties():
    rng = np.random.default_rng(7)
    bona = rng.integers(0, 6, size=50).astype(float)
    spoof = rng.integers(-2, 4, size=40).astype(float)
    assert compute_eer(bona, spoof)[0] == pytest.approx(_brute_force_eer(bona, spoof), abs=1e-12)


def test_det_curve_is_monotone_and_bounded():
    rng = np.random.default_rng(1)
    frr, far, thr = compute_det_curve(rng.normal(size=50), rng.normal(size=60))
    assert frr[0] == 0.0 and far[0] == 1.0 and frr[-1] == 1.0 and far[-1] == 0.0
    assert np.all(np.diff(frr) >= 0) and np.all(np.diff(far) <= 0) and np.all(np.diff(thr) > 0)


def test_empty_class_raises():
    with pytest.raises(ValueError, match="no scores"):
        compute_eer(np.array([]), np.array([1.0]))
    with pytest.raises(ValueError, match="spoof_scores"):
        compute_eer(np.array([1.0]), np.array([]))


def test_non_finite_scores_raise():
    with pytest.raises(ValueError, match="NaN"):
        compute_eer(np.array([1.0, np.nan]), np.array([0.0]))


def test_bootstrap_ci_contains_eer_and_narrows_with_more_clips() -> None:
    from pipeline.metrics import bootstrap_eer_ci

    rng = np.random.default_rng(0)
    small_b, small_s = rng.normal(1.0, 1.0, 40), rng.normal(0.0, 1.0, 40)
    big_b, big_s = rng.normal(1.0, 1.0, 2000), rng.normal(0.0, 1.0, 2000)
    eer_small = compute_eer(small_b, small_s)[0]
    lo_s, hi_s = bootstrap_eer_ci(small_b, small_s, n_boot=300, seed=1)
    lo_b, hi_b = bootstrap_eer_ci(big_b, big_s, n_boot=300, seed=1)
    assert lo_s <= eer_small <= hi_s
    assert (hi_b - lo_b) < (hi_s - lo_s) / 3  # width shrinks ~ 1/sqrt(N)
    # the true EER of two unit normals 1 apart is Phi(-0.5) = 0.3085
    assert lo_b < 0.3085 < hi_b
    assert bootstrap_eer_ci(small_b, small_s, n_boot=300, seed=1) == (lo_s, hi_s)  # deterministic by seed


def test_bootstrap_ci_rejects_bad_arguments() -> None:
    from pipeline.metrics import bootstrap_eer_ci

    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_eer_ci([1.0], [0.0], n_boot=0)
    with pytest.raises(ValueError, match="no scores"):
        bootstrap_eer_ci([], [0.0])


def test_mean_ci_over_seeds() -> None:
    from pipeline.metrics import mean_ci

    mean, lo, hi = mean_ci([0.10, 0.12, 0.08, 0.11, 0.09])
    assert mean == pytest.approx(0.10)
    # t(0.975, 4) = 2.776; sd = 0.01581; half width = 2.776 * 0.01581 / sqrt(5) = 0.01963
    assert hi - mean == pytest.approx(0.01963, abs=1e-4) and mean - lo == pytest.approx(hi - mean)
    one = mean_ci([0.2])
    assert one[0] == 0.2 and np.isnan(one[1]) and np.isnan(one[2])
    with pytest.raises(ValueError):
        mean_ci([float("nan")])


def test_paired_difference_matches_a_hand_computation() -> None:
    from pipeline.metrics import paired_difference

    # a - b = [1, 2, 3, 4, 5] points: mean 3, sd sqrt(2.5), se sqrt(0.5), t(0.975, 4) = 2.7764451
    a = np.array([11.0, 22.0, 33.0, 44.0, 55.0])
    b = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    res = paired_difference(a, b)
    half = 2.7764451052 * np.sqrt(2.5) / np.sqrt(5)
    assert res.n == 5 and res.diffs == (1.0, 2.0, 3.0, 4.0, 5.0)
    assert res.mean == pytest.approx(3.0)
    assert (res.lo, res.hi) == (pytest.approx(3.0 - half), pytest.approx(3.0 + half))
    # all five differences positive: sign test 2 x (1/2)^5; Wilcoxon W- = 0, exact two-sided p = 2/32
    assert res.sign_p == pytest.approx(0.0625)
    assert res.wilcoxon_p == pytest.approx(0.0625)


def test_paired_difference_with_mixed_signs_zeros_and_missing_values() -> None:
    from pipeline.metrics import paired_difference

    # d = [-1, 2, 0, 3] after dropping the nan pair; zeros leave the sign and Wilcoxon tests (n' = 3):
    # sign: 2 of 3 positive -> p = 1; Wilcoxon ranks |d| = 1, 2, 3, W+ = 5, W- = 1 -> exact p = 2 x 2/8 = 0.5
    res = paired_difference([0.0, 4.0, 1.0, 5.0, np.nan], [1.0, 2.0, 1.0, 2.0, 0.3])
    assert res.n == 4 and res.mean == pytest.approx(1.0)
    assert res.sign_p == pytest.approx(1.0)
    assert res.wilcoxon_p == pytest.approx(0.5)
    one = paired_difference([0.3], [0.1])
    assert one.mean == pytest.approx(0.2) and np.isnan(one.lo) and np.isnan(one.hi)
    same = paired_difference([0.3, 0.2], [0.3, 0.2])
    assert same.mean == 0.0 and np.isnan(same.sign_p) and np.isnan(same.wilcoxon_p)
    with pytest.raises(ValueError, match="pairs need one value each"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="no pair with two finite values"):
        paired_difference([np.nan], [1.0])


def test_bootstrap_ci_is_the_per_resample_eer_of_the_same_draws() -> None:
    """The block computation equals compute_eer on each resample drawn as rng.choice draws them (ties included)."""
    rng = np.random.default_rng(4)
    bona, spoof = np.round(rng.normal(1, 1, 60), 1), np.round(rng.normal(0, 1, 7), 1)
    draws = np.random.default_rng(9)
    eers = [compute_eer(draws.choice(bona, bona.size), draws.choice(spoof, spoof.size))[0] for _ in range(300)]
    assert bootstrap_eer_ci(bona, spoof, n_boot=300, seed=9) == tuple(np.quantile(eers, [0.025, 0.975]))


# A small score table for the ASVspoof 5 metrics (higher = bona fide).
BONA = np.array([2.0, 1.0, -1.0, 0.5])
SPOOF = np.array([-2.0, 0.0, -0.8, 1.5, -3.0])


def test_min_dcf_matches_a_hand_computation() -> None:
    # normalised DCF(t) = (1 x 0.95 Pmiss + 10 x 0.05 Pfa) / min(0.95, 0.5) = 1.9 Pmiss + Pfa, Pmiss = #bona <= t / 4,
    # Pfa = #spoof > t / 5: below all 1.0; t=-3: 0 + 4/5; t=-2: 0 + 3/5 = 0.6 (the minimum); t=-1: 0.475 + 0.6;
    # t=-0.8: 0.475 + 0.4; t=0: 0.475 + 0.2; t=0.5: 0.95 + 0.2; t=1: 1.425 + 0.2; t=1.5: 1.425; t=2: 1.9
    value, threshold = min_dcf(BONA, SPOOF)
    assert value == pytest.approx(0.6) and threshold == -2.0
    assert DCF_COSTS.default == pytest.approx(0.5)
    # a perfect detector costs nothing; a useless one costs the better fixed decision (accept all): 1
    assert min_dcf(np.array([1.0, 2.0]), np.array([-1.0]))[0] == 0.0
    assert min_dcf(np.zeros(3), np.zeros(3))[0] == pytest.approx(1.0)


def test_act_dcf_matches_a_hand_computation_at_the_bayes_threshold() -> None:
    # tau = -ln(Cmiss (1 - Pspoof) / (Cfa Pspoof)) = -ln(0.95 / 0.5) = -0.6419; bona < tau: {-1} -> Pmiss 1/4;
    # spoof >= tau: {0, 1.5} -> Pfa 2/5; DCF = 1.9 x 0.25 + 0.4 = 0.875
    value, threshold = act_dcf(BONA, SPOOF)
    assert threshold == pytest.approx(-math.log(0.95 / 0.5)) and value == pytest.approx(0.875)
    # at threshold 0: bona < 0: {-1}; spoof >= 0: {0, 1.5}: the same rates
    assert act_dcf(BONA, SPOOF, threshold=0.0)[0] == pytest.approx(0.875)
    # at 1.2: bona < 1.2: {1, -1, 0.5} -> 3/4; spoof >= 1.2: {1.5} -> 1/5: 1.425 + 0.2
    assert act_dcf(BONA, SPOOF, threshold=1.2)[0] == pytest.approx(1.625)
    # another cost model: Pspoof 0.5, Cmiss = Cfa = 1: tau = 0, DCF = (0.5 Pmiss + 0.5 Pfa) / 0.5
    assert act_dcf(BONA, SPOOF, DcfCosts(0.5, 1.0, 1.0)) == (pytest.approx(0.25 + 0.4), pytest.approx(0.0))


def test_cllr_matches_a_hand_computation() -> None:
    bona_cost = sum(math.log2(1 + math.exp(-s)) for s in BONA) / len(BONA)
    spoof_cost = sum(math.log2(1 + math.exp(s)) for s in SPOOF) / len(SPOOF)
    assert cllr(BONA, SPOOF) == pytest.approx(0.5 * (bona_cost + spoof_cost))
    assert cllr(np.zeros(2), np.zeros(3)) == pytest.approx(1.0)            # a constant 0 LLR: 1 bit
    assert cllr(np.array([50.0]), np.array([-50.0])) == pytest.approx(0.0, abs=1e-12)
    assert cllr(np.array([-800.0]), np.array([800.0])) > 500              # confident errors: no overflow
    with pytest.raises(ValueError, match="NaN or infinite"):
        cllr(np.array([np.nan]), SPOOF)
