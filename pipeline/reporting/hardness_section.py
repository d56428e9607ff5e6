"""The Generator hardness section of reports/index.html: one row per spoof system, everything that says how hard it is.

Joins, per system, numbers other stages wrote (nothing is recomputed here):
- reconstruction distance to the parent: log-mel distance of reports/reconstruction/<paradigm>.json (per system;
  reconstructions only: a TTS or corpus fake has no parent to be distant from);
- nuisance-audit EER: reports/audit.json `by_system` (per system: the test bona fide against that system's clips,
  seen only through duration, silences, band, level, noise floor and tilt); without it, the paradigm's set
  (`test/<paradigm>`), marked as such;
- reference-model EER: reports/hardness.csv (per system; audit.reference, or each teacher);
- the trained detector's EER with its 95% bootstrap CI: reports/eer.csv (per system, in the first eval set that
  holds it), and the spoof count.
Reading: a system is harder (easier) than average when its detector EER's CI lies above (below) the pooled EER;
"easy for the wrong reason" when the nuisance audit separates it (audit EER below audit.min_eer) and the detector
does not find it harder than average. Systems with fewer spoof clips than evaluate.min_system_clips are greyed
and not read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.reporting import html
from pipeline.reporting.detector_section import ALL, fmt_ci_row, fmt_eer, min_system_clips


def detector_rows(eer: pd.DataFrame | None) -> pd.DataFrame:
    """Per spoof system, its eer.csv row (clean condition) in the first set that holds it (not pooled, not dev)."""
    if eer is None or eer.empty:
        return pd.DataFrame(columns=["set", "system", "paradigm", "n_spoof", "eer", "eer_lo", "eer_hi"])
    rows = eer[(eer["system"] != ALL) & ~eer["set"].isin(["pooled", "dev"])]
    if "condition" in rows.columns:
        rows = rows[rows["condition"] == "clean"]
    return rows.drop_duplicates("system").set_index("system", drop=False)


def _audit_cell(system: str, paradigm: str, audit: dict | None) -> tuple[float, str]:
    """(audit EER, how it was measured) for a system: its own row, else its paradigm's test set."""
    if not isinstance(audit, dict):
        return np.nan, ""
    own = (audit.get("by_system") or {}).get(system)
    if isinstance(own, dict) and isinstance(own.get("eer"), (int, float)):
        return float(own["eer"]), "system"
    for name in (f"test/{paradigm}", f"train/{paradigm}"):
        s = (audit.get("audit") or {}).get(name)
        if isinstance(s, dict) and isinstance(s.get("eer"), (int, float)):
            return float(s["eer"]), f"paradigm, {name}"
    return np.nan, ""


def hardness_table(eer: pd.DataFrame | None, recon: pd.DataFrame | None, audit: dict | None,
                   reference: pd.DataFrame | None, metrics: Any) -> tuple[pd.DataFrame, list[str | None], pd.DataFrame]:
    """(the shown table, row classes, the numbers behind it: system, paradigm, n, eer, lo, hi, audit_eer, reading)."""
    det = detector_rows(eer)
    systems = list(det.index)
    for frame in (reference, recon):
        if frame is not None and "system" in frame.columns:
            systems += [s for s in frame["system"].astype(str) if s not in systems]
    if not systems:
        return pd.DataFrame(), [], pd.DataFrame()
    distance = {} if recon is None or "logmel_distance" not in recon.columns else \
        recon.drop_duplicates("system").set_index("system")["logmel_distance"].to_dict()
    paradigm_of = {} if recon is None else recon.drop_duplicates("system").set_index("system")["paradigm"].to_dict()
    if reference is not None and len(reference):
        paradigm_of.update({s: p for s, p in zip(reference["system"], reference.get("paradigm", ""))})
    models = [] if reference is None or reference.empty else list(dict.fromkeys(reference["model"].astype(str)))
    pooled = _pooled(eer)
    min_eer = float(audit.get("min_eer", 0.35)) if isinstance(audit, dict) else 0.35
    min_clips = min_system_clips(metrics)
    facts = []
    for system in systems:
        row = det.loc[system] if system in det.index else None
        paradigm = str(row["paradigm"]) if row is not None else str(paradigm_of.get(system, ""))
        audit_eer, how = _audit_cell(system, paradigm, audit)
        n = int(row["n_spoof"]) if row is not None else _ref_count(reference, system)
        facts.append({"system": system, "paradigm": paradigm, "n": n, "set": "" if row is None else row["set"],
                      "eer": np.nan if row is None else float(row["eer"]),
                      "lo": np.nan if row is None else float(pd.to_numeric(row.get("eer_lo"), errors="coerce")),
                      "hi": np.nan if row is None else float(pd.to_numeric(row.get("eer_hi"), errors="coerce")),
                      "audit_eer": audit_eer, "audit_how": how, "distance": distance.get(system, np.nan),
                      **{f"ref:{m}": _ref_eer(reference, m, system) for m in models}})
    facts = pd.DataFrame(facts)
    facts["ranked"] = facts["n"] >= min_clips
    facts["reading"] = [reading(r, pooled, min_eer, min_clips) for _, r in facts.iterrows()]
    facts = facts.sort_values(["ranked", "eer", "system"], ascending=[False, False, True], kind="mergesort",
                              na_position="last").reset_index(drop=True)
    shown = pd.DataFrame({
        "system": facts["system"], "paradigm": facts["paradigm"], "spoof clips": facts["n"],
        "log-mel distance to parent": facts["distance"],
        "nuisance-audit EER": [("-" if not np.isfinite(e) else fmt_eer(e) + (f" ({h})" if h != "system" else ""))
                               for e, h in zip(facts["audit_eer"], facts["audit_how"])],
        **{f"EER of {m}": [fmt_eer(v) for v in facts[f"ref:{m}"]] for m in models},
        "detector EER [95% CI]": [("-" if not np.isfinite(r["eer"]) else
                                   fmt_ci_row({"eer": r["eer"], "eer_lo": r["lo"], "eer_hi": r["hi"]})
                                   + f" ({r['set']})") for _, r in facts.iterrows()],
        "reading": facts["reading"]})
    return shown, [None if r else "small" for r in facts["ranked"]], facts


