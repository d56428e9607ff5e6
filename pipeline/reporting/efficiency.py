"""The Data efficiency section of reports/index.html: EER against the sampling ratio, never mixing builds.

Two views, each of ONE commit's runs:
- the seeded sweep (pipeline/reporting/sweep.py: the newest sweep's experiments, or the committed sweep files),
  named by its commit: EER vs ratio per method with the 95% CI band over seeds, the grouped table and the paired
  differences;
- every run `dvc exp show` lists (workspace, experiments, commits), each labelled with the commit whose code made
  it. Its curve draws the runs of one commit only (the workspace's, else the newest with two ratios), one line per
  (method, eval set) of that commit, so sets renamed between commits never share a line and no point is an
  average over commits; stale and other commits' runs are left out of it and listed in the table, and the
  caption says how many.
Reads nothing itself; takes the runs of pipeline/reporting/experiments.py.
"""

from __future__ import annotations

import pandas as pd

from pipeline.reporting import html, plots, seeds
from pipeline.reporting.experiments import ExperimentRuns
from pipeline.reporting.summary import summary_sets
from pipeline.reporting.sweep import Head, Sweep, same_commit

KIND_ORDER = {"workspace": 0, "experiment": 1, "baseline": 2}


def run_commits(runs: pd.DataFrame, head: Head | None) -> pd.Series:
    """The commit whose code made each run: an experiment's baseline, a commit's own rev, the workspace's HEAD."""
    base = runs["base"] if "base" in runs.columns else pd.Series(None, index=runs.index)
    head_rev = head.commit[:7] if head is not None else "workspace"
    out = []
    for kind, rev, b in zip(runs["kind"], runs["rev"], base):
        out.append(str(b)[:7] if kind == "experiment" and isinstance(b, str) else head_rev if kind == "workspace"
                   else str(rev)[:7])
    return pd.Series(out, index=runs.index, dtype=object)


def curve_commit(runs: pd.DataFrame, commits: pd.Series, usable: pd.Series, head: Head | None) -> str | None:
    """The commit whose runs the curve draws: the workspace's when it has two ratios, else the first listed that has."""
    order = list(dict.fromkeys(commits[usable]))
    if head is not None:
        order = sorted(order, key=lambda c: not same_commit(c, head.commit))
    for c in order:
        if runs.loc[usable & (commits == c), "ratio"].nunique() >= 2:
            return c
    return None


def curve_points(runs: pd.DataFrame, commits: pd.Series, usable: pd.Series, commit: str) -> pd.DataFrame:
    """One row per (method, ratio, eval set, run) of `commit`: the points of its curve, none averaged away."""
    mine = runs[usable & (commits == commit)]
    cols = [c for c in mine.columns if c.startswith("eer.") and mine[c].notna().any()]
    long = mine.melt(id_vars=["method", "ratio"], value_vars=cols, var_name="set", value_name="eer").dropna()
    return long.assign(set=long["set"].str.removeprefix("eer."))


def runs_table(runs: pd.DataFrame, commits: pd.Series, stale: bool, drawn: str | None) -> pd.DataFrame:
    """Every run: kind, commit, name, method, ratio, its EERs by set name (one cell), on the curve or not, note."""
    eer_cols = [c for c in runs.columns if c.startswith("eer")]
    eers = [", ".join(f"{c.removeprefix('eer.')} {100 * float(r[c]):.1f}" for c in eer_cols if pd.notna(r[c]))
            for _, r in runs.iterrows()]
    curve = ["STALE: left out" if stale and k == "workspace" else
             ("shown" if drawn is not None and c == drawn else "other commit: left out")
             for k, c in zip(runs["kind"], commits)]
    table = pd.DataFrame({"kind": runs["kind"], "commit": commits, "name": runs.get("name", ""),
                          "method": runs.get("method"), "ratio": runs.get("ratio"), "EER (%) by eval set": eers,
                          "curve": curve, "note": runs.get("note", "")})
    table = table.assign(_k=table["kind"].map(KIND_ORDER)).sort_values(["_k", "method", "ratio"],
                                                                        na_position="last", kind="mergesort")
    return table.drop(columns="_k")


