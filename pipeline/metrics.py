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

Over training seeds: `mean_ci` (one group's mean and Student-t interval) and `paired_difference` (two
groups run with the same seeds: the per-seed differences, their mean and t-interval, and two-sided sign
and Wilcoxon signed-rank p-values).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PairedDifference", "bootstrap_eer_ci", "compute_det_curve", "compute_eer", "mean_ci",
           "paired_difference"]


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
    """
    bona = _as_scores(bonafide_scores, "bonafide_scores")
    spoof = _as_scores(spoof_scores, "spoof_scores")
    if n_boot <= 0 or not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap_eer_ci: need n_boot > 0 and 0 < level < 1, got {n_boot}, {level}")
    rng = np.random.default_rng(seed)
    eers = np.empty(n_boot)
    for b in range(n_boot):
        eers[b] = compute_eer(rng.choice(bona, bona.size), rng.choice(spoof, spoof.size))[0]
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(eers, [tail, 1.0 - tail])
    return float(lo), float(hi)


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
