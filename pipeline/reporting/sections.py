"""The sections of reports/index.html, one function each: data in, `html.Section` out.

Each builder takes already-loaded inputs (or None when absent) and says "not available" rather than
failing when something is missing. Reads no file itself except through `pipeline.reporting.inputs`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pipeline.metrics import compute_eer
from pipeline.params import Section, number
from pipeline.reporting import html, plots
from pipeline.reporting.audit import FEATURES, AuditParams, run_audit
from pipeline.reporting.experiments import ExperimentRuns, eer_metrics, flatten
from pipeline.reporting.inputs import load_embeddings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportParams(Section):
    """The `report` params section."""

    NAME: ClassVar[str] = "report"
    pca_points: int = 3000
    pca_normalize: bool = True
    audit: AuditParams = AuditParams()
    experiments: bool = True
    experiments_timeout_s: float = 120.0

    def check(self) -> None:
        number("report.pca_points", self.pca_points, low=1, integer=True)
        number("report.experiments_timeout_s", self.experiments_timeout_s, low=0, low_open=True)


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


# ---------------------------------------------------------------- sampling


def _flat_limited(obj: Any, prefix: str = "", limit: int = 24) -> dict[str, Any]:
    """Flatten nested dicts to dotted keys; a dict of more than `limit` entries becomes one "(N entries)" cell."""
    if isinstance(obj, dict) and obj:
        if len(obj) > limit:
            return {prefix: f"({len(obj)} entries)"}
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flat_limited(v, f"{prefix}.{k}" if prefix else str(k), limit))
        return out
    return {prefix: _cell(obj)}


def _block_table(value: dict) -> str:
    """A dict of dicts as a table (one row per key), transposed when it would be too wide."""
    rows = {k: _flat_limited(v) for k, v in value.items()}
    df = pd.DataFrame.from_dict(rows, orient="index")
    if df.shape[1] > 12:
        df = df.T
    return html.table(df, index=True)


def diagnostics_tables(doc: Any) -> list[str]:
    """HTML tables of a diagnostics JSON of any layout: scalars in one table, each nested block in its own."""
    if not isinstance(doc, dict):
        return [html.table(pd.DataFrame({"value": [repr(doc)[:500]]}))]
    parts: list[str] = []
    scalars = {k: v for k, v in doc.items() if not isinstance(v, (dict, list)) or not v}
    if scalars:
        parts.append(html.table(pd.DataFrame({"key": list(scalars), "value": [str(v) for v in scalars.values()]})))
    for key, value in doc.items():
        if key in scalars:
            continue
        parts.append(f"<h4>{html.esc(key)}</h4>")
        if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
            parts.append(_block_table(value))
        elif isinstance(value, dict):
            flat = _flat_limited(value)
            parts.append(html.table(pd.DataFrame({"key": list(flat), "value": list(flat.values())})))
        elif all(isinstance(v, dict) for v in value):
            parts.append(html.table(pd.DataFrame([_flat_limited(v) for v in value])))
        else:
            parts.append(html.p(str(_cell(value))))
    return parts


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def nc_summary(doc: Any) -> list[str]:
    """The headline tables of the sample stage's diagnostics (per pool: NC1, class-mean distance, counts
    before and after each sampler; merged manifests by class and paradigm); empty when the layout differs."""
    pools = _get(doc, "pools")
    if not isinstance(pools, dict) or not pools:
        return []
    rows = []
    for teacher, d in pools.items():
        dist = _get(d, "class_mean_distance")
        row = {"pool (teacher)": teacher, "rows": _get(d, "n_rows"), "train rows": _get(d, "n_train"),
               "dim": _get(d, "dim"), "NC1 all": _get(d, "nc1"), "NC1 nc picks": _get(d, "nc1_selected"),
               "class-mean distance": next(iter(dist.values())) if isinstance(dist, dict) and dist else None}
        for label in ("bonafide", "spoof"):
            row[f"train {label}"] = _get(d, "before", "label", label)
        for method, counts in (_get(d, "after") or {}).items():
            row[f"{method} picks"] = _get(counts, "n")
        rows.append(row)
    parts = [html.p("NC1 = trace(within-class covariance x pseudo-inverse of between-class covariance) / classes: "
                    "smaller means more collapsed classes.", "note"),
             "<h4>Pools</h4>", html.table(pd.DataFrame(rows))]
    merged = _get(doc, "merged")
    if isinstance(merged, dict) and merged:
        mrows = []
        for method, counts in merged.items():
            row = {"method": method, "n": _get(counts, "n")}
            row.update({f"{k}": v for k, v in (_get(counts, "label") or {}).items()})
            row.update({f"paradigm {k}": v for k, v in (_get(counts, "paradigm") or {}).items()})
            mrows.append(row)
        parts += ["<h4>Merged manifests (the union of the pools' picks)</h4>", html.table(pd.DataFrame(mrows))]
    return parts


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        text = ", ".join(str(v) for v in value[:20])
        return f"[{text}{', ...' if len(value) > 20 else ''}] ({len(value)})"
    return value


def _mean_rows(emb: np.ndarray, rows: np.ndarray, normalize: bool, chunk: int = 65536) -> np.ndarray:
    """Mean of the (optionally L2-normalised) embedding rows, in chunks (emb may be memory-mapped)."""
    total = np.zeros(emb.shape[1])
    for start in range(0, len(rows), chunk):
        x = _prep(emb[rows[start:start + chunk]], normalize)
        total += x.sum(axis=0)
    return total / max(len(rows), 1)


def _prep(x: np.ndarray, normalize: bool) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def embedding_map_for(teacher: str, emb: np.ndarray, ids: pd.Series, clips: pd.DataFrame,
                      selected_ids: set[str], p: ReportParams, seed: int) -> tuple[str, str]:
    """(data URI, caption) of one pool's PCA map with class means and the selected samples marked.

    Drawn over the pool's train-split clips (what the sampler chooses from) when it has any."""
    table = clips.set_index("clip_id")
    lab = ids.map(table["label"]).to_numpy(dtype=object)
    known = np.flatnonzero(pd.notna(lab))
    if len(known) == 0:
        raise ValueError(f"none of teacher {teacher}'s embedded clip_ids is in the clip tables")
    in_train = (ids.map(table["split"]) == "train").to_numpy()
    scope = "train split of "
    if in_train[known].any():
        known = known[in_train[known]]
    else:
        scope = ""
    sel = ids.isin(selected_ids).to_numpy()
    rng = np.random.default_rng(seed)
    sel_rows = np.intersect1d(np.flatnonzero(sel), known)
    rest = np.setdiff1d(known, sel_rows)
    if len(sel_rows) > p.pca_points:
        sel_rows = np.sort(rng.choice(sel_rows, p.pca_points, replace=False))
    if len(rest) > p.pca_points:
        rest = np.sort(rng.choice(rest, p.pca_points, replace=False))
    rows = np.concatenate([rest, sel_rows])
    # class means over the whole pool, not only the plotted points
    means_full = {c: _mean_rows(emb, known[lab[known] == c], p.pca_normalize) for c in ("bonafide", "spoof")
                  if (lab[known] == c).any()}
    x = _prep(emb[np.sort(rows)], p.pca_normalize)
    order = np.sort(rows)
    means_list = list(means_full.values())
    xy_all, explained = plots.pca_2d(np.vstack([x] + means_list), fit_rows=np.arange(len(x)))
    xy, mean_xy = xy_all[:len(x)], xy_all[len(x):]
    title = f"{teacher}: {len(known)} {scope.removesuffix(' of ')} clips, {int(sel[known].sum())} selected".replace(
        "  ", " ")
    uri = plots.embedding_map(xy, lab[order], sel[order], dict(zip(means_full, mean_xy)), title, explained)
    caption = (f"Penultimate embeddings of the {scope}teacher {teacher}'s pool, PCA to 2-D"
               f"{' after L2 normalisation' if p.pca_normalize else ''}; {len(order)} of {len(known)} points drawn; "
               f"stars: the class means of all these clips (not only those drawn); "
               f"circles: the pool's clips in the manifest (selected).")
    return uri, caption


