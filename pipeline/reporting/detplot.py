"""The one DET plotter: detection error trade-off curves on normal-deviate axes.

Used by `evaluate` (reports/plots/det.png) and by `report` (the Detector section, drawn from
reports/plots/det.csv), so both show the same axes. The report draws given points only; `det_table`, which
evaluate runs, thins pipeline.metrics' DET curve of each set into the points of det.csv. `det_figure` returns a
matplotlib Figure (no pyplot, so no global figure state); `write_plots` writes evaluate's plots/ files with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import norm

from pipeline.metrics import compute_det_curve

DET_TICKS = np.array([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.95])
DET_LIMITS = (0.0005, 0.95)        # axis range as error rates; points outside are clipped onto the frame


def det_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], eers: Mapping[str, float] | None = None,
               title: str = "DET curves") -> Figure:
    """DET curves, one per eval set: {name: (far, frr)} as fractions; `eers` labels the legend."""
    fig = Figure(figsize=(5.8, 5.4))
    ax = fig.add_subplot()
    lo, hi = DET_LIMITS
    for name, (far, frr) in curves.items():
        x = norm.ppf(np.clip(np.asarray(far, dtype=float), lo, hi))
        y = norm.ppf(np.clip(np.asarray(frr, dtype=float), lo, hi))
        eer = None if eers is None else eers.get(name)
        ax.plot(x, y, label=name if eer is None else f"{name} (EER {100 * eer:.1f}%)")
    ticks = norm.ppf(DET_TICKS)
    labels = [f"{100 * t:g}" for t in DET_TICKS]
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    edge = norm.ppf([lo, hi])
    ax.plot(edge, edge, color="0.7", lw=0.8, ls=":")
    ax.set_xlim(*edge)
    ax.set_ylim(*edge)
    ax.set_xlabel("false acceptance rate: spoof accepted (%)")
    ax.set_ylabel("false rejection rate: bona fide rejected (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=7, loc="lower left")   # DET curves run from top left to bottom right
    return fig


def det_points(bona: np.ndarray, spoof: np.ndarray, max_points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(far, frr) of the DET curve, thinned to about `max_points` points (ends kept)."""
    frr, far, _ = compute_det_curve(bona, spoof)
    if len(frr) > max_points:
        idx = np.unique(np.linspace(0, len(frr) - 1, max_points).round().astype(int))
        frr, far = frr[idx], far[idx]
    return far, frr


def det_table(scored: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The DET points of every set (set, far, frr): reports/plots/det.csv, which the report draws."""
    frames = []
    for name, df in scored.items():
        far, frr = det_points(df.loc[df["label"] == "bonafide", "score"].to_numpy(float),
                              df.loc[df["label"] == "spoof", "score"].to_numpy(float))
        frames.append(pd.DataFrame({"set": name, "far": far, "frr": frr}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["set", "far", "frr"])


def write_plots(scored: Mapping[str, pd.DataFrame], eer: Mapping[str, float], out_dir: Path) -> None:
    """evaluate's plots/: det.csv (the DET points of `det_table`, for the report and `dvc plots`), det.png and score
    histograms."""
    from pipeline.io import atomic_path, csv_safe

    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "det.csv") as tmp:
        csv_safe(det_table(scored)).to_csv(tmp, index=False, float_format="%.6f")
    # drawn from the rounded points of det.csv, so det.png and the report's figure show the same curves
    det = pd.read_csv(out_dir / "det.csv", dtype={"set": str})
    curves = {str(name): (g["far"].to_numpy(), g["frr"].to_numpy()) for name, g in det.groupby("set", sort=False)}
    _save_fig(det_figure(curves, eer), out_dir / "det.png")
    _save_fig(score_histograms(scored, eer), out_dir / "score_hist.png")


def score_histograms(scored: Mapping[str, pd.DataFrame], eer: Mapping[str, float]) -> Figure:
    """Bona fide and spoof score histograms, one panel per eval set (or any named group of scored clips)."""
    n = len(scored)
    cols = min(3, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(4 * cols, 3 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (name, df) in zip(axes.flat, scored.items()):
        bins = np.histogram_bin_edges(df["score"].to_numpy(float), bins=40)
        for label, color in (("bonafide", "tab:green"), ("spoof", "tab:red")):
            ax.hist(df.loc[df["label"] == label, "score"], bins=bins, alpha=0.6, color=color, label=label,
                    density=True)
        ax.set_title(f"{name} (EER {100 * eer[name]:.1f}%)" if name in eer else str(name), fontsize=9)
        ax.set_xlabel("score (higher = bona fide)", fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _save_fig(fig: Figure, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from pipeline.io import atomic_path

    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png", metadata={"Software": None})
