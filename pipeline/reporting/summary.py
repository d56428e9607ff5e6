"""The Summary section of reports/index.html: which method and ratio, how sure, and how hard each generator is.

From the seeded sweep (pipeline/reporting/sweep.py: one commit's runs, named): the headline (the smallest ratio
whose method is within 2 EER points of full, both chosen on dev, then that method's gap on the first test set,
paired by seed, with its interval), then per eval set the method chosen on dev at each ratio with its mean and CI
over seeds and its paired differences to full, to the runner-up and to random (pipeline.metrics.paired_difference
through pipeline/reporting/seeds.py), then the plain verdicts. When the workspace is at another commit than the
sweep, it says so and keeps the two apart. Then this run's numbers per eval set (EER with its bootstrap CI,
minDCF, actDCF, Cllr: the evaluate stage's eer.csv), the generators (from the hardness view), the shortcut audit
and the runs found. Reads no file; takes loaded inputs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline.metrics import PairedDifference
from pipeline.reporting import html, seeds
from pipeline.reporting.detector_section import anchor, fmt_ci_row
from pipeline.reporting.experiments import ExperimentRuns
from pipeline.reporting.sweep import Head, RecordedDifference, Sweep, recorded, same_commit

MAIN_SETS = ("eer.unseen_attacks", "eer.seen_attacks", "eer.pooled", "eer.dev")
DEV = "eer.dev"


def summary_sets(groups: pd.DataFrame) -> list[str]:
    """The eval sets the summary answers for: the main ones the sweep has (dev too), else the first three."""
    cols = [c for c in groups.columns if c.startswith("eer.") and c.count(".") == 1]
    return [c for c in MAIN_SETS if c in cols] or cols[:3]


def _set_name(col: str) -> str:
    return col.removeprefix("eer.").replace("_", " ")


def _gap(a: pd.Series, b: pd.Series, col: str) -> tuple[float, PairedDifference | RecordedDifference | None]:
    """EER(a) - EER(b) on `col`: the paired mean (with its difference) when seeds pair or sweep_paired.csv recorded
    it, else the group means'."""
    d = seeds.paired(a, b, col) or recorded(a, b, col)
    return (d.mean, d) if d is not None else (float(a[col] - b[col]), None)


def diff_cell(a: pd.Series, b: pd.Series | None, col: str) -> str:
    """'+1.2 [-0.8, +3.2] points, 5 seeds: no significant difference' (paired by seed) or, without per-seed values,
    the difference of the means and whether the two CIs overlap."""
    if b is None or not np.isfinite(float(b.get(col, math.nan))):
        return "-"
    gap, d = _gap(a, b, col)
    if d is not None:
        return f"{seeds.fmt_paired(d, tests=False)}: {seeds.verdict(d)}"
    lo_a, hi_a, lo_b, hi_b = (float(r.get(f"{col}.{e}", math.nan)) for r in (a, b) for e in ("lo", "hi"))
    overlap = "CIs overlap" if max(lo_a, lo_b) <= min(hi_a, hi_b) else "CIs do not overlap"
    return f"{100 * gap:+.1f} points (means; no per-seed values to pair: {overlap})"


def chooser(groups: pd.DataFrame) -> str | None:
    """The column methods and ratios are chosen on: the dev EER when the sweep's main runs have it (choose on dev,
    report on test), else None (each set chooses on itself, and the tables say so)."""
    if DEV not in groups.columns:
        return None
    main = groups[groups["variant"] == ""]
    return DEV if main[DEV].notna().any() else None


def _main_runs(groups: pd.DataFrame, col: str) -> tuple[str, pd.DataFrame, pd.Series | None]:
    """(the column to choose on, the main runs with a value on it and on `col`, full's group or None)."""
    choose = chooser(groups) or col
    main = groups[(groups["variant"] == "") & groups[col].notna()] if col in groups.columns else groups.iloc[:0]
    main = main[main[choose].notna()]
    return choose, main, seeds.point(main, "full", None) if len(main) else None


