"""Matplotlib figures of the report, returned as PNG data URIs (no pyplot, so no global figure state).

The DET curves are drawn by pipeline.reporting.detplot, which the evaluate stage uses too.

Reads nothing from disk: every function takes arrays or tables and returns a `data:image/png;base64,...` string.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

LABEL_COLOURS = {"bonafide": "#1f77b4", "spoof": "#d62728"}
METHOD_STYLES = {"nc": "-", "random": "--", "full": ":", "kcenter": "-.", "farthest": (0, (3, 1, 1, 1)),
                 "nc:farthest": "-", "nc:stratified": "-", "margin": (0, (5, 1)), "generator_balanced": (0, (1, 1))}
METHOD_MARKERS = {"nc": "o", "random": "s", "full": "D", "kcenter": "^", "farthest": "v", "nc:farthest": "<",
                  "nc:stratified": ">", "margin": "P", "generator_balanced": "X"}
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


def sweep_curve(points: pd.DataFrame, commit: str) -> str:
    """EER against sampling ratio (log x) of ONE commit's runs (`points`: method, ratio, set, eer): one line per
    (method, eval set) through the mean of each ratio's runs, every run drawn as its own point."""
    fig = Figure(figsize=(7.2, 4.8))
    ax = fig.add_subplot()
    sets = list(dict.fromkeys(points["set"]))
    colours = {name: f"C{i % 10}" for i, name in enumerate(sets)}
    for (method, name), g in points.groupby(["method", "set"], sort=True):
        marker, colour = METHOD_MARKERS.get(str(method), "o"), colours[name]
        line = g.groupby("ratio")["eer"].mean().sort_index()
        ax.plot(line.index.to_numpy(dtype=float), 100 * line.to_numpy(dtype=float), marker=marker,
                ls=METHOD_STYLES.get(str(method), "-"), color=colour, label=f"{method} / {name} (n={len(g)})")
        ax.scatter(g["ratio"].to_numpy(float), 100 * g["eer"].to_numpy(float), marker=marker, s=14, color=colour,
                   alpha=0.5)
    ax.set_xscale("log")
    ratios = np.sort(points["ratio"].dropna().unique().astype(float))
    ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
    ax.minorticks_off()
    ax.set_xlabel("sampling ratio (fraction of the pool kept)")
    ax.set_ylabel("EER (%)")
    ax.set_title(f"EER vs sampling ratio, commit {commit}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    return to_data_uri(fig)


def seeds_curve(groups: pd.DataFrame, sets: list[str]) -> str:
    """Mean EER against sampling ratio with the 95% CI as a band, one panel per eval set, one line per
    (method, variant); hollow markers: single-seed points (bootstrap CI); a method run at one ratio only
    (full) is a horizontal reference line with its band across the ratios."""
    fig = Figure(figsize=(4.4 * len(sets), 4.2))
    axes = fig.subplots(1, len(sets), squeeze=False)[0]
    ratios = np.sort(groups["ratio"].unique().astype(float))
    for ax, col in zip(axes, sets):
        for i, ((method, variant), g) in enumerate(groups.groupby(["method", "variant"], sort=True)):
            g = g.dropna(subset=[col]).sort_values("ratio")
            if g.empty:
                continue
            x, y = g["ratio"].to_numpy(float), 100 * g[col].to_numpy(float)
            lo, hi = 100 * g[f"{col}.lo"].to_numpy(float), 100 * g[f"{col}.hi"].to_numpy(float)
            colour = f"C{i % 10}"
            label = f"{method}{' / ' + variant if variant else ''} (n={int(g[f'{col}.n'].min())}" \
                    f"{'-' + str(int(g[f'{col}.n'].max())) if g[f'{col}.n'].nunique() > 1 else ''})"
            if len(x) == 1 and len(ratios) > 1:
                x, y, lo, hi = ratios, np.repeat(y, len(ratios)), np.repeat(lo, len(ratios)), np.repeat(hi, len(ratios))
            single = (g[f"{col}.n"] == 1).to_numpy()
            ax.plot(x, y, ls=METHOD_STYLES.get(str(method), "-"), color=colour, label=label)
            ax.fill_between(x, lo, hi, color=colour, alpha=0.15, linewidth=0)
            marker = METHOD_MARKERS.get(str(method), "o")
            pts = g["ratio"].to_numpy(float)
            ys = 100 * g[col].to_numpy(float)
            ax.scatter(pts[~single], ys[~single], marker=marker, color=colour, zorder=3)
            ax.scatter(pts[single], ys[single], marker=marker, facecolors="none", edgecolors=colour, zorder=3)
        ax.set_xscale("log")
        ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
        ax.minorticks_off()
        ax.set_xlabel("sampling ratio")
        ax.set_ylabel("EER (%)")
        ax.set_title(col.removeprefix("eer."), fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:   # below the panels: inside one it hides the curves
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(3, len(sets) + 1),
                   fontsize=7, frameon=False)
    fig.suptitle("EER vs ratio: mean over seeds, 95% CI band (hollow: one seed, bootstrap CI)", fontsize=10)
    return to_data_uri(fig)
