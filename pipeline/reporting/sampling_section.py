"""The Sampling section of reports/index.html: NC diagnostics (reports/sampling.json) and PCA maps per pool.

Takes already-loaded inputs (embeddings through `pipeline.reporting.inputs`); the class means on the map
are computed by `pipeline.sampling`'s own function (`class_mean`), not by a copy of its maths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.reporting import html, plots
from pipeline.reporting.inputs import load_embeddings
from pipeline.reporting.sections import ReportParams
from pipeline.sampling.nc import class_mean


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
    means_full = {c: class_mean(emb, known[lab[known] == c], p.pca_normalize) for c in ("bonafide", "spoof")
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
