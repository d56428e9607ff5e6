"""The sections of reports/index.html, one function each: data in, `html.Section` out.

Here: summary, data, reconstruction, teachers, shortcut audit, data efficiency; the larger sections have a
module each (`sampling_section`, `detector_section`).

Each builder takes already-loaded inputs (or None when absent) and says "not available" rather than
failing when something is missing. Reads no file itself except through `pipeline.reporting.inputs`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from pipeline.params import Section, flag, number
from pipeline.reporting import html, plots, seeds
from pipeline.reporting.detector_section import anchor
from pipeline.reporting.experiments import ExperimentRuns

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportParams(Section):
    """The `report` params section."""

    NAME: ClassVar[str] = "report"
    pca_points: int = 3000
    pca_normalize: bool = True
    experiments: bool = True
    experiments_timeout_s: float = 120.0

    def check(self) -> None:
        number("report.pca_points", self.pca_points, low=1, integer=True)
        number("report.experiments_timeout_s", self.experiments_timeout_s, low=0, low_open=True)
        flag("report.pca_normalize", self.pca_normalize)
        flag("report.experiments", self.experiments)


def pct(x: float) -> str:
    """A fraction as a percentage string."""
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.2f}%"


# ---------------------------------------------------------------- data


def data_section(clips: pd.DataFrame | None, missing_tables: list[Path], rejects: pd.DataFrame | None) -> html.Section:
    """Counts by split, class, corpus, paradigm and system; hours; the rejects table."""
    sec = html.Section("data", "Data")
    if missing_tables:
        sec.add(html.p("clip tables not found (left out): " + ", ".join(str(p) for p in missing_tables), "note"))
    if clips is None or clips.empty:
        sec.add(html.not_available("clip tables"))
    else:
        sec.add(html.p(f"{len(clips)} clips, {clips['duration_s'].sum() / 3600:.2f} h, "
                       f"{clips['speaker'].nunique()} speakers, {clips['corpus'].nunique()} corpora."))
        by_split = pd.crosstab(clips["split"], clips["label"], margins=True, margins_name="total")
        hours = clips.groupby("split")["duration_s"].sum() / 3600
        by_split["hours"] = hours.reindex(by_split.index).fillna(clips["duration_s"].sum() / 3600)
        sec.add("<h3>By split and class</h3>", html.table(by_split.reset_index(), float_digits=3))
        sec.add("<h3>By corpus and class</h3>",
                html.table(pd.crosstab(clips["corpus"], clips["label"], margins=True, margins_name="total")
                           .reset_index()))
        sec.add("<h3>By paradigm and split</h3>",
                html.table(pd.crosstab(clips["paradigm"], clips["split"], margins=True, margins_name="total")
                           .reset_index()))
        by_system = pd.crosstab([clips["paradigm"], clips["system"]], clips["split"], margins=True,
                                margins_name="total")
        sec.add("<h3>By system and split</h3>", html.table(by_system.reset_index()))
    sec.add("<h3>Rejects</h3>")
    if rejects is None:
        sec.add(html.not_available("rejects table"))
    elif rejects.empty:
        sec.add(html.p("no clip was rejected."))
    else:
        counts = rejects.groupby(["stage", "corpus", "reason"], dropna=False).size().rename("n").reset_index()
        sec.add(html.p(f"{len(rejects)} clips rejected."), html.table(counts.sort_values("n", ascending=False)),
                "<h3>First rejects</h3>", html.table(rejects.head(20)))
    return sec


# ---------------------------------------------------------------- reconstruction, teachers


def reconstruction_section(recon: pd.DataFrame | None) -> html.Section:
    """The reconstruction quality table (log-mel distance, SNR, real-time factor per system)."""
    sec = html.Section("reconstruction", "Reconstruction quality")
    if recon is None or recon.empty:
        return sec.add(html.not_available("reports/reconstruction/*.json"))
    sec.add(html.p("Copy-synthesis of bona fide clips: a small log-mel distance and a high SNR mean a hard fake "
                   "(close to its parent); rtf = processing time / audio duration.", "note"))
    return sec.add(html.table(recon.sort_values(["paradigm", "system"])))


def teachers_section(teachers: pd.DataFrame | None) -> html.Section:
    """Teachers with their dev EER."""
    sec = html.Section("teachers", "Teachers")
    if teachers is None or teachers.empty:
        return sec.add(html.not_available("data/teachers/*/metrics.json"))
    shown = teachers.copy()
    if "dev_eer" in shown.columns:
        shown.insert(shown.columns.get_loc("dev_eer") + 1, "dev EER (%)",
                     100 * pd.to_numeric(shown["dev_eer"], errors="coerce"))
    return sec.add(html.table(shown))


# ---------------------------------------------------------------- audit


def audit_summary(audit: dict | None) -> pd.DataFrame | None:
    """reports/audit.json's per-set summaries as a table (set, EERs, the best single feature, status)."""
    if not isinstance(audit, dict) or not isinstance(audit.get("audit"), dict):
        return None
    rows = [{"set": name, **s} for name, s in audit["audit"].items() if isinstance(s, dict)]
    cols = ["set", "n_bonafide", "n_spoof", "eer", "eer_no_duration", "worst_feature", "worst_feature_eer", "status"]
    df = pd.DataFrame(rows)
    for c in cols:
        if c not in df.columns:
            df[c] = np.nan
    return df[cols]


