"""Detection metrics on score arrays: the DET curve and the equal error rate (EER).

Pure numpy, no torch and no file I/O (the `evaluate` stage reads and writes the files).
Convention throughout: a higher score means more bona fide; the bona fide class is the
"target" class of the ASVspoof evaluation package, spoofs are the "non-target" class.

The definition is the one of the ASVspoof 2019/2021 evaluation package (`compute_det_curve`,
`compute_eer`): sweep a threshold t over the observed scores, with

    FRR(t) = #{bona fide scores <= t} / N_bonafide   (bona fide rejected)
    FAR(t) = #{spoof scores     >  t} / N_spoof      (spoof accepted)

plus a first point just below the lowest score (FRR = 0, FAR = 1); EER = mean(FRR, FAR) at
argmin |FRR - FAR| (the first such point), and the threshold returned is t at that point.

On scores without ties between the classes this is exactly the package's curve. With ties, the
package's sort puts a tied bona fide score before a tied spoof score and so creates operating
points inside a tie group that no threshold can realise (two identical score lists give EER 1.0
there). Here every distinct score is one threshold, so tied scores move together: identical
distributions give 0.5, as they should.

The ASVspoof 5 metrics (`min_dcf`, `act_dcf`, `cllr`, `DCF_COSTS`), as its evaluation plan defines them and its
evaluation package computes them (asvspoof-challenge/asvspoof5, evaluation-package/calculate_modules.py:
compute_mindcf, compute_actDCF, calculate_CLLR): see each function.

Over training seeds: `mean_ci` (one group's mean and Student-t interval) and `paired_difference` (two
groups run with the same seeds: the per-seed differences, their mean and t-interval, and two-sided sign
and Wilcoxon signed-rank p-values).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DCF_COSTS", "DcfCosts", "PairedDifference", "act_dcf", "bootstrap_eer_ci", "cllr", "compute_det_curve",
           "compute_eer", "mean_ci", "min_dcf", "paired_difference"]


def _as_scores(scores: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name}: no scores (need at least one per class for an EER)")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: scores contain NaN or infinite values")
    return arr


def compute_det_curve(bonafide_scores: np.ndarray, spoof_scores: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frr, far, thresholds) of the DET curve, one point per distinct score plus one below all scores."""
    bona = np.sort(_as_scores(bonafide_scores, "bonafide_scores"))
    spoof = np.sort(_as_scores(spoof_scores, "spoof_scores"))
    distinct = np.unique(np.concatenate([bona, spoof]))
    thresholds = np.concatenate([[distinct[0] - 0.001], distinct])
    # side="right": counts of scores <= t, so tied scores fall on the same side of every threshold.
    frr = np.searchsorted(bona, thresholds, side="right") / bona.size
    far = 1.0 - np.searchsorted(spoof, thresholds, side="right") / spoof.size
    return frr, far, thresholds


def compute_eer(bonafide_scores: np.ndarray, spoof_scores: np.ndarray) -> tuple[float, float]:
    """(eer, threshold): the equal error rate as a fraction in [0, 1], and the threshold where it is met."""
    frr, far, thresholds = compute_det_curve(bonafide_scores, spoof_scores)
    i = int(np.argmin(np.abs(frr - far)))
    return float((frr[i] + far[i]) / 2.0), float(thresholds[i])