def sampling_section(diagnostics: Any, embeddings_dir: Path, manifest: tuple[str, pd.DataFrame] | None,
                     clips: pd.DataFrame | None, p: ReportParams, seed: int) -> html.Section:
    """NC diagnostics (reports/sampling.json) and one PCA map per teacher pool."""
    sec = html.Section("sampling", "Sampling")
    sec.add("<h3>Neural-collapse diagnostics</h3>")
    if diagnostics is None:
        sec.add(html.not_available("reports/sampling.json"))
    else:
        headline = nc_summary(diagnostics)
        sec.add(*headline)
        everything = "".join(diagnostics_tables(diagnostics))
        # <details> folds the full dump away without any script
        sec.add(f"<details><summary>all of reports/sampling.json</summary>{everything}</details>" if headline
                else everything)
    if manifest is not None:
        name, man = manifest
        counts = pd.crosstab([man["teacher"], man["sampler"]], man["label"], margins=True, margins_name="total")
        sec.add(f"<h3>Selected clips (manifest {html.esc(name)})</h3>", html.table(counts.reset_index()))
    sec.add("<h3>Embedding maps</h3>")
    teachers = sorted(d for d in embeddings_dir.iterdir() if d.is_dir()) if embeddings_dir.is_dir() else []
    if not teachers:
        return sec.add(html.not_available(f"embeddings under {embeddings_dir}"))
    if clips is None:
        return sec.add(html.not_available("clip tables (needed for the labels of the embedding maps)"))
    if manifest is None:
        sec.add(html.p("no manifest found: the maps show no selected samples.", "note"))
    for tdir in teachers:
        loaded = load_embeddings(tdir)
        if loaded is None:
            sec.add(html.not_available(f"{tdir}/emb.npy + ids.parquet"))
            continue
        emb, ids = loaded
        # every clip of this pool that is in the merged manifest: a clip picked by several pools keeps one
        # teacher in the manifest, so filtering on `teacher` would hide picks shared between pools
        selected = set(manifest[1]["clip_id"].astype(str)) if manifest is not None else set()
        try:
            uri, caption = embedding_map_for(tdir.name, emb, ids, clips, selected, p, seed)
        except ValueError as exc:
            sec.add(html.p(str(exc), "warn"))
            continue
        sec.add(html.image(uri, f"PCA map of {tdir.name}", caption))
    return sec