def best_by_ratio(groups: pd.DataFrame, col: str) -> pd.DataFrame:
    """Per ratio below 1 of the main runs: the method with the lowest mean dev EER (`chooser`; without dev runs,
    the lowest on `col`), its EER on `col` and its differences to full, the runner-up (next on dev) and random
    (display strings); full last, as the reference."""
    choose, main, full = _main_runs(groups, col)
    pick = "method chosen on dev" if choose == DEV else f"best method (on {_set_name(col)} itself: no dev runs)"
    rows = []
    for ratio in sorted(main.loc[main["ratio"] < 1, "ratio"].unique()):
        at = main[np.isclose(main["ratio"], ratio) & (main["method"] != "full")].sort_values(choose, kind="mergesort")
        best = at.iloc[0]
        runner = at.iloc[1] if len(at) > 1 else None
        random = seeds.point(main, "random", float(ratio)) if best["method"] != "random" else None
        rows.append({"ratio": f"{100 * ratio:g}%", pick: str(best["method"]),
                     "EER, mean ± 95% CI": seeds.fmt_ci(best, col), "vs full (points)": diff_cell(best, full, col),
                     "vs runner-up (points)": "-" if runner is None else
                     f"{runner['method']}: {diff_cell(best, runner, col)}",
                     "vs random (points)": diff_cell(best, random, col) if random is not None else "-"})
    if full is not None:
        rows.append({"ratio": "100%", pick: "full", "EER, mean ± 95% CI": seeds.fmt_ci(full, col),
                     "vs full (points)": "", "vs runner-up (points)": "", "vs random (points)": ""})
    return pd.DataFrame(rows)


def headline(sweep: Sweep, col: str) -> str:
    """The smallest ratio whose method comes within seeds.GOAL of full, both chosen on dev (`chooser`; without dev
    runs, on `col` itself, and the sentence says so), then that method's gap to full on `col`, with the interval
    that says how sure (or the closest ratio when none is)."""
    choose, main, full = _main_runs(sweep.groups, col)
    name = _set_name(col)
    if full is None:
        return f"No full-set run in the sweep: no data-efficiency claim on {name}."
    found, closest = None, None
    for _, row in main[(main["ratio"] < 1) & (main["method"] != "full")].sort_values(
            ["ratio", choose], kind="mergesort").iterrows():
        gap, _ = _gap(row, full, choose)
        if closest is None or gap < closest[0]:
            closest = (gap, row)
        if gap <= seeds.GOAL and found is None:
            found = (gap, row)
    if closest is None:
        return f"No sampled run in the sweep: no data-efficiency claim on {name}."
    _, row = found or closest
    gap, d = _gap(row, full, col)
    how = (f"{seeds.fmt_paired(d, tests=False)} vs full, paired by seed" if d is not None
           else f"{100 * gap:+.1f} points vs full (means; no per-seed values, so no paired interval)")
    sure = ""
    if found is not None and d is not None and np.isfinite(d.hi):
        if d.hi <= seeds.GOAL:
            sure = "; its upper bound is within the goal: shown"
        elif d.mean <= seeds.GOAL:
            sure = (f"; its upper bound {100 * d.hi:+.1f} exceeds +{100 * seeds.GOAL:g}: within the goal on average, "
                    "not shown")
        else:
            sure = f"; above the +{100 * seeds.GOAL:g} goal on {name}"
    goal = f"{100 * seeds.GOAL:g} EER points of full"
    at = f"{100 * row['ratio']:g}%"
    if choose == DEV:
        if found is None:
            return (f"No ratio comes within {goal} on dev (where methods are chosen): the closest is {row['method']} "
                    f"at {at}; on {name}: {how}.")
        return f"The smallest ratio within {goal} on dev (where methods are chosen): {at} with {row['method']}; " \
               f"on {name}: {how}{sure}."
    itself = " (chosen on that set itself: the sweep has no dev EER)"
    if found is None:
        return f"No ratio comes within {goal} on {name}{itself}: the closest is {row['method']} at {at} ({how})."
    return f"The smallest ratio within {goal} on {name}{itself}: {at} with {row['method']} ({how}{sure})."


def provenance(sweep: Sweep, head: Head | None) -> tuple[str, bool]:
    """(where the sweep comes from and its commit, whether the workspace is at another commit)."""
    n = int(sweep.groups["n_seeds"].max()) if len(sweep.groups) else 0
    text = (f"Seeded sweep: {len(sweep.groups)} points (method x ratio x variant), up to {n} seeds each, run on "
            f"commit {sweep.commit or '(unknown)'}, read from {sweep.source}.")
    if head is None or not sweep.commit:
        return text + " The workspace's commit is unknown (no git).", False
    if same_commit(head.commit, sweep.commit):
        return text + f" The workspace is at the same commit ({head.commit}).", False
    later = f", {head.since_sweep} commits later" if head.since_sweep is not None else ""
    return (text + f" The workspace is at commit {head.commit}{later}: the sweep's numbers are that commit's code "
            "and data, the Detector section's are this workspace's run; they are not mixed."), True


