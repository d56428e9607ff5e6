"""Experiments grouped over seeds: mean and 95% CI per (method, ratio, other changed params) and eval set,
the curve with CI bands, and the one-sentence result of the summary.

Reads nothing: takes the runs table of pipeline/reporting/experiments.py (rows with `params`, `ci`, `base`).
Only the experiments of ONE sweep are grouped: those of the newest commit that has experiments (plus the
workspace when it holds one of them), so runs of different code never pool. Seeds (`train.seed`,
`sample.seed`, `evaluate.seed`) are what varies inside a group; every other param that differs between the
runs (e.g. `train.exclude_paradigms` of the ablation) makes its own group (`variant`, naming the values that
differ from the most common one: the sweep's main runs have variant "").
A group of n >= 2 seeds: mean and Student-t 95% CI over the seeds (pipeline.metrics.mean_ci). A group of one
seed: its EER and the evaluate stage's bootstrap CI over clips, marked as single-seed (a narrower kind of
interval: it ignores training noise).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from pipeline.metrics import mean_ci

SEED_KEYS = ("train.seed", "sample.seed", "evaluate.seed")
POINT_KEYS = ("sample.method", "sample.ratio")
PREFERRED_SETS = ("eer.unseen_attacks", "eer.seen_attacks", "eer.pooled")
HARD_FAKES = "train.exclude_paradigms"
AUGMENT = "train.augment"


def _sweep_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of the newest sweep: experiments (and the workspace) sharing the first `base` listed."""
    if "base" not in runs.columns:
        return runs.iloc[:0]
    exp = runs[runs["base"].notna() & runs["method"].notna() & runs["ratio"].notna()]
    if exp.empty:
        return exp
    first = exp.loc[exp["kind"] == "experiment", "base"]
    base = first.iloc[0] if len(first) else exp["base"].iloc[0]
    return exp[exp["base"] == base]


def _variant_keys(params: list[dict[str, Any]]) -> list[str]:
    keys = sorted({k for p in params for k in p} - set(SEED_KEYS) - set(POINT_KEYS))
    return [k for k in keys if len({repr(p.get(k)) for p in params}) > 1]


def group_runs(runs: pd.DataFrame | None) -> pd.DataFrame | None:
    """One row per (method, ratio, variant): n_seeds, seeds, and per `eer.<set>`: mean, lo, hi (fractions)
    and `<set>.kind` ('seeds' or 'bootstrap' for one seed). None when there is no sweep to group."""
    if runs is None or runs.empty:
        return None
    rows = _sweep_rows(runs)
    if rows.empty:
        return None
    params = [p if isinstance(p, dict) else {} for p in rows["params"]]
    varying = _variant_keys(params)
    # the most common value of a varying param is the reference (the sweep's main runs: variant ""), so
    # only the ablation's changes name a variant
    mode = {k: pd.Series([repr(p.get(k)) for p in params]).value_counts(sort=True).index[0] for k in varying}
    variant = ["; ".join(f"{k}={p.get(k)}" for k in varying if repr(p.get(k)) != mode[k]) for p in params]
    seed = [p.get("train.seed", p.get("seed")) for p in params]
    rows = rows.assign(_variant=variant, _seed=seed)
    eer_cols = [c for c in runs.columns if c.startswith("eer.")]
    out = []
    for (method, ratio, var), g in rows.groupby(["method", "ratio", "_variant"], sort=True):
        row: dict[str, Any] = {"method": method, "ratio": float(ratio), "variant": var, "n_seeds": len(g),
                               "seeds": sorted(map(str, g["_seed"]))}
        for col in eer_cols:
            values = g[col].dropna().to_numpy(float)
            if values.size == 0:
                continue
            mean, lo, hi = mean_ci(values)
            kind = "seeds"
            if values.size == 1:
                ci = g[g[col].notna()]["ci"].iloc[0] if "ci" in g.columns else None
                lo, hi = ci.get(col, (math.nan, math.nan)) if isinstance(ci, dict) else (math.nan, math.nan)
                kind = "bootstrap"
            row.update({col: mean, f"{col}.lo": lo, f"{col}.hi": hi, f"{col}.n": int(values.size),
                        f"{col}.kind": kind})
        out.append(row)
    return pd.DataFrame(out) if out else None


def shown_sets(groups: pd.DataFrame) -> list[str]:
    """The eval sets the curve and the sentence use: the preferred ones present, else every set."""
    cols = [c for c in groups.columns if c.startswith("eer.") and c.count(".") == 1]
    preferred = [c for c in PREFERRED_SETS if c in cols]
    return preferred or cols[:3]


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def fmt_ci(row: pd.Series | dict, col: str) -> str:
    """'12.3 ± 4.5% (5 seeds)' (half-width of the CI), '12.3% [8.0, 15.1] (1 seed, bootstrap CI)' or '-'."""
    mean = _num(row.get(col))
    if not np.isfinite(mean):
        return "-"
    lo, hi, n = _num(row.get(f"{col}.lo")), _num(row.get(f"{col}.hi")), row.get(f"{col}.n", 1)
    if row.get(f"{col}.kind") == "seeds" and np.isfinite(lo):
        return f"{100 * mean:.1f} ± {100 * (hi - lo) / 2:.1f}% ({n} seeds)"
    if np.isfinite(lo):
        return f"{100 * mean:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] (1 seed, bootstrap CI over clips)"
    return f"{100 * mean:.1f}% (1 seed, no CI)"


