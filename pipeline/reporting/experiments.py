"""The data-efficiency view: EERs of every DVC experiment of the repository against its sampling params.

Runs `dvc exp show --json --all-commits` in the repository root (a subprocess; dvc 3.x JSON: a list of
baseline commits, each with `data.params[<file>].data`, `data.metrics[<file>].data` and `experiments`
= [{name, executor: {state} | null, revs: [...]}]), and flattens it into one row per finished
experiment or baseline commit: name, rev, sample.method, sample.ratio and every `eer.*` metric of
the detector's metrics file. Queued, running and failed experiments are counted, not listed.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

UNFINISHED = ("queued", "running", "failed")


@dataclass
class ExperimentRuns:
    """The experiments table (None when unavailable), why it is unavailable, and skipped counts by state."""

    runs: pd.DataFrame | None
    reason: str = ""
    skipped: dict[str, int] | None = None


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys, as `dvc metrics show` names them (`eer.test`)."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = obj
    return out


def eer_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The per-set EERs of a metrics dict as `eer.<set>` -> value (`{"eer": {set: x}}` or `eer/<set>` keys).

    Other groups (`eer_by_system`, counts) are left out: the sweep view draws one line per eval set.
    """
    out = {}
    for key, value in flatten(metrics).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        low = key.lower()
        if low == "eer":
            out["eer"] = float(value)
        elif low.startswith(("eer.", "eer/")):
            out["eer." + key[4:].replace("/", ".")] = float(value)
    return out


def _pick(files: dict[str, Any] | None, metrics_file: str | None) -> dict[str, Any]:
    """The `data` of the named file (or, failing that, merged over all files) of a params/metrics block."""
    if not files:
        return {}
    norm = {str(Path(k)): v for k, v in files.items()}
    if metrics_file is not None and str(Path(metrics_file)) in norm:
        return (norm[str(Path(metrics_file))] or {}).get("data") or {}
    merged: dict[str, Any] = {}
    for v in norm.values():
        merged.update((v or {}).get("data") or {})
    return merged


def _row(entry: dict[str, Any], kind: str, metrics_file: str | None) -> dict[str, Any] | None:
    data = entry.get("data") or {}
    params = flatten(_pick(data.get("params"), None))
    eers = eer_metrics(_pick(data.get("metrics"), metrics_file))
    if not eers:
        return None
    rev = str(entry.get("rev") or data.get("rev") or "")
    return {"name": entry.get("name") or rev[:7], "rev": rev[:7], "kind": kind,
            "method": params.get("sample.method"), "ratio": params.get("sample.ratio"), **eers}


def parse_exp_show(doc: list[dict[str, Any]], metrics_file: str | None = "reports/metrics.json") -> ExperimentRuns:
    """One row per finished experiment/baseline commit of `dvc exp show --json` output (workspace left out)."""
    rows: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    for baseline in doc:
        if not isinstance(baseline, dict) or baseline.get("rev") == "workspace":
            continue
        row = _row(baseline, "baseline", metrics_file)
        if row:
            rows.append(row)
        for exp in baseline.get("experiments") or []:
            state = ((exp.get("executor") or {}).get("state") or "").lower()
            if state in UNFINISHED:
                skipped[state] = skipped.get(state, 0) + 1
                continue
            for rev in exp.get("revs") or []:
                if rev.get("error"):
                    skipped["error"] = skipped.get("error", 0) + 1
                    continue
                row = _row({**rev, "name": exp.get("name") or rev.get("name")}, "experiment", metrics_file)
                if row:
                    rows.append(row)
    if not rows:
        return ExperimentRuns(None, "no finished experiment or commit has EER metrics", skipped)
    runs = pd.DataFrame(rows)
    runs["ratio"] = pd.to_numeric(runs["ratio"], errors="coerce")
    return ExperimentRuns(runs, "", skipped)


def dvc_executable() -> str | None:
    """The dvc of this interpreter's environment, else the one on PATH."""
    local = Path(sys.executable).parent / "dvc"
    return str(local) if local.exists() else shutil.which("dvc")


def load_experiments(repo: Path, metrics_file: str | None = "reports/metrics.json",
                     timeout_s: float = 120.0) -> ExperimentRuns:
    """Run `dvc exp show --json` in `repo` and parse it; a reason instead of rows when that cannot be done."""
    if not (repo / ".dvc").is_dir():
        return ExperimentRuns(None, f"{repo} is not a DVC repository")
    if not (repo / ".git").exists():
        return ExperimentRuns(None, "not a git repository: DVC experiments need git")
    dvc = dvc_executable()
    if dvc is None:
        return ExperimentRuns(None, "dvc is not installed")
    cmd = [dvc, "exp", "show", "--json", "--all-commits", "--no-pager"]
    try:
        res = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return ExperimentRuns(None, f"`dvc exp show` failed: {exc}")
    if res.returncode != 0:
        msg = (res.stderr or res.stdout).strip().splitlines()
        return ExperimentRuns(None, f"`dvc exp show` exited {res.returncode}: {msg[-1] if msg else ''}")
    try:
        doc = json.loads(res.stdout or "[]")
    except json.JSONDecodeError as exc:
        return ExperimentRuns(None, f"`dvc exp show --json` printed no JSON: {exc}")
    return parse_exp_show(doc, metrics_file)
