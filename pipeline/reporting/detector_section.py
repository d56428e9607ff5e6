"""The Detector section of reports/index.html: one EER table per eval set, per attack system, and DET curves.

Every number comes from the evaluate stage's files (reports/eer.csv, reports/plots/det.csv, metrics.json);
nothing is recomputed from scores here, so the page and `dvc metrics show` cannot disagree. Each EER is
shown once: a row that repeats one already shown (a paradigm_<P> or leave_out_<P> set holds the test
set's bona fide clips and the test spoofs of P) becomes a link to the table that shows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.reporting import html, plots
from pipeline.reporting.detplot import det_figure

ALL = "all"
ROW_KEY = ["system", "paradigm", "n_bonafide", "n_spoof", "eer", "threshold"]


def anchor(set_name: str) -> str:
    """The HTML id of an eval set's table."""
    return "eer-" + re.sub(r"[^A-Za-z0-9_.-]", "_", str(set_name))


def fmt_eer(value: float) -> str:
    """An EER fraction as the page writes it (a percentage with two decimals)."""
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * float(value):.2f}%"


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


def _shown(table: SetTable) -> pd.DataFrame:
    rows = [] if table.overall is None else [table.overall.to_frame().T.assign(system="all systems")]
    df = pd.concat(rows + [table.systems], ignore_index=True)
    return pd.DataFrame({"system": df["system"].astype(str), "paradigm": df["paradigm"].astype(str),
                         "bona fide": df["n_bonafide"].astype(int), "spoof": df["n_spoof"].astype(int),
                         "EER": [fmt_eer(v) for v in df["eer"].astype(float)],
                         "threshold": df["threshold"].astype(float)})


def _link(set_name: str) -> str:
    return f'<a href="#{anchor(set_name)}">{html.esc(set_name)}</a>'


def _mismatch(metrics: Any, eer: pd.DataFrame) -> list[str]:
    """Sets whose EER in metrics.json differs from eer.csv (files written by different runs)."""
    if not isinstance(metrics, dict) or not isinstance(metrics.get("eer"), dict):
        return []
    csv = eer[eer["system"] == ALL].set_index("set")["eer"]
    return [s for s, v in metrics["eer"].items()
            if isinstance(v, (int, float)) and (s not in csv.index or abs(float(csv[s]) - float(v)) > 5e-7)]


def detector_section(eer: pd.DataFrame | None, det: pd.DataFrame | None, metrics: Any,
                     stale: str | None = None) -> html.Section:
    """The EER tables (reports/eer.csv), the per-system bars and the DET curves (reports/plots/det.csv)."""
    sec = html.Section("detector", "Detector")
    sec.add(html.p("All numbers are read from the evaluate stage's reports/eer.csv and reports/plots/det.csv "
                   "(nothing is recomputed here). One table per eval set: its bona fide clips against all its "
                   "spoofs (all systems), then against the spoofs of each attack system; a row that another "
                   "table already shows is linked, not repeated.", "note"))
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
    bad = _mismatch(metrics, eer)
    if bad:
        sec.add(html.p(f"reports/metrics.json and reports/eer.csv disagree for {', '.join(bad)}: they come from "
                       "different runs of evaluate; re-run it.", "warn"))
    if isinstance(metrics, dict) and metrics.get("n_rejected"):
        sec.add(html.p(f"{metrics['n_rejected']} eval clips could not be scored and are left out.", "note"))
    seen = metrics.get("paradigm_seen") if isinstance(metrics, dict) else None
    tables = set_tables(eer)
    for t in tables:
        sec.add(f'<h3 id="{anchor(t.name)}">Eval set {html.esc(t.name)}</h3>')
        paradigm = t.name.removeprefix("leave_out_").removeprefix("paradigm_")
        if isinstance(seen, dict) and paradigm in seen and paradigm != t.name:
            was = {True: "was", False: "was NOT", None: "may have been"}.get(seen[paradigm], "may have been")
            sec.add(html.p(f"Paradigm {paradigm} {was} in the detector's training data.", "note"))
        if t.whole_set_as is not None:
            sec.add(f'<p class="note">The same clips and EERs as {_link(t.whole_set_as)}.</p>')
            continue
        sec.add(html.table(_shown(t)))
        for other, systems in t.same_as.items():
            sec.add(f'<p class="note">{html.esc(", ".join(systems))}: the same bona fide and spoof clips as in '
                    f"{_link(other)}; the EER is shown there.</p>")
    bars = pd.concat([t.systems for t in tables]) if tables else pd.DataFrame()
    if len(bars):
        values = bars.set_index(bars["set"].astype(str) + " / " + bars["system"].astype(str))["eer"].astype(float)
        sec.add(html.image(plots.eer_bars(values, "EER per eval set / attack system"), "EER per attack system"))
    if det is None or det.empty:
        return sec.add(html.not_available("DET points reports/plots/det.csv"))
    curves = {str(n): (g["far"].to_numpy(float), g["frr"].to_numpy(float)) for n, g in det.groupby("set", sort=False)}
    eers = {str(r.set): float(r.eer) for r in eer[eer["system"] == ALL].itertuples()}
    caption = "DET curves of the detector on each eval set (normal-deviate axes), from reports/plots/det.csv."
    sec.add(html.image(plots.to_data_uri(det_figure(curves, eers)), "DET curves", caption))
    return sec
