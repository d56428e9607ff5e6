"""Matplotlib figures of the report, returned as PNG data URIs (no pyplot, so no global figure state).

Reads nothing from disk: every function takes arrays or tables and returns a `data:image/png;base64,...` string.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.stats import norm

from pipeline.metrics import compute_det_curve, compute_eer

LABEL_COLOURS = {"bonafide": "#1f77b4", "spoof": "#d62728"}
METHOD_STYLES = {"nc": "-", "random": "--", "full": ":", "kcenter": "-.", "farthest": (0, (3, 1, 1, 1))}
METHOD_MARKERS = {"nc": "o", "random": "s", "full": "D", "kcenter": "^", "farthest": "v"}
DPI = 96


def to_data_uri(fig: Figure) -> str:
    """Render a figure to a base64 PNG data URI (no metadata, so no URL hides in the PNG)."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def pca_2d(x: np.ndarray, fit_rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Project rows of x on their first two principal components; returns (xy[N, 2], explained ratio[2])."""
    x = np.asarray(x, dtype=np.float64)
    fit = x if fit_rows is None else x[fit_rows]
    mean = fit.mean(axis=0)
    _, s, vt = np.linalg.svd(fit - mean, full_matrices=False)
    k = min(2, vt.shape[0])
    xy = np.zeros((x.shape[0], 2))
    xy[:, :k] = (x - mean) @ vt[:k].T
    var = s ** 2
    ratio = np.zeros(2)
    ratio[:k] = var[:k] / var.sum() if var.sum() > 0 else 0.0
    return xy, ratio


def embedding_map(xy: np.ndarray, labels: np.ndarray, selected: np.ndarray, class_means: dict[str, np.ndarray],
                  title: str, explained: np.ndarray | None = None) -> str:
    """The neural-collapse figure: a pool's clips in PCA space by class, class means as stars, picks circled."""
    fig = Figure(figsize=(6.4, 5.2))
    ax = fig.add_subplot()
    for label in ("bonafide", "spoof"):
        m = labels == label
        if m.any():
            ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.35, c=LABEL_COLOURS[label], linewidths=0,
                       label=f"{label} ({int(m.sum())})")
    for label in ("bonafide", "spoof"):
        m = (labels == label) & selected
        if m.any():
            ax.scatter(xy[m, 0], xy[m, 1], s=22, facecolors="none", edgecolors=LABEL_COLOURS[label],
                       linewidths=0.9, label=f"selected {label} ({int(m.sum())})")
    for label, mean in class_means.items():
        ax.scatter([mean[0]], [mean[1]], marker="*", s=320, c=LABEL_COLOURS.get(label, "k"), edgecolors="k",
                   linewidths=1.0, label=f"{label} mean", zorder=5)
    if explained is not None:
        ax.set_xlabel(f"PC1 ({100 * explained[0]:.1f}% var.)")
        ax.set_ylabel(f"PC2 ({100 * explained[1]:.1f}% var.)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best", markerscale=1.0)
    ax.grid(alpha=0.2)
    return to_data_uri(fig)


_DET_TICKS = np.array([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8])


def det_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str = "DET curves") -> str:
    """DET curves on normal-deviate axes, one per eval set: {name: (bonafide_scores, spoof_scores)}."""
    fig = Figure(figsize=(5.6, 5.2))
    ax = fig.add_subplot()
    lo = norm.ppf(0.0005)
    for name, (bona, spoof) in curves.items():
        frr, far, _ = compute_det_curve(bona, spoof)
        eer, _ = compute_eer(bona, spoof)
        eps = 1e-4
        ax.plot(norm.ppf(np.clip(far, eps, 1 - eps)), norm.ppf(np.clip(frr, eps, 1 - eps)),
                label=f"{name} (EER {100 * eer:.1f}%)")
    ticks = norm.ppf(_DET_TICKS)
    labels = [f"{100 * t:g}" for t in _DET_TICKS]
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    ax.set_xlim(lo, norm.ppf(0.9))
    ax.set_ylim(lo, norm.ppf(0.9))
    ax.plot([lo, norm.ppf(0.9)], [lo, norm.ppf(0.9)], color="0.7", lw=0.8, ls=":")
    ax.set_xlabel("false acceptance rate: spoof accepted (%)")
    ax.set_ylabel("false rejection rate: bona fide rejected (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    return to_data_uri(fig)


def eer_bars(values: pd.Series, title: str, xlabel: str = "EER (%)") -> str:
    """Horizontal bars of EERs (fractions) by name."""
    values = values.sort_values()
    fig = Figure(figsize=(6.4, 0.8 + 0.28 * len(values)))
    ax = fig.add_subplot()
    ax.barh([str(i) for i in values.index], 100 * values.to_numpy(dtype=float), color="#4a7bb0")
    for y, v in enumerate(values.to_numpy(dtype=float)):
        ax.text(100 * v, y, f" {100 * v:.1f}", va="center", fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return to_data_uri(fig)


def sweep_curve(runs: pd.DataFrame, eer_columns: list[str]) -> str:
    """EER against sampling ratio (log x): one line per (method, eval set); repeated points are averaged."""
    fig = Figure(figsize=(7.2, 4.8))
    ax = fig.add_subplot()
    colours = {col: f"C{i % 10}" for i, col in enumerate(eer_columns)}
    for method, per_method in runs.groupby("method", sort=True):
        for col in eer_columns:
            pts = per_method[["ratio", col]].dropna().groupby("ratio")[col].mean().sort_index()
            if pts.empty:
                continue
            ax.plot(pts.index.to_numpy(dtype=float), 100 * pts.to_numpy(dtype=float),
                    marker=METHOD_MARKERS.get(str(method), "o"),
                    ls=METHOD_STYLES.get(str(method), "-"), color=colours[col],
                    label=f"{method} / {col.removeprefix('eer.')}")
    ax.set_xscale("log")
    ratios = np.sort(runs["ratio"].dropna().unique().astype(float))
    ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
    ax.minorticks_off()
    ax.set_xlabel("sampling ratio (fraction of the pool kept)")
    ax.set_ylabel("EER (%)")
    ax.set_title("Data efficiency: EER vs sampling ratio")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    return to_data_uri(fig)
