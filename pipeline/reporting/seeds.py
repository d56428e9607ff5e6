"""Experiments grouped over seeds: mean and 95% CI per (method, ratio, other changed params) and eval set,
the curve with CI bands, paired comparisons by seed, and the one-sentence result of the summary.

Reads nothing: takes the runs table of pipeline/reporting/experiments.py (rows with `params`, `ci`, `base`).
Only the experiments of ONE sweep are grouped: those of the newest commit that has experiments (plus the
workspace when it holds one of them), so runs of different code never pool. Seeds (`train.seed`,
`sample.seed`, `evaluate.seed`) are what varies inside a group; every other param that differs between the
runs (e.g. `train.exclude_paradigms` of the ablation) makes its own group (`variant`, naming the values that
differ from the most common one: the sweep's main runs have variant "").
A group of n >= 2 seeds: mean and Student-t 95% CI over the seeds (pipeline.metrics.mean_ci). A group of one
seed: its EER and the evaluate stage's bootstrap CI over clips, marked as single-seed (a narrower kind of
interval: it ignores training noise). A method's label is `sample.method`, with the NC order when it is not
the paper's nearest (`nc:farthest`, `nc:stratified`).

Paired comparisons (`paired`, `paired_table`): the sweep runs every method with the same seeds (train.seed =
sample.seed = s), so two groups are compared seed by seed: d_s = EER(method, s) - EER(reference, s), with
the mean, the Student-t 95% interval and sign / Wilcoxon p-values of pipeline.metrics.paired_difference.
The reference is `full` (any ratio) or `random` at the same ratio, of the same variant (else the main runs'
variant ""). Verdicts read from the paired interval: lower (CI below 0), HIGHER (above 0) or no significant
difference; groups without two shared seeds fall back to comparing the two CIs. Data efficiency: the smallest
ratio at which a method's paired mean difference to full is at most GOAL (2 EER points), with its CI.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from pipeline.metrics import PairedDifference, mean_ci, paired_difference

SEED_KEYS = ("train.seed", "sample.seed", "evaluate.seed")
POINT_KEYS = ("sample.method", "sample.ratio", "sample.nc.order")   # the method label carries the NC order
GOAL = 0.02                                                        # "within 2 EER points of full"
REFERENCES = ("full", "random")
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
    """One row per (method, ratio, variant): n_seeds, seeds, per `eer.<set>`: mean, lo, hi (fractions) and
    `<set>.kind` ('seeds' or 'bootstrap' for one seed), and `per_seed` ({eer col: {seed: EER}}, the mean of
    a seed's runs) for the paired comparisons. None when there is no sweep to group."""
    return group_flat(flat_runs(runs))


def flat_runs(runs: pd.DataFrame | None) -> pd.DataFrame | None:
    """The newest sweep's runs, one row each: commit (the sweep's base), name, method, ratio, variant, seed, every
    `eer.<set>` and `ci` (the bootstrap CIs); reports/sweep_runs.csv holds this table (without `ci`)."""
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
    eer_cols = [c for c in runs.columns if c.startswith("eer.")]
    out = pd.DataFrame({"commit": rows["base"].astype(str).to_numpy(), "name": rows["name"].astype(str).to_numpy(),
                        "method": rows["method"].to_numpy(), "ratio": rows["ratio"].astype(float).to_numpy(),
                        "variant": ["; ".join(f"{k}={p.get(k)}" for k in varying if repr(p.get(k)) != mode[k])
                                    for p in params],
                        "seed": [str(p.get("train.seed", p.get("seed"))) for p in params]})
    for col in eer_cols:
        out[col] = rows[col].to_numpy(float)
    out["ci"] = list(rows["ci"]) if "ci" in rows.columns else None
    return out


def group_flat(flat: pd.DataFrame | None) -> pd.DataFrame | None:
    """`group_runs` from the one-row-per-run table of `flat_runs` (or reports/sweep_runs.csv read back)."""
    if flat is None or flat.empty:
        return None
    eer_cols = [c for c in flat.columns if c.startswith("eer.") and c.count(".") == 1]
    out = []
    for (method, ratio, var), g in flat.groupby(["method", "ratio", "variant"], sort=True):
        row: dict[str, Any] = {"method": method, "ratio": float(ratio), "variant": var, "n_seeds": len(g),
                               "seeds": sorted(map(str, g["seed"]))}
        row["per_seed"] = {col: g.dropna(subset=[col]).groupby(g["seed"].astype(str))[col].mean().to_dict()
                           for col in eer_cols}
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


# ---------------------------------------------------------------- paired comparisons


def paired(a: pd.Series, b: pd.Series, col: str) -> PairedDifference | None:
    """EER(a) - EER(b) on `col`, paired by seed (None with fewer than two seeds in common)."""
    pa, pb = (r.get("per_seed", {}) for r in (a, b))
    va = pa.get(col, {}) if isinstance(pa, dict) else {}
    vb = pb.get(col, {}) if isinstance(pb, dict) else {}
    common = sorted(set(va) & set(vb))
    if len(common) < 2:
        return None
    return paired_difference([va[s] for s in common], [vb[s] for s in common])


def reference(groups: pd.DataFrame, row: pd.Series, ref: str) -> pd.Series | None:
    """The `ref` group a row is compared with: full (any ratio) or random at the row's ratio; same variant,
    else the main runs' ("")."""
    ratio = None if ref == "full" else float(row["ratio"])
    same = point(groups, ref, ratio, str(row["variant"]))
    return same if same is not None else point(groups, ref, ratio)


def verdict(d: PairedDifference | None) -> str:
    """lower / HIGHER / no significant difference, from the paired 95% interval (or: too few pairs)."""
    if d is None or not np.isfinite(d.lo):
        return "too few pairs"
    return "lower" if d.hi < 0 else ("HIGHER" if d.lo > 0 else "no significant difference")


def _fmt_p(p: float) -> str:
    return "-" if not np.isfinite(p) else (f"{p:.3g}" if p >= 0.001 else "<0.001")


def fmt_paired(d: PairedDifference | None, tests: bool = True) -> str:
    """'+1.2 [-0.8, +3.2] (5 seeds; sign p 0.375, Wilcoxon p 0.0625)' in EER points ('-' for None); without
    `tests`: '+1.2 [-0.8, +3.2] points, 5 seeds'."""
    if d is None:
        return "-"
    ci = f" [{100 * d.lo:+.1f}, {100 * d.hi:+.1f}]" if np.isfinite(d.lo) else ""
    if not tests:
        return f"{100 * d.mean:+.1f}{ci} points, {d.n} seeds"
    return f"{100 * d.mean:+.1f}{ci} ({d.n} seeds; sign p {_fmt_p(d.sign_p)}, Wilcoxon p {_fmt_p(d.wilcoxon_p)})"


def paired_table(groups: pd.DataFrame, sets: list[str] | None = None) -> pd.DataFrame:
    """Every method against full and against random at every ratio, per eval set: one row each with the
    pairs, mean difference, CI, p-values (EER fractions) and the verdict."""
    sets = sets or [c for c in groups.columns if c.startswith("eer.") and c.count(".") == 1]
    out = []
    for _, row in groups.sort_values(["variant", "method", "ratio"], kind="mergesort").iterrows():
        for ref in REFERENCES:
            other = reference(groups, row, ref)
            if row["method"] == ref or row["method"] == "full" or other is None:
                continue
            for col in sets:
                d = paired(row, other, col)
                out.append({"method": row["method"], "ratio": float(row["ratio"]), "variant": row["variant"],
                            "reference": ref, "reference_variant": other["variant"], "set": col.removeprefix("eer."),
                            "n_pairs": 0 if d is None else d.n,
                            "diff_mean": math.nan if d is None else d.mean, "diff_lo": math.nan if d is None else d.lo,
                            "diff_hi": math.nan if d is None else d.hi,
                            "sign_p": math.nan if d is None else d.sign_p,
                            "wilcoxon_p": math.nan if d is None else d.wilcoxon_p, "verdict": verdict(d),
                            "_d": d})
    return pd.DataFrame(out)


def paired_display(groups: pd.DataFrame) -> pd.DataFrame:
    """paired_table for the report: method, ratio, variant, vs, then one display column per shown eval set."""
    sets = shown_sets(groups)
    table = paired_table(groups, sets)
    rows = []
    for (method, ratio, variant, ref), g in table.groupby(["method", "ratio", "variant", "reference"], sort=False):
        cells = {f"eer.{r['set']}": fmt_paired(r["_d"]) for _, r in g.iterrows()}
        rows.append({"method": method, "ratio": ratio, "variant": variant, "vs": ref,
                     **{c.removeprefix("eer.") + " (points)": cells.get(c, "-") for c in sets}})
    return pd.DataFrame(rows)


def efficiency(groups: pd.DataFrame, col: str) -> list[tuple[str, float | None, PairedDifference | None, float]]:
    """Per method of the main runs: (method, the smallest ratio whose paired mean difference to full is at most
    GOAL or None, that difference, else the closest one's ratio)."""
    full = point(groups, "full", None)
    out = []
    main = groups[(groups["variant"] == "") & (groups["method"] != "full") & (groups["ratio"] < 1)]
    for method in _ordered(main["method"].unique()):
        best: tuple[float, PairedDifference | None, float] = (math.nan, None, math.inf)
        for _, row in main[main["method"] == method].sort_values("ratio").iterrows():
            d = paired(row, full, col) if full is not None else None
            if d is None:
                continue
            if d.mean <= GOAL:
                best = (float(row["ratio"]), d, -math.inf)
                break
            if d.mean < best[2]:
                best = (float(row["ratio"]), d, d.mean)
        out.append((method, best[0] if best[2] == -math.inf else None, best[1], best[0]))
    return out


def _ordered(methods) -> list[str]:
    """nc first, then its orders, then the rest by name."""
    return sorted(map(str, methods), key=lambda m: (not m.startswith("nc"), m))


def _name(method: str) -> str:
    return "NC" + method[2:] if method.startswith("nc") else method


def efficiency_sentence(groups: pd.DataFrame, col: str) -> str:
    """The data-efficiency headline: per method, the smallest ratio within GOAL of full (paired), with its CI."""
    set_name = col.removeprefix("eer.").replace("_", "-")
    parts = []
    for method, ratio, d, closest in efficiency(groups, col):
        if d is None:
            parts.append(f"{_name(method)}: no paired comparison with full")
        elif ratio is not None:
            parts.append(f"{_name(method)} from {100 * ratio:g}% ({fmt_paired(d, tests=False)})")
        else:
            parts.append(f"{_name(method)} at no ratio run (closest {100 * closest:g}%: {fmt_paired(d, tests=False)})")
    if not parts:
        return f"No sampled run to compare with full on {set_name}."
    return (f"Smallest ratio within {100 * GOAL:g} EER points of full on {set_name} (paired by seed: mean "
            f"difference in points [95% CI]): " + "; ".join(parts) + ".")


# ---------------------------------------------------------------- the one-sentence result


def point(groups: pd.DataFrame, method: str, ratio: float | None, variant: str = "") -> pd.Series | None:
    """The group of (method, ratio, variant); ratio None: the method's largest ratio (full's 1)."""
    g = groups[(groups["method"] == method) & (groups["variant"] == variant)]
    if ratio is not None:
        g = g[np.isclose(g["ratio"].astype(float), ratio)]
    return None if g.empty else g.sort_values("ratio").iloc[-1]


def compare(a: pd.Series, b: pd.Series, col: str, name_a: str, name_b: str) -> str:
    """Plain verdict on 'a has a lower EER than b': the paired 95% CI of the per-seed difference decides; without
    two shared seeds, the two groups' CIs (overlap = no significant difference)."""
    d = paired(a, b, col)
    if d is not None and np.isfinite(d.lo):
        says = f"{fmt_paired(d).replace(' (', ' EER points (paired over ', 1)}"
        if d.hi < 0:
            return f"{name_a} is lower than {name_b}: {says}"
        if d.lo > 0:
            return f"{name_a} is HIGHER than {name_b}: {says}: the claim does not hold"
        return f"no significant difference between {name_a} and {name_b}: {says}, the CI includes 0"
    la, ha, lb, hb = (_num(r.get(f"{col}.{end}")) for r in (a, b) for end in ("lo", "hi"))
    if not all(np.isfinite(x) for x in (la, ha, lb, hb)):
        return f"{name_a} vs {name_b}: no CI, so no claim can be made"
    if ha < lb:
        return f"{name_a} is lower than {name_b} (95% CIs do not overlap)"
    if hb < la:
        return f"{name_a} is HIGHER than {name_b} (95% CIs do not overlap): the claim does not hold"
    return f"no significant difference between {name_a} and {name_b} (95% CIs overlap)"


def _goal(row: pd.Series, full: pd.Series, col: str, name: str, set_name: str) -> str:
    d = paired(row, full, col)
    gap = d.mean if d is not None else float(row[col] - full[col])
    how = f" (paired over {d.n} seeds, 95% CI [{100 * d.lo:+.1f}, {100 * d.hi:+.1f}])" \
        if d is not None and np.isfinite(d.lo) else ""
    return (f"{name} is {100 * gap:+.1f} EER points from the full set on {set_name}{how}: "
            + ("within the 2-point goal" if gap <= GOAL else "the 2-point goal does NOT hold"))


def headline(groups: pd.DataFrame | None, metrics: dict[str, Any] | None = None) -> tuple[str, list[str]]:
    """(the data-efficiency sentence, then the NC point with CIs; verdicts from the paired comparisons) from
    the grouped sweep; without one, from the workspace run."""
    if groups is None or groups.empty:
        return _single_run(metrics)
    col = shown_sets(groups)[0]
    set_name = col.removeprefix("eer.").replace("_", "-")
    main = groups[(groups["variant"] == "") & (groups["ratio"] < 1) & (groups["method"] != "full")]
    ratio = 0.1 if np.isclose(main["ratio"], 0.1).any() else (main["ratio"].min() if len(main) else None)
    nc = point(groups, "nc", ratio) if ratio is not None else None
    full = point(groups, "full", None)
    if ratio is None:
        return (f"No sampled run below ratio 1 in the sweep: no data-efficiency claim ({len(groups)} groups).", [])
    lead = efficiency_sentence(groups, col) if full is not None else ""
    anchor = nc if nc is not None else point(groups, _ordered(main["method"].unique())[0], ratio)
    parts = [f"{_name(str(anchor['method']))} at {100 * ratio:g}%: {set_name} EER {fmt_ci(anchor, col)}"]
    if full is not None:
        parts.append(f"vs full {fmt_ci(full, col)}")
    methods = _ordered(m for m in main["method"].unique() if m != anchor["method"])
    parts += [f"{m} {fmt_ci(o, col)}" for m in methods if (o := point(groups, m, ratio)) is not None]
    verdicts = []
    for m in _ordered(main["method"].unique()):
        row = point(groups, m, ratio)
        if row is not None and full is not None:
            name = f"{_name(m)} at {100 * ratio:g}%"
            verdicts.append(_goal(row, full, col, name, set_name))
            if m != "random":       # the baseline's gap is the context, not a claim
                verdicts.append(compare(row, full, col, name, "full"))
    for m in (m for m in _ordered(main["method"].unique()) if m != "random"):
        for r in sorted(x for x in main.loc[main["method"] == m, "ratio"].unique() if x <= ratio):
            o, n = point(groups, "random", r), point(groups, m, r)
            if o is not None and n is not None:
                verdicts.append(compare(n, o, col, f"{_name(m)} at {100 * r:g}%", f"random at {100 * r:g}%"))
    verdicts += _variant_verdicts(groups, col, ratio)
    return (f"{lead} " if lead else "") + "; ".join(parts) + ".", verdicts


def _variant_verdicts(groups: pd.DataFrame, col: str, ratio: float) -> list[str]:
    """Hard fakes on vs off and augmentation on vs off, for nc at the headline ratio and full."""
    out = []
    for var in sorted(v for v in groups["variant"].unique() if v and (HARD_FAKES in v or AUGMENT in v)):
        for method, r in (("nc", ratio), ("full", None)):
            changed, plain = point(groups, method, r, var), point(groups, method, r)
            if changed is None or plain is None:
                continue
            if HARD_FAKES in var:   # the claim: hard fakes (the plain runs) lower the EER
                out.append(compare(plain, changed, col, f"{method} with hard fakes", f"without ({var})"))
            else:                   # the claim: augmentation (the changed runs) lowers the EER
                out.append(compare(changed, plain, col, f"{method} with augmentation ({var})", "without"))
    return out


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