def _pooled(eer: pd.DataFrame | None) -> float:
    if eer is None or eer.empty:
        return np.nan
    rows = eer[(eer["set"] == "pooled") & (eer["system"] == ALL)]
    if "condition" in rows.columns:
        rows = rows[rows["condition"] == "clean"]
    return float(rows["eer"].iloc[0]) if len(rows) else np.nan


def _ref_eer(reference: pd.DataFrame | None, model: str, system: str) -> float:
    if reference is None:
        return np.nan
    hit = reference[(reference["model"] == model) & (reference["system"] == system)]
    return float(hit["eer"].iloc[0]) if len(hit) else np.nan


def _ref_count(reference: pd.DataFrame | None, system: str) -> int:
    if reference is None or "n_spoof" not in reference.columns:
        return 0
    hit = reference[reference["system"] == system]
    return int(hit["n_spoof"].max()) if len(hit) else 0


def reading(r: pd.Series, pooled: float, min_eer: float, min_clips: int) -> str:
    """What a system's numbers say: harder / easier than average for the detector, and whether it is easy for the
    wrong reason (a nuisance-feature shortcut)."""
    if r["n"] < min_clips:
        return f"too few clips to read (n < {min_clips})"
    level = "no detector EER"
    if np.isfinite(r["eer"]) and np.isfinite(pooled):
        lo, hi = (r["lo"], r["hi"]) if np.isfinite(r["lo"]) else (r["eer"], r["eer"])
        level = "harder than average" if lo > pooled else ("easier than average" if hi < pooled else "about average")
    shortcut = np.isfinite(r["audit_eer"]) and r["audit_eer"] < min_eer
    if shortcut and level != "harder than average":
        return f"{level}; easy for the wrong reason: clip properties alone separate it (audit)"
    return level + ("; a clip-property shortcut exists (audit)" if shortcut else "")


def hardness_section(eer: pd.DataFrame | None, recon: pd.DataFrame | None, audit: dict | None,
                     reference: pd.DataFrame | None, metrics: Any) -> tuple[html.Section, list[str]]:
    """The section and the summary's lines about the generators."""
    sec = html.Section("hardness", "Generator hardness")
    shown, classes, facts = hardness_table(eer, recon, audit, reference, metrics)
    if shown.empty:
        return sec.add(html.not_available("reports/eer.csv, reports/hardness.csv and reports/reconstruction")), []
    sec.add(html.p(
        "One row per spoof system, hardest for the detector first. Per system: the spoof count, the log-mel distance "
        "of a reconstruction to its parent (reports/reconstruction; smaller = closer to the real clip), the "
        "nuisance-audit EER (reports/audit.json: clip properties alone; marked `paradigm` where only the "
        "paradigm's set was audited), each reference model's EER (reports/hardness.csv: audit.reference or the "
        "teachers) and the trained detector's EER with its 95% bootstrap CI (reports/eer.csv, in the eval set "
        "named). Reading: harder / easier than average when the detector's CI lies above / below its pooled EER; "
        "easy for the wrong reason when the audit separates the system from clip properties alone.", "note"))
    sec.add(html.table(shown, row_classes=classes, float_digits=3, left=True))
    return sec, summary_lines(facts)


def summary_lines(facts: pd.DataFrame) -> list[str]:
    """The Summary's lines: the hardest and easiest ranked systems and those easy for the wrong reason."""
    ok = facts[facts["ranked"] & facts["eer"].notna()]
    if ok.empty:
        return []
    def names(rows: pd.DataFrame) -> str:
        return ", ".join(f"{r.system} {fmt_eer(r.eer)}" for r in rows.itertuples())

    k = min(3, max(1, len(ok) // 2))                  # hardest and easiest never name one system twice
    easy = ok.iloc[k:].tail(3).iloc[::-1]
    lines = [f'Generators (<a href="#hardness">Generator hardness</a>): hardest for the detector '
             f"{html.esc(names(ok.head(k)))}" + (f"; easiest {html.esc(names(easy))}" if len(easy) else "")]
    wrong = ok[ok["reading"].str.contains("wrong reason")]
    if len(wrong):
        lines.append(f'<span class="warn">Easy for the wrong reason (clip properties alone separate them): '
                     f"{html.esc(', '.join(wrong['system']))}</span>")
    return lines
