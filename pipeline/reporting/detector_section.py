"""The Detector section of reports/index.html: one table per eval set (its EER with the bootstrap CI, minDCF, actDCF,
Cllr; then each attack system), DET curves per eval set and per paradigm, score histograms per paradigm.

Every number comes from the evaluate stage's files (reports/eer.csv, reports/plots/det.csv, metrics.json, the
scores); nothing is recomputed from scores here, so the page and `dvc metrics show` cannot disagree. Each EER is
shown once in this section: a row that repeats one already shown (a paradigm_<P> or leave_out_<P> set holds the
test set's bona fide clips and the test spoofs of P) becomes a link to the table that shows it. Systems are
ranked by EER, hardest first; a system with fewer spoof clips than `evaluate.min_system_clips` (metrics.json
`min_system_clips`, default 20) is shown greyed at the end with its count, and left out of the ranking and the bars.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.reporting import html, plots
from pipeline.reporting.detplot import det_figure, score_histograms

ALL = "all"
ROW_KEY = ["system", "paradigm", "n_bonafide", "n_spoof", "eer", "threshold"]
MIN_SYSTEM_CLIPS = 20          # evaluate.min_system_clips' default, for a metrics.json that does not record it
SCORE_COLUMNS = (("minDCF", "min_dcf"), ("actDCF", "act_dcf"), ("Cllr", "cllr"))


def anchor(set_name: str) -> str:
    """The HTML id of an eval set's table."""
    return "eer-" + re.sub(r"[^A-Za-z0-9_.-]", "_", str(set_name))


def fmt_eer(value: float) -> str:
    """An EER fraction as the page writes it (a percentage with two decimals)."""
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * float(value):.2f}%"


def fmt_ci_row(row: pd.Series | dict) -> str:
    """'44.89% [40.33, 48.21]': an eer.csv row's EER with its 95% bootstrap CI (the EER alone without one)."""
    lo, hi = (pd.to_numeric(row.get(k), errors="coerce") for k in ("eer_lo", "eer_hi"))
    ci = f" [{100 * lo:.2f}, {100 * hi:.2f}]" if np.isfinite(lo) and np.isfinite(hi) else ""
    return fmt_eer(float(row["eer"])) + ci


def min_system_clips(metrics: Any) -> int:
    """The evaluate stage's evaluate.min_system_clips as recorded in metrics.json (else its default)."""
    value = metrics.get("min_system_clips") if isinstance(metrics, dict) else None
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else MIN_SYSTEM_CLIPS


def ranked(rows: pd.DataFrame, min_clips: int) -> pd.Series:
    """Which per-system rows are ranked: those with at least `min_clips` spoof clips."""
    return rows["n_spoof"].astype(int) >= min_clips


@dataclass
class SetTable:
    """One eval set's rows as shown: the set's own row, its attack systems, and rows shown elsewhere."""

    name: str
    overall: pd.Series | None
    systems: pd.DataFrame
    same_as: dict[str, list[str]] = field(default_factory=dict)   # other set -> systems shown there
    whole_set_as: str | None = None                               # every row equals this set's rows


def set_tables(eer: pd.DataFrame) -> list[SetTable]:
    """Split eer.csv into one table per eval set (in file order), replacing repeated rows by references."""
    seen: dict[tuple, str] = {}
    out = []
    for name, rows in eer.groupby("set", sort=False):
        name = str(name)
        own = rows[rows["system"] == ALL]
        overall = own.iloc[0] if len(own) else None
        systems = rows[rows["system"] != ALL]
        keys = [tuple(r) for r in systems[ROW_KEY].itertuples(index=False)]
        table = SetTable(name, overall, systems.iloc[0:0])
        all_key = None if overall is None else ("*", *tuple(overall[ROW_KEY])[1:])
        if all_key is not None and all_key in seen and all(k in seen for k in keys):
            table.whole_set_as = seen[all_key]
        else:
            fresh = [k not in seen for k in keys]
            table.systems = systems[np.asarray(fresh, dtype=bool)]
            for k, is_new in zip(keys, fresh):
                if not is_new:
                    table.same_as.setdefault(seen[k], []).append(str(k[0]))
        for k in keys:
            seen.setdefault(k, name)
        if all_key is not None:
            seen.setdefault(all_key, name)
        out.append(table)
    return out


