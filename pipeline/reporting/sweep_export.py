"""`python -m pipeline.reporting.sweep_export`: the seeded sweep as committed text (reports/sweep.csv, sweep.md,
sweep_paired.csv, sweep_variants.csv, sweep_runs.csv).

DVC experiments live in local git refs: a fresh clone has none, so a sweep's evidence would leave with the
machine that ran it. scripts/sweep.sh calls this when its queue is done; the two files are plain text that a
reviewer reads in a diff. The grouping, CIs, paired differences and verdicts are the report's own
(pipeline/reporting/seeds.py): sweep.csv one row per (method, ratio, variant); sweep_paired.csv one row per
(method, ratio, variant, reference full|random, eval set) with the per-seed paired difference (EER points:
pairs, mean, 95% t-interval, sign and Wilcoxon p, verdict); sweep_runs.csv one row per run (commit, experiment,
method, ratio, variant, seed, EER fraction per eval set: what the report reads back to group and pair the sweep
in a clone without the experiments); sweep_variants.csv each variant (ablation, augmentation, fine-tune)
against its method and ratio's main runs, paired by seed; sweep.md the tables, the sentence and the verdicts.
Every file names the sweep's baseline commit (`commit` column; sweep.md's title). Reads `dvc exp show` through
experiments.load_experiments; writes the files atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from pipeline.io import csv_safe, write_text_atomic
from pipeline.reporting import seeds
from pipeline.reporting.experiments import load_experiments

SETS = ("eer.seen_attacks", "eer.unseen_attacks", "eer.pooled", "eer.dev")   # dev: when evaluate.sets has it


def sweep_frame(groups: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, ratio, variant): seeds and, per eval set, mean / lo / hi EER in percent."""
    cols = [c for c in groups.columns if c.startswith("eer.") and c.count(".") == 1]
    out = groups[["method", "ratio", "variant", "n_seeds"]].copy()
    out["seeds"] = [" ".join(s) for s in groups["seeds"]]
    for c in cols:
        name = c.removeprefix("eer.")
        for end, src in (("mean", c), ("lo", f"{c}.lo"), ("hi", f"{c}.hi")):
            out[f"{name}_{end}"] = (100 * groups[src].astype(float)).round(2)
    return out.sort_values(["variant", "method", "ratio"], kind="mergesort").reset_index(drop=True)


def paired_frame(groups: pd.DataFrame) -> pd.DataFrame:
    """seeds.paired_table with the differences in EER points (2 decimals) and p-values (4 decimals)."""
    table = seeds.paired_table(groups)
    if table.empty:
        return table
    out = table.drop(columns="_d")
    for c in ("diff_mean", "diff_lo", "diff_hi"):
        out[c] = (100 * out[c].astype(float)).round(2)
    for c in ("sign_p", "wilcoxon_p"):
        out[c] = out[c].astype(float).round(4)
    return out


def variant_frame(groups: pd.DataFrame) -> pd.DataFrame:
    """Every variant (an ablation, augmentation, a fine-tune) against the main runs of its method and ratio, paired
    by seed, per eval set: what sweep_paired.csv (method vs full / random within a variant) does not compare."""
    rows = []
    sets = [c for c in groups.columns if c.startswith("eer.") and c.count(".") == 1]
    for _, row in groups[groups["variant"] != ""].iterrows():
        base = seeds.point(groups, str(row["method"]), float(row["ratio"]))
        for col in sets if base is not None else []:
            d = seeds.paired(row, base, col)
            if d is not None:
                rows.append({"method": row["method"], "ratio": row["ratio"], "variant": row["variant"],
                             "set": col.removeprefix("eer."), "pairs": d.n, "diff_mean": round(100 * d.mean, 2),
                             "diff_lo": round(100 * d.lo, 2), "diff_hi": round(100 * d.hi, 2),
                             "sign_p": round(d.sign_p, 4), "wilcoxon_p": round(d.wilcoxon_p, 4),
                             "verdict": seeds.verdict(d)})
    return pd.DataFrame(rows)


