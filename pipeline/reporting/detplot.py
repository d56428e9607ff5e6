"""The one DET plotter: detection error trade-off curves on normal-deviate axes.

Used by `evaluate` (reports/plots/det.png) and by `report` (the Detector section, drawn from
reports/plots/det.csv), so both show the same axes. Draws given points only: the curve points and the
EERs come from `evaluate` (pipeline.metrics), nothing is computed here. Reads and writes no file;
returns a matplotlib Figure (no pyplot, so no global figure state).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import norm

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