def _sweep_parts(sec: html.Section, sweep: Sweep) -> None:
    groups = sweep.groups
    sets = summary_sets(groups)
    sec.add(f"<h3>Seeded sweep of commit {html.esc(sweep.commit or '(unknown)')}</h3>",
            html.p(f"Read from {sweep.source}. Mean and 95% CI over seeds per (method, ratio, other changed params); a "
                   "one-seed point shows its bootstrap CI over clips instead, and is marked as such. Every eval set "
                   "of the sweep: reports/sweep.csv.", "note"))
    if groups["ratio"].nunique() >= 2:
        sec.add(html.image(plots.seeds_curve(groups, sets), "EER vs ratio, mean and CI",
                           f"Commit {sweep.commit}: mean over seeds with a 95% CI band; x: sample.ratio (log "
                           "scale); n = seeds."))
    table = seeds.groups_table(groups)
    keep = ["method", "ratio", "variant", "n_seeds"] + [c.removeprefix("eer.") + " EER (mean ± CI)" for c in sets]
    sec.add(html.table(table[[c for c in keep if c in table.columns]]))
    if sweep.paired:
        sec.add(html.p("Paired by seed: EER(method) - EER(reference) in points, mean of the per-seed differences "
                       "[95% t-interval] (sign and Wilcoxon p); the summary reads these.", "note"),
                html.table(seeds.paired_display(groups)))
    elif sweep.pairs is not None and len(sweep.pairs):
        sec.add(html.p("Paired by seed, as reports/sweep_paired.csv recorded it: EER(method) - EER(reference) in "
                       "points, mean of the per-seed differences [95% t-interval]; the summary reads these.", "note"),
                html.table(recorded_display(sweep.pairs, sets)))
    else:
        sec.add(html.p(f"{sweep.source} has no per-seed values: no paired interval (re-run "
                       "python -m pipeline.reporting.sweep_export where the experiments are, which writes "
                       "reports/sweep_paired.csv and sweep_runs.csv).", "note"))


def recorded_display(pairs: pd.DataFrame, sets: list[str]) -> pd.DataFrame:
    """sweep_paired.csv as the report shows paired differences: method, ratio, variant, vs, a cell per shown set."""
    names = [c.removeprefix("eer.") for c in sets]
    rows = []
    for (method, ratio, variant, ref), g in pairs.groupby(["method", "ratio", "variant", "reference"], sort=False):
        cells = {r["set"]: ("-" if not pd.notna(r["diff_mean"]) else
                            f"{r['diff_mean']:+.1f} [{r['diff_lo']:+.1f}, {r['diff_hi']:+.1f}] "
                            f"({int(r['n_pairs'])} seeds): {r.get('verdict', '')}") for _, r in g.iterrows()}
        rows.append({"method": method, "ratio": ratio, "variant": variant, "vs": ref,
                     **{name: cells.get(name, "-") for name in names}})
    return pd.DataFrame(rows)


def experiments_section(exps: ExperimentRuns | None, sweep: Sweep | None = None,
                        head: Head | None = None) -> html.Section:
    """The sweep of one commit with its CI bands, then every run labelled by commit and its one-commit curve."""
    sec = html.Section("experiments", "Data efficiency (DVC experiments)")
    sec.add(html.p("scripts/sweep.sh queues the seeded sweep (methods x ratios x seeds) and re-runs this report; "
                   "commit its reports/sweep*.csv and sweep.md. Runs of different commits are never pooled.", "note"))
    if sweep is not None:
        _sweep_parts(sec, sweep)
    sec.add("<h3>Every run</h3>")
    if exps is None:
        return sec.add(html.not_available("experiments (disabled in params: report.experiments)"))
    if exps.skipped:
        sec.add(html.p("not shown: " + ", ".join(f"{n} {s}" for s, n in sorted(exps.skipped.items())), "note"))
    if exps.runs is None:
        return sec.add(html.not_available(f"DVC experiments ({exps.reason})"))
    runs = exps.runs
    stale = exps.freshness is not None and exps.freshness.state == "stale"
    is_ws = runs["kind"] == "workspace"
    if stale and is_ws.any():
        sec.add(html.p(f"The workspace's metrics are older than their inputs ({exps.freshness.detail}): its row "
                       "is not the current result and is left out of the curve.", "warn"))
    commits = run_commits(runs, head)
    usable = ~(is_ws & stale) & runs["ratio"].notna() & runs["method"].notna()
    drawn = curve_commit(runs, commits, usable, head)
    if drawn is not None:
        points = curve_points(runs, commits, usable, drawn)
        left = int(len(runs) - (usable & (commits == drawn)).sum())
        sec.add(html.image(plots.sweep_curve(points, drawn), "EER vs sampling ratio",
                           f"Runs of commit {drawn} only: one line per (method, eval set), every run a point, the "
                           f"line through the mean of a ratio's runs; {html.count(left, 'run')} of other commits or "
                           "stale left out (table)."))
    elif sweep is None:
        sec.add(html.p(f"{html.count(len(runs), 'run')} with EER metrics: the curve needs two sampling ratios from "
                       "one commit.", "note"))
    return sec.add(html.table(runs_table(runs, commits, stale, drawn), left=True))
