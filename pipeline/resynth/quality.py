"""The quality summary of one paradigm's reconstructions (reports/reconstruction/<paradigm>.json) and its log table.

Why: a generator that passes audio through unchanged, or outputs mostly noise, makes useless "hard
fakes"; the summary flags both, per system, beside the mean log-mel distance, SNR and speed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

PASSTHROUGH_DB = 0.5  # mean log-mel distance below this: the "fake" is (nearly) its parent
NOISE_RATIO = 0.8  # distance above this share of white noise's distance: the fake is mostly noise


def summarise(paradigm: str, results: dict[str, Any], jobs: int, parents: int) -> dict:
    """The quality table: per system n, mean log-mel distance (dB), mean SNR (dB), rtf, a sanity status."""
    systems = {}
    for system, res in results.items():
        q = res.quality
        if not q:
            systems[system] = {"n": 0, "logmel_distance": None, "snr_db": None, "rtf": None, "status": "empty"}
            continue
        dist = float(np.mean([x["logmel_distance"] for x in q]))
        noise = float(np.mean([x["noise_distance"] for x in q]))
        status = "ok"
        if dist < PASSTHROUGH_DB:
            status = "suspect_passthrough"
        elif dist > NOISE_RATIO * noise:
            status = "suspect_noise"
        rtf = res.seconds / res.audio_s if res.audio_s > 0 else None
        systems[system] = {
            "n": len(q), "logmel_distance": dist, "snr_db": float(np.mean([x["snr_db"] for x in q])),
            "noise_logmel_distance": noise, "rtf": rtf, "speed_x": (1.0 / rtf) if rtf else None,
            "processed_audio_s": res.audio_s, "status": status,
        }
    rejects = [r for res in results.values() for r in res.rejects]
    return {"paradigm": paradigm, "systems": systems, "n_parents": parents, "n_jobs": jobs,
            "n_rejected": len(rejects), "rejects": rejects,
            "units": {"logmel_distance": "dB, mean |log-mel difference|", "snr_db": "dB",
                      "rtf": "compute seconds per audio second (new outputs only; null when all reused)"}}


def quality_table(summary: dict) -> str:
    """The quality summary as a fixed-width text table (for the log)."""
    lines = [f"{'system':<20} {'n':>5} {'logmel_dB':>9} {'snr_dB':>7} {'noise_dB':>8} {'speed_x':>8} status"]
    for name, s in summary["systems"].items():
        def f(v: Any, w: int, d: int = 2) -> str:
            return f"{v:>{w}.{d}f}" if isinstance(v, float) and math.isfinite(v) else f"{'-':>{w}}"
        lines.append(f"{name:<20} {s['n']:>5} {f(s.get('logmel_distance'), 9)} {f(s.get('snr_db'), 7)} "
                     f"{f(s.get('noise_logmel_distance'), 8)} {f(s.get('speed_x'), 8, 1)} {s['status']}")
    return "\n".join(lines)