def _shown(table: SetTable, min_clips: int) -> tuple[pd.DataFrame, list[str | None]]:
    """The set's rows as shown (overall, ranked systems hardest first, then the small ones) and each row's class."""
    systems = table.systems.assign(_eer=table.systems["eer"].astype(float))
    big = ranked(systems, min_clips)
    ordered = [systems[big].sort_values(["_eer", "system"], ascending=[False, True], kind="mergesort"),
               systems[~big].sort_values("system", kind="mergesort")]
    rows = [] if table.overall is None else [table.overall.to_frame().T.assign(system="all systems")]
    df = pd.concat(rows + ordered, ignore_index=True)
    small = [False] * len(rows) + [False] * int(big.sum()) + [True] * int((~big).sum())
    eer = [fmt_ci_row(r) + (f" (n = {int(r['n_spoof'])} < {min_clips}: not ranked)" if s else "")
           for (_, r), s in zip(df.iterrows(), small)]
    shown = pd.DataFrame({"system": df["system"].astype(str), "paradigm": df["paradigm"].astype(str),
                          "bona fide": df["n_bonafide"].astype(int), "spoof": df["n_spoof"].astype(int),
                          "EER [95% CI]": eer})
    for label, col in SCORE_COLUMNS:
        shown[label] = pd.to_numeric(df[col], errors="coerce") if col in df.columns else np.nan
    shown["threshold"] = df["threshold"].astype(float)
    return shown, ["small" if s else None for s in small]


def _link(set_name: str) -> str:
    return f'<a href="#{anchor(set_name)}">{html.esc(set_name)}</a>'


def _mismatch(metrics: Any, eer: pd.DataFrame) -> list[str]:
    """Sets whose EER in metrics.json differs from eer.csv (files written by different runs)."""
    if not isinstance(metrics, dict) or not isinstance(metrics.get("eer"), dict):
        return []
    csv = eer[eer["system"] == ALL].set_index("set")["eer"]
    return [s for s, v in metrics["eer"].items()
            if isinstance(v, (int, float)) and (s not in csv.index or abs(float(csv[s]) - float(v)) > 5e-7)]


def condition_table(eer: pd.DataFrame) -> pd.DataFrame | None:
    """EER of each eval set (rows) under each condition (columns, `clean` first), or None without conditions."""
    if "condition" not in eer.columns or set(eer["condition"]) <= {"clean"}:
        return None
    whole = eer[eer["system"] == ALL]
    order = ["clean", *[c for c in dict.fromkeys(whole["condition"]) if c != "clean"]]
    table = whole.pivot_table(index="set", columns="condition", values="eer", sort=False)[order]
    out = table.map(fmt_eer)
    out.insert(0, "eval set", out.index.astype(str))
    return out.reset_index(drop=True)


def detector_section(eer: pd.DataFrame | None, det: pd.DataFrame | None, metrics: Any,
                     stale: str | None = None, scores: dict[str, pd.DataFrame] | None = None,
                     clips: pd.DataFrame | None = None) -> html.Section:
    """The tables (reports/eer.csv), the per-system bars, the DET curves (reports/plots/det.csv) and, with the
    scores and clip tables, the score histograms per paradigm."""
    sec = html.Section("detector", "Detector")
    sec.add(html.p("All numbers are read from the evaluate stage's reports/eer.csv and reports/plots/det.csv "
                   "(nothing is recomputed here). One table per eval set: its bona fide clips against all its "
                   "spoofs (all systems), then against the spoofs of each attack system, hardest first; a row that "
                   "another table already shows is linked, not repeated. EER with its 95% bootstrap CI over clips; "
                   "minDCF and actDCF normalised (ASVspoof 5 costs), Cllr in bits (actDCF and Cllr read the raw "
                   "logit margin as an LLR: meaningful for calibrated scores only).", "note"))
    if stale:
        sec.add(html.p(f"These numbers may not be current: {stale}", "warn"))
    if eer is None:
        if isinstance(metrics, dict) and isinstance(metrics.get("eer"), dict):
            sec.add(html.p("reports/eer.csv not available: set EERs from reports/metrics.json only.", "warn"),
                    html.table(pd.DataFrame({"set": list(metrics["eer"]),
                                             "EER": [fmt_eer(v) for v in metrics["eer"].values()]})))
        else:
            sec.add(html.not_available("reports/metrics.json and reports/eer.csv"))
        return sec
    by_condition = condition_table(eer)
    eer = eer[eer["condition"] == "clean"] if "condition" in eer.columns else eer
    bad = _mismatch(metrics, eer)
    if bad:
        sec.add(html.p(f"reports/metrics.json and reports/eer.csv disagree for {', '.join(bad)}: they come from "
                       "different runs of evaluate; re-run it.", "warn"))
    if isinstance(metrics, dict) and metrics.get("n_rejected"):
        sec.add(html.p(f"{metrics['n_rejected']} eval clips could not be scored and are left out.", "note"))
    min_clips = min_system_clips(metrics)
    tables = set_tables(eer)
    _set_parts(sec, tables, metrics, min_clips)
    if by_condition is not None:
        sec.add("<h3>Channel conditions</h3>",
                html.p("Every eval clip, bona fide and spoof alike, scored again after each channel's round trip "
                       "(evaluate.conditions): EER per eval set (rows) and condition (columns).", "note"),
                html.table(by_condition))
    bars = pd.concat([t.systems for t in tables]) if tables else pd.DataFrame()
    if len(bars):
        bars = bars[ranked(bars, min_clips)]
    if len(bars):
        values = bars.set_index(bars["set"].astype(str) + " / " + bars["system"].astype(str))["eer"].astype(float)
        sec.add(html.image(plots.eer_bars(values, "EER per eval set / attack system"), "EER per attack system",
                           f"Systems with at least {min_clips} spoof clips."))
    _figures(sec, eer, det, scores, clips)
    return sec


