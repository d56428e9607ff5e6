"""Defensive readers of the report's inputs: every function returns None (or empty) when its file is absent.

Reads: clip tables, rejects, reports/metrics.json, reports/eer.csv, reports/plots/det.csv, reports/scores/*.txt,
reports/reconstruction/*.json, reports/sampling.json, data/teachers/*/metrics.json,
data/embeddings/<T>/{emb.npy, ids.parquet}, data/manifests/*.parquet. Writes nothing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.schema import read_clip_tables, read_clips, read_rejects

log = logging.getLogger(__name__)


def read_json(path: Path) -> Any | None:
    """A JSON file's content, or None when the file is absent."""
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def load_clips(paths: list[Path]) -> tuple[pd.DataFrame | None, list[Path]]:
    """The union of the clip tables that exist (validated) and the list of those that do not."""
    present = [p for p in paths if p.is_file()]
    missing = [p for p in paths if not p.is_file()]
    if not present:
        return None, missing
    return read_clip_tables(present, stage="report"), missing


def load_rejects(path: Path | None) -> pd.DataFrame | None:
    """The rejects table, or None when absent."""
    if path is None or not path.is_file():
        return None
    return read_rejects(path)


EER_COLUMNS = ("set", "system", "n_bonafide", "n_spoof", "eer", "threshold")
OPTIONAL_NUMBERS = ("eer_lo", "eer_hi", "min_dcf", "act_dcf", "cllr")   # columns of a newer evaluate


def load_eer_table(path: Path) -> pd.DataFrame | None:
    """reports/eer.csv as written by evaluate (one row per set and per (set, system)); None when absent."""
    if not path.is_file():
        return None
    df = pd.read_csv(path, dtype={"set": str, "system": str, "paradigm": str, "condition": str}, keep_default_na=False)
    missing = [c for c in EER_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: columns {missing} missing (has {list(df.columns)}); re-run evaluate")
    if "paradigm" not in df.columns:           # eer.csv of an older evaluate
        df.insert(2, "paradigm", "")
    if "condition" not in df.columns:          # eer.csv of an evaluate without conditions
        df.insert(1, "condition", "clean")
    df["condition"] = df["condition"].astype(str)
    optional = [c for c in OPTIONAL_NUMBERS if c in df.columns]   # blank where not computed (no bootstrap)
    for col in ("n_bonafide", "n_spoof", "eer", "threshold", *optional):
        try:
            values = df[col].replace("", np.nan) if col in optional else df[col]
            df[col] = pd.to_numeric(values, errors="raise")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: column {col} is not numeric ({exc})") from exc
    return df


def load_hardness(path: Path) -> pd.DataFrame | None:
    """reports/hardness.csv (model, system, paradigm, n_spoof, eer) as written by the audit stage; None when absent."""
    if not path.is_file():
        return None
    df = pd.read_csv(path, dtype={"model": str, "system": str, "paradigm": str}, keep_default_na=False)
    missing = [c for c in ("model", "system", "eer") if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: columns {missing} missing; re-run the audit stage")
    df["eer"] = pd.to_numeric(df["eer"], errors="coerce")
    return df


def load_det(path: Path) -> pd.DataFrame | None:
    """reports/plots/det.csv (set, far, frr) as written by evaluate; None when absent."""
    if not path.is_file():
        return None
    df = pd.read_csv(path, dtype={"set": str})
    if list(df.columns[:3]) != ["set", "far", "frr"]:
        raise ValueError(f"{path}: expected columns set, far, frr; found {list(df.columns)}")
    return df


def load_scores(scores_dir: Path) -> dict[str, pd.DataFrame]:
    """Score files `<set>.txt` (lines `clip_id score`) as {set: DataFrame[clip_id, score]}, sorted by set."""
    out: dict[str, pd.DataFrame] = {}
    if not scores_dir.is_dir():
        return out
    for path in sorted(scores_dir.glob("*.txt")):
        df = pd.read_csv(path, sep=r"\s+", header=None, names=["clip_id", "score"], dtype={"clip_id": str},
                         comment=None, engine="python")
        df["score"] = pd.to_numeric(df["score"], errors="coerce")
        if df["score"].isna().any():
            raise ValueError(f"{path}: non-numeric score in line {int(df['score'].isna().to_numpy().argmax()) + 1}")
        out[path.stem] = df
    return out


def load_reconstruction(recon_dir: Path) -> pd.DataFrame | None:
    """reports/reconstruction/<paradigm>.json files as one table (paradigm, system, n, logmel_distance, ...)."""
    if not recon_dir.is_dir():
        return None
    rows = []
    for path in sorted(recon_dir.glob("*.json")):
        doc = json.loads(path.read_text())
        paradigm = doc.get("paradigm", path.stem)
        for system, values in (doc.get("systems") or {}).items():
            rows.append({"paradigm": paradigm, "system": system, **(values if isinstance(values, dict) else {})})
    return pd.DataFrame(rows) if rows else None


def load_fits(paths: list[Path]) -> pd.DataFrame | None:
    """The fit stages' metrics/fit_<name>.json (stage, source, steps, clips, seconds) as one row each; missing: none."""
    rows = [read_json(path) for path in paths if Path(path).is_file()]
    rows = [row for row in rows if isinstance(row, dict)]
    return pd.DataFrame(rows) if rows else None


def load_teachers(teachers_dir: Path) -> pd.DataFrame | None:
    """data/teachers/<T>/metrics.json scalars as one row per teacher (dev_eer first)."""
    if not teachers_dir.is_dir():
        return None
    rows = []
    for path in sorted(teachers_dir.glob("*/metrics.json")):
        doc = json.loads(path.read_text())
        scalars = {k: v for k, v in flatten(doc).items() if isinstance(v, (int, float, str, bool))}
        config = read_json(path.parent / "config.json") or {}
        extra = {k: config[k] for k in ("arch", "frontend") if isinstance(config.get(k), str)}
        rows.append({"teacher": path.parent.name, **extra, **scalars})
    if not rows:
        return None
    df = pd.DataFrame(rows)
    first = [c for c in ("teacher", "arch", "frontend", "dev_eer") if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys, as `dvc metrics show` names them (`eer.test`)."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = obj
    return out


def load_embeddings(emb_dir: Path) -> tuple[np.ndarray, pd.Series] | None:
    """(emb[N, D] memory-mapped: emb.npy or emb-*.npy, clip_ids[N]) of one teacher, or None when absent;
    a clear error on mismatch."""
    from pipeline.embstore import read_embeddings

    ids_path = emb_dir / "ids.parquet"
    if not ids_path.is_file():
        return None
    try:
        emb = read_embeddings(emb_dir)  # emb.npy, or its emb-*.npy row shards
    except FileNotFoundError:
        return None
    ids = pd.read_parquet(ids_path)["clip_id"].astype(str)
    if emb.ndim != 2 or emb.shape[0] != len(ids):
        raise ValueError(f"{emb_dir}: emb.npy has shape {emb.shape} but ids.parquet has {len(ids)} rows")
    return emb, ids.reset_index(drop=True)


def load_manifest(manifests_dir: Path, names: tuple[str, ...] = ("nc", "train")) -> tuple[str, pd.DataFrame] | None:
    """The first manifest found among `names` as (name, table); None when there is none."""
    for name in names:
        path = manifests_dir / f"{name}.parquet"
        if path.is_file():
            return name, read_clips(path, stage="report", groups=("manifest",))
    return None