def paired_markdown(groups: pd.DataFrame, sets: list[str]) -> list[str]:
    """The paired comparisons as markdown: one row per (method, ratio, variant, reference), a cell per set."""
    table = seeds.paired_table(groups, sets)
    if table.empty:
        return []
    head = ["method", "ratio", "variant", "vs"] + [c.removeprefix("eer.").replace("_", " ") for c in sets]
    lines = ["", "## Paired by seed: method - reference, EER points", "",
             "Mean of the per-seed differences [95% t-interval] (seeds in common; two-sided sign and Wilcoxon "
             "signed-rank p). Negative = the method has the lower EER. With 5 seeds neither test can go below "
             "p = 0.0625: the verdicts read the interval.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (method, ratio, variant, ref), g in table.groupby(["method", "ratio", "variant", "reference"], sort=False):
        cells = {row["set"]: seeds.fmt_paired(row["_d"]) for _, row in g.iterrows()}
        lines.append("| " + " | ".join([str(method), f"{float(ratio):g}", str(variant) or "-", str(ref)]
                                       + [cells.get(c.removeprefix("eer."), "-") for c in sets]) + " |")
    return lines


def sweep_markdown(groups: pd.DataFrame, base: str = "") -> str:
    """The sweep as a markdown table (mean ± CI half-width over seeds) with the report's sentence and verdicts."""
    sets = [c for c in SETS if c in groups.columns] or seeds.shown_sets(groups)
    head = ["method", "ratio", "variant", "seeds"] + [c.removeprefix("eer.").replace("_", " ") for c in sets]
    lines = [f"# Seeded sweep{f' (baseline commit {base[:10]})' if base else ''}", "",
             "EER in percent: mean ± half-width of the 95% CI over seeds (Student t); a single seed shows its "
             "bootstrap CI over clips instead.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ordered = groups.sort_values(["variant", "method", "ratio"], kind="mergesort")
    for _, r in ordered.iterrows():
        cells = [str(r["method"]), f"{float(r['ratio']):g}", str(r["variant"]) or "-", str(r["n_seeds"])]
        lines.append("| " + " | ".join(cells + [seeds.fmt_ci(r, c) for c in sets]) + " |")
    lines += paired_markdown(groups, sets)
    sentence, verdicts = seeds.headline(groups)
    lines += ["", sentence, ""] + [f"- {v}" for v in verdicts]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.reporting.sweep_export", description=__doc__)
    parser.add_argument("--repo", type=Path, default=Path("."), help="the DVC repository (default: .)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="folder for the sweep files")
    args = parser.parse_args(argv)
    exps = load_experiments(args.repo, metrics_file=None)
    flat = seeds.flat_runs(exps.runs)
    groups = seeds.group_flat(flat)
    if groups is None:
        print(f"error: no sweep to export ({exps.reason or 'no experiments with a method and ratio'})",
              file=sys.stderr)
        return 1
    base = str(flat["commit"].iloc[0])
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(csv_safe(sweep_frame(groups).assign(commit=base)).to_csv(index=False), args.out / "sweep.csv")
    write_text_atomic(csv_safe(paired_frame(groups).assign(commit=base)).to_csv(index=False),
                      args.out / "sweep_paired.csv")
    write_text_atomic(csv_safe(variant_frame(groups).assign(commit=base)).to_csv(index=False),
                      args.out / "sweep_variants.csv")
    write_text_atomic(csv_safe(flat.drop(columns="ci")).to_csv(index=False, float_format="%.6f"),
                      args.out / "sweep_runs.csv")
    write_text_atomic(sweep_markdown(groups, base), args.out / "sweep.md")
    print(f"wrote {args.out / 'sweep.csv'}, {args.out / 'sweep_paired.csv'}, sweep_variants.csv, "
          f"{args.out / 'sweep_runs.csv'} and "
          f"{args.out / 'sweep.md'} ({len(groups)} groups, commit {base})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