# ---------------------------------------------------------------- detector


def _labelled(scores: pd.DataFrame, clips: pd.DataFrame) -> pd.DataFrame:
    return scores.merge(clips[["clip_id", "label", "system", "paradigm"]], on="clip_id", how="inner")


def per_system_eer(scores: dict[str, pd.DataFrame], clips: pd.DataFrame) -> pd.DataFrame:
    """EER per (eval set, spoof system): the set's bona fide scores against that system's spoof scores."""
    rows = []
    for name, df in scores.items():
        lab = _labelled(df, clips)
        bona = lab.loc[lab["label"] == "bonafide", "score"].to_numpy()
        for (paradigm, system), grp in lab[lab["label"] == "spoof"].groupby(["paradigm", "system"]):
            if len(bona) == 0:
                continue
            eer, _ = compute_eer(bona, grp["score"].to_numpy())
            rows.append({"set": name, "paradigm": paradigm, "system": system, "n_bonafide": len(bona),
                         "n_spoof": len(grp), "eer": eer, "EER (%)": 100 * eer})
    df = pd.DataFrame(rows)
    # leave_out_<P> sets repeat the test set's bona fide clips and systems: list each system once
    return df.drop_duplicates(subset=["paradigm", "system", "n_bonafide", "n_spoof", "eer"]) if len(df) else df