def bootstrap_eer_ci(bonafide_scores: np.ndarray, spoof_scores: np.ndarray, n_boot: int = 1000,
                     seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap interval of the EER over clips (each class resampled apart, so counts stay fixed).

    Says how much the EER of ONE trained model moves with the choice of test clips; the spread over
    training seeds is a separate source of noise (`mean_ci` over the per-seed EERs).
    Resample b draws the bona fide indices, then the spoof indices, from one seeded generator; its EER is that of
    `compute_eer` on the resampled scores, computed for a block of resamples at once from per-score counts on the
    distinct scores of the full set (a threshold between two resampled scores repeats the point below it, so the
    curve's first closest point, hence the EER, is the same).
    """
    bona = _as_scores(bonafide_scores, "bonafide_scores")
    spoof = _as_scores(spoof_scores, "spoof_scores")
    if n_boot <= 0 or not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap_eer_ci: need n_boot > 0 and 0 < level < 1, got {n_boot}, {level}")
    rng = np.random.default_rng(seed)
    distinct, inverse = np.unique(np.concatenate([bona, spoof]), return_inverse=True)
    bona_at, spoof_at = inverse[:bona.size], inverse[bona.size:]
    eers = np.empty(n_boot)
    block = max(1, min(n_boot, 2_000_000 // (distinct.size + 1)))   # memory: block x distinct counts per class
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        counts_b = np.zeros((stop - start, distinct.size))
        counts_s = np.zeros((stop - start, distinct.size))
        for k in range(stop - start):
            # rng.choice(x, n) draws rng.integers(0, n, n): the same stream as the per-resample code before
            counts_b[k] = np.bincount(bona_at[rng.integers(0, bona.size, bona.size)], minlength=distinct.size)
            counts_s[k] = np.bincount(spoof_at[rng.integers(0, spoof.size, spoof.size)], minlength=distinct.size)
        eers[start:stop] = _eer_from_counts(counts_b, counts_s)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(eers, [tail, 1.0 - tail])
    return float(lo), float(hi)


def _eer_from_counts(counts_b: np.ndarray, counts_s: np.ndarray) -> np.ndarray:
    """EER of each row of per-distinct-score counts [R, D] (bona fide, spoof), as `compute_eer` defines it."""
    n_b = counts_b.sum(axis=1, keepdims=True)
    n_s = counts_s.sum(axis=1, keepdims=True)
    zeros = np.zeros((counts_b.shape[0], 1))
    frr = np.concatenate([zeros, np.cumsum(counts_b, axis=1)], axis=1) / n_b
    far = 1.0 - np.concatenate([zeros, np.cumsum(counts_s, axis=1)], axis=1) / n_s
    i = np.argmin(np.abs(frr - far), axis=1)
    rows = np.arange(frr.shape[0])
    return (frr[rows, i] + far[rows, i]) / 2.0


@dataclass(frozen=True)
class DcfCosts:
    """A detection cost model: prior of a spoof trial and the costs of the two errors."""

    p_spoof: float = 0.05
    c_miss: float = 1.0         # a bona fide trial rejected
    c_fa: float = 10.0          # a spoof trial accepted

    @property
    def default(self) -> float:
        """The cost of the better of the two fixed decisions (accept all, reject all): the DCF's normaliser."""
        return min(self.c_miss * (1.0 - self.p_spoof), self.c_fa * self.p_spoof)

    @property
    def bayes_threshold(self) -> float:
        """-log(beta), beta = Cmiss (1 - Pspoof) / (Cfa Pspoof): accept as bona fide when the LLR is at least this."""
        return float(-np.log(self.c_miss * (1.0 - self.p_spoof) / (self.c_fa * self.p_spoof)))


DCF_COSTS = DcfCosts()   # ASVspoof 5: Pspoof 0.05, Cmiss 1, Cfa 10 (normalised DCF = 1.9 Pmiss + Pfa)


def min_dcf(bonafide_scores: np.ndarray, spoof_scores: np.ndarray, costs: DcfCosts = DCF_COSTS) -> tuple[float, float]:
    """(minDCF, threshold): the normalised detection cost at the best threshold of the DET curve.

    ASVspoof 5 evaluation plan (Wang et al. 2024; evaluation package compute_mindcf), with a = bona fide (the
    target) and Pmiss(t) = FRR(t), Pfa(t) = FAR(t) of `compute_det_curve`:
        DCF(t) = [Cmiss (1 - Pspoof) Pmiss(t) + Cfa Pspoof Pfa(t)] / min(Cmiss (1 - Pspoof), Cfa Pspoof)
    minimised over the curve's thresholds (the first minimum). 1.0 = no better than a fixed decision; 0 = perfect.
    It needs no calibration: it reads only the order of the scores.
    """
    frr, far, thresholds = compute_det_curve(bonafide_scores, spoof_scores)
    dcf = (costs.c_miss * (1.0 - costs.p_spoof) * frr + costs.c_fa * costs.p_spoof * far) / costs.default
    i = int(np.argmin(dcf))
    return float(dcf[i]), float(thresholds[i])


def act_dcf(bonafide_scores: np.ndarray, spoof_scores: np.ndarray, costs: DcfCosts = DCF_COSTS,
            threshold: float | None = None) -> tuple[float, float]:
    """(actDCF, threshold): the normalised DCF of `min_dcf` at a fixed threshold, by default the Bayes threshold.

    ASVspoof 5 (evaluation package compute_actDCF): a score is taken as a log-likelihood ratio of bona fide over
    spoof and accepted when score >= -log(Cmiss (1 - Pspoof) / (Cfa Pspoof)) (= -0.642 for the ASVspoof 5 costs);
    Pmiss = #{bona fide < threshold} / N, Pfa = #{spoof >= threshold} / N. This project's score is the detector's
    logit margin, logit[bonafide] - logit[spoof]: the log posterior odds under its (class-balanced) training
    prior, taken here as the LLR, uncalibrated. actDCF therefore measures the calibration of those raw scores as
    much as the detector: it is comparable with published actDCFs only for calibrated scores; minDCF is not
    affected. `threshold` overrides the Bayes threshold.
    """
    bona = _as_scores(bonafide_scores, "bonafide_scores")
    spoof = _as_scores(spoof_scores, "spoof_scores")
    t = costs.bayes_threshold if threshold is None else float(threshold)
    p_miss = float(np.mean(bona < t))
    p_fa = float(np.mean(spoof >= t))
    cost = costs.c_miss * (1.0 - costs.p_spoof) * p_miss + costs.c_fa * costs.p_spoof * p_fa
    return cost / costs.default, t


def cllr(bonafide_scores: np.ndarray, spoof_scores: np.ndarray) -> float:
    """Cllr in bits: the log-likelihood-ratio cost of the scores taken as natural-log LLRs (bona fide over spoof).

    Cllr = 1/(2 ln 2) [mean over bona fide log(1 + exp(-s)) + mean over spoof log(1 + exp(s))] (Brümmer & du Preez
    2006; ASVspoof 5 evaluation package calculate_CLLR). 0 = perfect and calibrated, 1 = an uninformative
    constant score of 0, above 1 = worse than that (confident errors); like actDCF, it is meaningful for
    calibrated LLRs and here reads the raw logit margin.
    """
    bona = _as_scores(bonafide_scores, "bonafide_scores")
    spoof = _as_scores(spoof_scores, "spoof_scores")
    return float((np.mean(np.logaddexp(0.0, -bona)) + np.mean(np.logaddexp(0.0, spoof))) / (2.0 * np.log(2.0)))


def mean_ci(values: np.ndarray | list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean over independent runs (e.g. training seeds).

    One run gives (value, nan, nan): a single seed has no spread to report.
    """
    from scipy import stats

    x = np.asarray(values, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ValueError("mean_ci: no finite values")
    mean = float(x.mean())
    if x.size == 1:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2.0, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class PairedDifference:
    """a - b over paired runs (the same seed in both): per-pair differences, their mean, the Student-t interval
    of the mean, and two-sided p-values of the sign test and the Wilcoxon signed-rank test (nan when undefined)."""

    diffs: tuple[float, ...]
    mean: float
    lo: float
    hi: float
    sign_p: float
    wilcoxon_p: float

    @property
    def n(self) -> int:
        return len(self.diffs)


def paired_difference(a: np.ndarray | list[float], b: np.ndarray | list[float],
                      level: float = 0.95) -> PairedDifference:
    """Paired comparison of two methods run with the same seeds (a[i] and b[i] share seed i).

    d_i = a_i - b_i; mean and Student-t interval of d (`mean_ci`: with n pairs, t at n - 1 degrees of freedom);
    sign test: the number of positive d_i against Binomial(n', 1/2), n' = the non-zero d_i, two-sided (exact);
    Wilcoxon signed-rank test on the non-zero d_i (scipy; exact for small n without ties). With 5 pairs the
    smallest two-sided p either test can give is 2/32 = 0.0625: only the t-interval can exclude 0 at 95%.
    Pairs where either value is not finite are dropped.
    """
    from scipy import stats

    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"paired_difference: {x.size} values against {y.size}: pairs need one value each")
    keep = np.isfinite(x) & np.isfinite(y)
    d = x[keep] - y[keep]
    if d.size == 0:
        raise ValueError("paired_difference: no pair with two finite values")
    mean, lo, hi = mean_ci(d, level)
    nonzero = d[d != 0]
    sign_p = wilcoxon_p = float("nan")
    if nonzero.size:
        sign_p = float(stats.binomtest(int((nonzero > 0).sum()), int(nonzero.size), 0.5).pvalue)
        wilcoxon_p = float(stats.wilcoxon(nonzero, alternative="two-sided").pvalue)
    return PairedDifference(tuple(float(v) for v in d), mean, lo, hi, sign_p, wilcoxon_p)