def _set_parts(sec: html.Section, tables: list[SetTable], metrics: Any, min_clips: int) -> None:
    seen = metrics.get("paradigm_seen") if isinstance(metrics, dict) else None
    for t in tables:
        sec.add(f'<h3 id="{anchor(t.name)}">Eval set {html.esc(t.name)}</h3>')
        paradigm = t.name.removeprefix("leave_out_").removeprefix("paradigm_")
        if isinstance(seen, dict) and paradigm in seen and paradigm != t.name:
            was = {True: "was", False: "was NOT", None: "may have been"}.get(seen[paradigm], "may have been")
            sec.add(html.p(f"Paradigm {paradigm} {was} in the detector's training data.", "note"))
        if t.whole_set_as is not None:
            sec.add(f'<p class="note">The same clips and EERs as {_link(t.whole_set_as)}.</p>')
            continue
        shown, classes = _shown(t, min_clips)
        sec.add(html.table(shown, row_classes=classes))
        for other, systems in t.same_as.items():
            sec.add(f'<p class="note">{html.esc(", ".join(systems))}: the same bona fide and spoof clips as in '
                    f"{_link(other)}; the EER is shown there.</p>")


def _is_paradigm_set(name: str) -> bool:
    return name.startswith(("paradigm_", "leave_out_"))


def _figures(sec: html.Section, eer: pd.DataFrame, det: pd.DataFrame | None, scores: dict[str, pd.DataFrame] | None,
             clips: pd.DataFrame | None) -> None:
    """DET curves by eval set and by paradigm (det.csv), score histograms per paradigm (the scores)."""
    if det is None or det.empty:
        sec.add(html.not_available("DET points reports/plots/det.csv"))
    else:
        curves = {str(n): (g["far"].to_numpy(float), g["frr"].to_numpy(float))
                  for n, g in det.groupby("set", sort=False)}
        eers = {str(r.set): float(r.eer) for r in eer[eer["system"] == ALL].itertuples()}
        sets = {k: v for k, v in curves.items() if not _is_paradigm_set(k)}
        paradigms = {k.removeprefix("paradigm_"): v for k, v in curves.items() if _is_paradigm_set(k)}
        para_eers = {k.removeprefix("paradigm_"): v for k, v in eers.items() if _is_paradigm_set(k)}
        for what, group, group_eers in (("eval set", sets, eers), ("paradigm", paradigms, para_eers)):
            if group:
                fig = det_figure(group, group_eers, title=f"DET curves by {what}")
                sec.add(html.image(plots.to_data_uri(fig), f"DET curves by {what}",
                                   f"DET curves of the detector by {what} (normal-deviate axes), from "
                                   "reports/plots/det.csv; a paradigm's curve: the test bona fide against its "
                                   "test spoofs (leave_out_<P>: P was not trained on)."))
    by_paradigm = paradigm_scores(scores, clips)
    if by_paradigm:
        eers = {k.removeprefix("paradigm_").removeprefix("leave_out_"): float(r)
                for k, r in eer[eer["system"] == ALL].set_index("set")["eer"].items() if _is_paradigm_set(str(k))}
        sec.add(html.image(plots.to_data_uri(score_histograms(by_paradigm, eers)), "Score histograms per paradigm",
                           "Scores of the test bona fide (every panel) and of each paradigm's spoofs in the eval "
                           "sets (reports/scores/*.txt); higher = more bona fide."))


def paradigm_scores(scores: dict[str, pd.DataFrame] | None, clips: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    """{paradigm: rows (score, label)}: the bona fide clips of the clean score files with each paradigm's spoofs.

    A clip scored in several sets has one score (evaluate scores each clip once), so the union is taken by clip."""
    if not scores or clips is None:
        return {}
    clean = [df for name, df in scores.items() if "." not in name]
    if not clean:
        return {}
    scored = pd.concat(clean).drop_duplicates("clip_id")
    rows = scored.merge(clips[["clip_id", "label", "paradigm"]].drop_duplicates("clip_id"), on="clip_id")
    bona = rows[rows["label"] == "bonafide"]
    spoof = rows[rows["label"] == "spoof"]
    return {str(p): pd.concat([bona, g]) for p, g in spoof.groupby("paradigm", sort=True)} if len(bona) else {}