def detector_section(metrics: Any, eer_csv: pd.DataFrame | None, scores: dict[str, pd.DataFrame],
                     clips: pd.DataFrame | None) -> html.Section:
    """EER per eval set (metrics.json, eer.csv), per attack system (from the score files) and DET curves."""
    sec = html.Section("detector", "Detector")
    sec.add("<h3>EER per eval set (reports/metrics.json)</h3>")
    if metrics is None:
        sec.add(html.not_available("reports/metrics.json"))
    else:
        flat = flatten(metrics)
        sec.add(html.table(pd.DataFrame({"metric": list(flat), "value": [_cell(v) for v in flat.values()]})))
    sec.add("<h3>reports/eer.csv</h3>")
    sec.add(html.table(eer_csv) if eer_csv is not None else html.not_available("reports/eer.csv"))
    if not scores:
        return sec.add(html.not_available("score files reports/scores/*.txt"))
    if clips is None:
        return sec.add(html.not_available("clip tables (needed for the labels of the scores)"))
    curves, rows = {}, []
    for name, df in scores.items():
        lab = _labelled(df, clips)
        bona = lab.loc[lab["label"] == "bonafide", "score"].to_numpy()
        spoof = lab.loc[lab["label"] == "spoof", "score"].to_numpy()
        row = {"set": name, "scored": len(df), "unlabelled": len(df) - len(lab), "n_bonafide": len(bona),
               "n_spoof": len(spoof), "EER (%)": np.nan}
        if len(bona) and len(spoof):
            row["EER (%)"] = 100 * compute_eer(bona, spoof)[0]
            curves[name] = (bona, spoof)
        rows.append(row)
    sec.add("<h3>EER per eval set (from the score files)</h3>", html.table(pd.DataFrame(rows)))
    systems = per_system_eer(scores, clips)
    sec.add("<h3>EER per attack system</h3>")
    if systems.empty:
        sec.add(html.not_available("scores with both classes"))
    else:
        sec.add(html.table(systems.drop(columns=["eer"])))
        bars = systems.set_index(systems["set"] + " / " + systems["system"])["eer"]
        sec.add(html.image(plots.eer_bars(bars, "EER per eval set / attack system"), "EER per attack system"))
    if curves:
        sec.add(html.image(plots.det_curves(curves), "DET curves",
                           "DET curves of the detector on each eval set (normal-deviate axes)."))
    return sec


# ---------------------------------------------------------------- audit


def evaluated_sets(scores: dict[str, pd.DataFrame]) -> dict[str, pd.Index]:
    """The clip_ids of each scored eval set."""
    return {name: pd.Index(df["clip_id"].astype(str)) for name, df in scores.items()}