def _sweep_parts(sweep: Sweep, head: Head | None) -> list[str]:
    sets = summary_sets(sweep.groups)
    text, differs = provenance(sweep, head)
    parts = [f'<p class="headline">{html.esc(headline(sweep, sets[0]))}</p>',
             html.p(text, "warn" if differs else "note")]
    for col in sets:
        table = best_by_ratio(sweep.groups, col)
        if len(table):
            parts += [f"<h3>{html.esc(_set_name(col).capitalize())}: the method chosen at each ratio</h3>",
                      html.table(table, left=True)]
    parts.append(html.p("Differences are EER(best) - EER(other) in points: the mean of the per-seed differences "
                        "[95% t-interval] (pipeline.metrics.paired_difference); lower = the best method's EER is "
                        "lower. Methods and ratios are chosen on dev (the lowest mean dev EER; the runner-up is the "
                        "next) and reported on every set: a method picked on a test set would flatter it.", "note"))
    _, verdicts = seeds.headline(sweep.groups) if sweep.paired else (None, [])   # verdicts need per-seed values
    if verdicts:
        items = [html.esc(v) if "does not hold" not in v and "NOT" not in v and "HIGHER" not in v
                 else f'<span class="warn">{html.esc(v)}</span>' for v in verdicts]
        parts.append("<details><summary>Verdicts at 10% and on the variants</summary><ul>"
                     + "".join(f"<li>{i}</li>" for i in items) + "</ul></details>")
    return parts


def run_table(eer: pd.DataFrame | None) -> pd.DataFrame | None:
    """This run's set rows of eer.csv (clean): set, clips, EER [CI], minDCF, actDCF, Cllr."""
    if eer is None or eer.empty:
        return None
    rows = eer[(eer["system"] == "all") & (eer.get("condition", "clean") == "clean")]
    return pd.DataFrame({"eval set": rows["set"].astype(str),
                         "bona fide / spoof": [f"{int(b)} / {int(s)}" for b, s in zip(rows["n_bonafide"],
                                                                                       rows["n_spoof"])],
                         "EER [95% CI]": [fmt_ci_row(r) for _, r in rows.iterrows()],
                         **{k: [_num(r.get(c)) for _, r in rows.iterrows()]
                            for k, c in (("minDCF", "min_dcf"), ("actDCF", "act_dcf"), ("Cllr (bits)", "cllr"))}})


def _num(value: object) -> str:
    x = pd.to_numeric(value, errors="coerce")
    return "-" if x is None or not np.isfinite(x) else f"{float(x):.3f}"


def summary_section(set_names: list[str], audit: pd.DataFrame | None, exps: ExperimentRuns | None,
                    stale: str | None = None, metrics: dict | None = None, sweep: Sweep | None = None,
                    head: Head | None = None, eer: pd.DataFrame | None = None,
                    generators: list[str] | None = None) -> html.Section:
    """The headline with its interval, the best method per ratio and eval set, this run's numbers, the generators,
    the audit verdict and the runs compared."""
    sec = html.Section("summary", "Summary")
    if sweep is not None:
        sec.add(*_sweep_parts(sweep, head))
    else:
        sentence, verdicts = seeds.headline(None, metrics)
        sec.add(f'<p class="headline">{html.esc(sentence)}</p>')
        sec.add(html.p("No seeded sweep found (no DVC experiments, no reports/sweep_runs.csv or sweep.csv): "
                       + "; ".join(verdicts), "note"))
    sec.add("<h3>This run</h3>")
    if stale:
        sec.add(f'<p class="warn">The detector\'s numbers may not be current: {html.esc(stale)}</p>')
    table = run_table(eer)
    if table is not None:
        sec.add(html.table(table), html.p(
            "EER with its 95% bootstrap CI over clips; minDCF, actDCF (normalised, ASVspoof 5 costs: Pspoof 0.05, "
            "Cmiss 1, Cfa 10) and Cllr: the evaluate stage's numbers. actDCF and Cllr take the raw logit margin as a "
            "log-likelihood ratio: meaningful for calibrated scores only.", "note"))
    items = []
    if set_names:
        items.append("Detector EER, one table per eval set (Detector section): "
                     + ", ".join(f'<a href="#{anchor(n)}">{html.esc(n)}</a>' for n in set_names))
    else:
        items.append('<span class="na">Detector EER: not available</span>')
    items += generators or []
    if audit is not None and audit["eer"].notna().any():
        bad = (audit["status"] == "warning").any()
        items.append(f'Shortcut audit: <span class="{"warn" if bad else "ok"}">{"WARNING" if bad else "ok"}</span> '
                     f"(lowest trivial-classifier EER {100 * float(audit['eer'].min()):.2f}%)")
    if exps is not None and exps.runs is not None:
        n = exps.runs["kind"].value_counts()
        items.append(f"DVC runs with EERs: {n.get('workspace', 0)} workspace, {n.get('experiment', 0)} experiment(s), "
                     f"{n.get('baseline', 0)} distinct commit(s)")
    return sec.add("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