def audit_section(audit: dict | None, hardness: pd.DataFrame | None) -> tuple[html.Section, pd.DataFrame | None]:
    """The shortcut audit (reports/audit.json, written by the audit stage) and generator hardness (hardness.csv)."""
    sec = html.Section("audit", "Shortcut audit and generator hardness")
    result = audit_summary(audit)
    if result is None:
        return sec.add(html.not_available("reports/audit.json (the audit stage)")), None
    min_eer = float(audit.get("min_eer", 0.35))
    features = ", ".join(audit.get("features") or [])
    sec.add(html.p(f"EER of trivial classifiers (logistic regression, a depth-2 gradient-boosted tree) that see only "
                   f"({features}), out of fold with speaker-disjoint folds; per split and paradigm, and per "
                   f"attack-only eval set. Near 50% is healthy; below {100 * min_eer:.0f}% (audit.min_eer) the "
                   "classes differ in these clip properties and a detector can score by them instead of the "
                   "generator's artefacts. `no duration`: the same without duration, which fixed-length crops hide; "
                   "the best single feature names what separates most on its own.", "note"))
    warn = result[result["status"] == "warning"]
    if len(warn):
        worst = warn.loc[warn["eer"].astype(float).idxmin()]
        sec.add(html.p(f"WARNING: shortcut found. {worst['set']} is separated from clip properties alone with EER "
                       f"{pct(float(worst['eer']))}; {worst['worst_feature']} alone gives "
                       f"{pct(float(worst['worst_feature_eer']))}.", "warn"))
    elif result["eer"].notna().any():
        sec.add(html.p(f"No shortcut found: lowest audit EER {pct(float(result['eer'].min()))}.", "ok"))
    shown = result.assign(**{c: [pct(v) if isinstance(v, float) else v for v in result[c]]
                             for c in ("eer", "eer_no_duration", "worst_feature_eer")})
    table = html.table(shown).replace("<td>warning</td>", '<td class="warn">warning</td>')
    sec.add(table)
    if hardness is not None and len(hardness):
        pivot = hardness.pivot_table(index=["system", "paradigm"], columns="model", values="eer", sort=True)
        shown = pivot.map(pct).reset_index()
        sec.add("<h3>Generator hardness</h3>",
                html.p("EER of a reference detector (audit.reference) or, without one, of each teacher, per spoof "
                       "system on the test and attack-only eval clips against the test bona fide: the generators a "
                       "detector misses have a high EER (reports/hardness.csv).", "note"),
                html.table(shown))
    return sec, result


# ---------------------------------------------------------------- experiments


KIND_ORDER = {"workspace": 0, "experiment": 1, "baseline": 2}
OBJECT_COLUMNS = ("params", "ci", "base")   # read by the seed grouping, not shown per run