def groups_table(groups: pd.DataFrame) -> pd.DataFrame:
    """The grouped runs as display strings: method, ratio, variant, seeds, then one column per eval set."""
    cols = [c for c in groups.columns if c.startswith("eer.") and c.count(".") == 1]
    shown = groups[["method", "ratio", "variant", "n_seeds"]].copy()
    for c in cols:
        shown[c.removeprefix("eer.") + " EER (mean ± CI)"] = [fmt_ci(r, c) for _, r in groups.iterrows()]
    return shown


# ---------------------------------------------------------------- the one-sentence result


def _point(groups: pd.DataFrame, method: str, ratio: float | None, variant: str = "") -> pd.Series | None:
    g = groups[(groups["method"] == method) & (groups["variant"] == variant)]
    if ratio is not None:
        g = g[np.isclose(g["ratio"].astype(float), ratio)]
    return None if g.empty else g.sort_values("ratio").iloc[-1]


def compare(a: pd.Series, b: pd.Series, col: str, name_a: str, name_b: str) -> str:
    """Plain verdict on 'a has a lower EER than b': the CIs decide, overlap = no significant difference."""
    la, ha, lb, hb = (_num(r.get(f"{col}.{end}")) for r in (a, b) for end in ("lo", "hi"))
    if not all(np.isfinite(x) for x in (la, ha, lb, hb)):
        return f"{name_a} vs {name_b}: no CI, so no claim can be made"
    if ha < lb:
        return f"{name_a} is lower than {name_b} (95% CIs do not overlap)"
    if hb < la:
        return f"{name_a} is HIGHER than {name_b} (95% CIs do not overlap): the claim does not hold"
    return f"no significant difference between {name_a} and {name_b} (95% CIs overlap)"


def headline(groups: pd.DataFrame | None, metrics: dict[str, Any] | None = None) -> tuple[str, list[str]]:
    """(one sentence with numbers and CIs, verdicts) from the grouped sweep; without one, from the workspace run."""
    if groups is None or groups.empty:
        return _single_run(metrics)
    col = shown_sets(groups)[0]
    set_name = col.removeprefix("eer.").replace("_", "-")
    sampled = groups[(groups["method"] == "nc") & (groups["ratio"] < 1) & (groups["variant"] == "")]
    ratio = 0.1 if np.isclose(sampled["ratio"], 0.1).any() else (sampled["ratio"].min() if len(sampled) else None)
    nc = _point(groups, "nc", ratio) if ratio is not None else None
    full = _point(groups, "full", None)
    if nc is None:
        return (f"No NC run below ratio 1 in the sweep: no data-efficiency claim ({len(groups)} groups).", [])
    parts = [f"NC at {100 * ratio:g}%: {set_name} EER {fmt_ci(nc, col)}"]
    verdicts = []
    if full is not None:
        parts.append(f"vs full {fmt_ci(full, col)}")
        gap = float(nc[col] - full[col])
        verdicts.append(f"NC at {100 * ratio:g}% is {100 * gap:+.1f} EER points from the full set on {set_name} "
                        + ("(within the 2-point goal)" if gap <= 0.02 else "(the 2-point goal does NOT hold)"))
        verdicts.append(compare(nc, full, col, f"NC at {100 * ratio:g}%", "full"))
    for other in ("random", "kcenter"):
        o = _point(groups, other, ratio)
        if o is not None:
            parts.append(f"{other} {fmt_ci(o, col)}")
        for r in sorted({ratio, *[x for x in sampled["ratio"] if x < ratio]}):   # the headline ratio and below
            o, n = _point(groups, other, r), _point(groups, "nc", r)
            if o is not None and n is not None:
                verdicts.append(compare(n, o, col, f"NC at {100 * r:g}%", f"{other} at {100 * r:g}%"))
    for var in sorted(v for v in groups["variant"].unique() if v and (HARD_FAKES in v or AUGMENT in v)):
        for method, r in (("nc", ratio), ("full", None)):
            changed, plain = _point(groups, method, r, var), _point(groups, method, r)
            if changed is None or plain is None:
                continue
            if HARD_FAKES in var:   # the claim: hard fakes (the plain runs) lower the EER
                verdicts.append(compare(plain, changed, col, f"{method} with hard fakes", f"without ({var})"))
            else:                   # the claim: augmentation (the changed runs) lowers the EER
                verdicts.append(compare(changed, plain, col, f"{method} with augmentation ({var})", "without"))
    return "; ".join(parts) + ".", verdicts


def _single_run(metrics: dict[str, Any] | None) -> tuple[str, list[str]]:
    eer = (metrics or {}).get("eer") if isinstance(metrics, dict) else None
    if not isinstance(eer, dict) or not eer:
        return "No EER available: run the pipeline (and scripts/sweep.sh for seeds).", []
    name = next((n for n in ("unseen_attacks", "seen_attacks", "pooled") if n in eer), next(iter(eer)))
    ci = ((metrics.get("eer_ci") or {}).get(name) or {}) if isinstance(metrics.get("eer_ci"), dict) else {}
    band = f" [{100 * ci['lo']:.1f}, {100 * ci['hi']:.1f}] (95% bootstrap CI over clips)" if "lo" in ci else ""
    return (f"This run, one seed: {name.replace('_', '-')} EER {100 * float(eer[name]):.1f}%{band}.",
            ["one seed only: no claim about NC vs random or full can be made (the seed spread is unknown); "
             "run scripts/sweep.sh"])