def audit_section(clips: pd.DataFrame | None, scores: dict[str, pd.DataFrame], p: ReportParams
                  ) -> tuple[html.Section, pd.DataFrame | None]:
    """The shortcut audit table, with warnings in red; also returns the table for the summary."""
    sec = html.Section("audit", "Shortcut audit")
    sec.add(html.p(f"EER of trivial classifiers (logistic regression, a depth-2 gradient-boosted tree) that see only "
                   f"({', '.join(FEATURES)}), out of fold with speaker-disjoint folds. Near 50% is healthy; below "
                   f"{100 * p.audit.warn_eer:.0f}% means the classes differ in these clip properties and a detector "
                   f"can score by them instead of the generator's artefacts. Values above 50% carry no information "
                   f"either (the anti-correlation of cross-validation on small sets).", "note"))
    if clips is None:
        return sec.add(html.not_available("clip tables")), None
    sets = evaluated_sets(scores)
    if sets:
        sec.add(html.p(f"Clips audited: those scored in {', '.join(sets)} (reports/scores)."))
    else:
        sec.add(html.p("No score files: auditing every clip of the clip tables.", "note"))
    result = run_audit(clips, sets or None, p.audit)
    warn = result[result["status"] == "warning"]
    if len(warn):
        worst = warn.loc[warn["eer"].idxmin()]
        sec.add(html.p(f"WARNING: shortcut found. {worst['model']} separates the classes of {worst['set']} from "
                       f"clip properties alone with EER {pct(worst['eer'])}.", "warn"))
    elif result["eer"].notna().any():
        sec.add(html.p(f"No shortcut found: lowest audit EER {pct(result['eer'].min())}.", "ok"))
    shown = result.assign(**{"EER (%)": 100 * result["eer"]}).drop(columns=["eer"])
    table = html.table(shown)
    for status in ("warning",):
        table = table.replace(f"<td>{status}</td>", f'<td class="warn">{status}</td>')
    sec.add(table)
    return sec, result


# ---------------------------------------------------------------- experiments


def experiments_section(exps: ExperimentRuns | None) -> html.Section:
    """EER against sampling ratio and method over all DVC experiments, as a curve and a table."""
    sec = html.Section("experiments", "Data efficiency (DVC experiments)")
    sec.add(html.p("Queue the sweep with scripts/sweep.sh (ratios 0.01-1.0 x methods nc, random); it re-runs this "
                   "report when the experiments are done.", "note"))
    if exps is None:
        return sec.add(html.not_available("experiments (disabled in params: report.experiments)"))
    if exps.skipped:
        sec.add(html.p("not shown: " + ", ".join(f"{n} {s}" for s, n in sorted(exps.skipped.items())), "note"))
    if exps.runs is None:
        return sec.add(html.not_available(f"DVC experiments ({exps.reason})"))
    runs = exps.runs
    eer_cols = [c for c in runs.columns if c.startswith("eer")]
    usable = runs.dropna(subset=["ratio"])
    usable = usable[usable["method"].notna()]
    if usable["ratio"].nunique() >= 2:
        sec.add(html.image(plots.sweep_curve(usable, eer_cols), "EER vs sampling ratio",
                           "One line per (method, eval set); x: sample.ratio (log scale)."))
    else:
        sec.add(html.p(f"{len(runs)} run(s) with EER metrics: the curve needs at least two sampling ratios.", "note"))
    shown = runs.copy()
    for c in eer_cols:
        shown[c] = 100 * shown[c]
    shown = shown.rename(columns={c: f"{c} (%)" for c in eer_cols}).sort_values(["method", "ratio"],
                                                                                 na_position="last")
    return sec.add(html.table(shown))


# ---------------------------------------------------------------- summary


def summary_section(metrics: Any, audit: pd.DataFrame | None, exps: ExperimentRuns | None) -> html.Section:
    """The headline: detector EERs, audit verdict, number of experiments."""
    sec = html.Section("summary", "Summary")
    items = []
    eers = eer_metrics(metrics) if isinstance(metrics, dict) else {}
    if eers:
        items.append("Detector EER: " + ", ".join(f"{html.esc(k.removeprefix('eer.'))} {pct(v)}"
                                                  for k, v in eers.items()))
    else:
        items.append('<span class="na">Detector EER: not available</span>')
    if audit is not None and audit["eer"].notna().any():
        lo = audit["eer"].min()
        bad = (audit["status"] == "warning").any()
        cls = "warn" if bad else "ok"
        items.append(f'Shortcut audit: <span class="{cls}">{"WARNING" if bad else "ok"}</span> '
                     f"(lowest trivial-classifier EER {pct(lo)})")
    if exps is not None and exps.runs is not None:
        items.append(f"DVC experiments with EERs: {len(exps.runs)}")
    return sec.add("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