def experiments_section(exps: ExperimentRuns | None, own_eers: dict[str, float] | None = None) -> html.Section:
    """EER against sampling ratio and method: the workspace run, each experiment and each distinct commit.

    `own_eers` are the EERs this report shows in its Detector section: a workspace row with the same numbers
    links there instead of repeating them. A stale workspace row is labelled and left out of the curve.
    """
    sec = html.Section("experiments", "Data efficiency (DVC experiments)")
    sec.add(html.p("Queue the sweep with scripts/sweep.sh (methods nc, random, kcenter x ratios 0.05-0.25, and full, "
                   "5 seeds each); it re-runs this "
                   "report when the experiments are done. Rows: the workspace (what the last run left in the "
                   "metrics file), each finished experiment, and each git commit with its own committed numbers "
                   "(commits that only carry an earlier commit's numbers are folded into it).", "note"))
    if exps is None:
        return sec.add(html.not_available("experiments (disabled in params: report.experiments)"))
    if exps.skipped:
        sec.add(html.p("not shown: " + ", ".join(f"{n} {s}" for s, n in sorted(exps.skipped.items())), "note"))
    if exps.runs is None:
        return sec.add(html.not_available(f"DVC experiments ({exps.reason})"))
    runs = exps.runs
    eer_cols = [c for c in runs.columns if c.startswith("eer")]
    stale = exps.freshness is not None and exps.freshness.state == "stale"
    is_ws = runs["kind"] == "workspace"
    if stale and is_ws.any():
        sec.add(html.p(f"The workspace's metrics are older than their inputs ({exps.freshness.detail}): its row "
                       "is not the current result and is left out of the curve.", "warn"))
    usable = runs[~(is_ws & stale)].dropna(subset=["ratio"])
    usable = usable[usable["method"].notna()]
    groups = seeds.group_runs(usable)
    if groups is not None and groups["n_seeds"].max() > 1:
        sec.add(html.p("Grouped over seeds (the newest sweep's experiments): mean and 95% CI over seeds per "
                       "(method, ratio, other changed params); a one-seed point shows its bootstrap CI over "
                       "clips instead, and is marked as such.", "note"))
        if groups["ratio"].nunique() >= 2:
            sec.add(html.image(plots.seeds_curve(groups, seeds.shown_sets(groups)), "EER vs ratio, mean and CI",
                               "Mean over seeds with a 95% CI band; x: sample.ratio (log scale); n = seeds."))
        sec.add(html.table(seeds.groups_table(groups)))
        sec.add(html.p("Paired by seed: EER(method) - EER(reference) in points, mean of the per-seed differences "
                       "[95% t-interval] (sign and Wilcoxon p); the verdicts in the summary read these.", "note"))
        sec.add(html.table(seeds.paired_display(groups)))
        sec.add(html.p("Every run:", "note"))
    elif usable["ratio"].nunique() >= 2:
        sec.add(html.image(plots.sweep_curve(usable, eer_cols), "EER vs sampling ratio",
                           "One line per (method, eval set); x: sample.ratio (log scale)."))
    else:
        sec.add(html.p(f"{len(runs)} run(s) with EER metrics: the curve needs at least two sampling ratios.", "note"))
    shown = runs.drop(columns=[c for c in OBJECT_COLUMNS if c in runs.columns])
    for c in eer_cols:
        shown[c] = 100 * shown[c]
    if own_eers and is_ws.any():
        i = runs.index[is_ws][0]
        if all(abs(float(runs.at[i, k]) - v) < 5e-7 for k, v in own_eers.items() if k in runs.columns):
            shown.loc[i, eer_cols] = np.nan
            shown.at[i, "note"] = f"{shown.at[i, 'note']}; this report's run: its EERs are in the Detector section"
    shown = shown.assign(_k=shown["kind"].map(KIND_ORDER)).sort_values(["_k", "method", "ratio"], na_position="last")
    shown = shown.drop(columns="_k").rename(columns={c: f"{c} (%)" for c in eer_cols})
    first = [c for c in ("kind", "name", "rev", "method", "ratio") if c in shown.columns]
    return sec.add(html.table(shown[first + [c for c in shown.columns if c not in first]]))


# ---------------------------------------------------------------- summary


def summary_section(set_names: list[str], audit: pd.DataFrame | None, exps: ExperimentRuns | None,
                    stale: str | None = None, metrics: dict | None = None) -> html.Section:
    """The headline: the result in one sentence with CIs and plain verdicts, links to the detector's EER
    tables, the audit verdict, the runs compared."""
    sec = html.Section("summary", "Summary")
    fresh = exps is not None and exps.runs is not None and not (exps.freshness and exps.freshness.state == "stale")
    sentence, verdicts = seeds.headline(seeds.group_runs(exps.runs) if fresh else None, metrics)
    sec.add(f'<p class="headline">{html.esc(sentence)}</p>')
    items = [html.esc(v) if "does not hold" not in v and "NOT" not in v and "HIGHER" not in v
             else f'<span class="warn">{html.esc(v)}</span>' for v in verdicts]
    if set_names:
        links = ", ".join(f'<a href="#{anchor(n)}">{html.esc(n)}</a>' for n in set_names)
        items.append(f"Detector EER, one table per eval set (Detector section): {links}")
    else:
        items.append('<span class="na">Detector EER: not available</span>')
    if stale:
        items.append(f'<span class="warn">The detector\'s numbers may not be current: {html.esc(stale)}</span>')
    if audit is not None and audit["eer"].notna().any():
        lo = audit["eer"].min()
        bad = (audit["status"] == "warning").any()
        cls = "warn" if bad else "ok"
        items.append(f'Shortcut audit: <span class="{cls}">{"WARNING" if bad else "ok"}</span> '
                     f"(lowest trivial-classifier EER {pct(lo)})")
    if exps is not None and exps.runs is not None:
        n = exps.runs["kind"].value_counts()
        items.append(f"DVC runs with EERs: {n.get('workspace', 0)} workspace, {n.get('experiment', 0)} experiment(s), "
                     f"{n.get('baseline', 0)} distinct commit(s)")
    return sec.add("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
