"""The seeded sweep the report shows, and the commit it ran on.

Sources, in order: the DVC experiments of the newest sweep (`dvc exp show`, grouped by
pipeline/reporting/seeds.py); else the committed files of scripts/sweep.sh (pipeline/reporting/sweep_export.py):
reports/sweep_runs.csv (one row per run: grouped and paired here exactly as the experiments are), else
reports/sweep.csv (grouped means and CIs only: no per-seed values, so no paired interval; its commit from the
`commit` column or sweep.md's title). A sweep is always ONE commit's runs: nothing is pooled across commits.
`head_commit` reads the workspace's commit (git), so the report can say when the two differ.
Reads those files and git; writes nothing.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.reporting import seeds

RUNS_FILE = "sweep_runs.csv"
TABLE_FILE = "sweep.csv"
MARKDOWN_FILE = "sweep.md"
_TITLE = re.compile(r"baseline commit ([0-9a-f]{4,40})")


@dataclass(frozen=True)
class Sweep:
    """A grouped sweep (seeds.group_runs' table), the commit it ran on ("" when unknown), where it was read, and
    whether per-seed values are known (paired intervals need them)."""

    groups: pd.DataFrame
    commit: str
    source: str
    paired: bool


def from_experiments(runs: pd.DataFrame | None) -> Sweep | None:
    """The newest sweep among the DVC experiments (None without one: a sweep has a point run with two seeds or more)."""
    flat = seeds.flat_runs(runs)
    groups = seeds.group_flat(flat)
    if groups is None or flat is None or groups["n_seeds"].max() < 2:
        return None
    return Sweep(groups, str(flat["commit"].iloc[0]), "the DVC experiments (dvc exp show)", True)


def read_runs_file(path: Path) -> Sweep | None:
    """reports/sweep_runs.csv grouped and paired as the experiments are (None when absent); a clear error when
    malformed."""
    if not path.is_file():
        return None
    df = pd.read_csv(path, dtype={"commit": str, "name": str, "method": str, "variant": str, "seed": str},
                     keep_default_na=False)
    missing = [c for c in ("commit", "method", "ratio", "variant", "seed") if c not in df.columns]
    if missing or not any(c.startswith("eer.") for c in df.columns):
        raise ValueError(f"{path}: columns {missing or ['eer.<set>']} missing; re-run "
                         "python -m pipeline.reporting.sweep_export")
    for col in ["ratio"] + [c for c in df.columns if c.startswith("eer.")]:
        df[col] = pd.to_numeric(df[col].replace("", np.nan), errors="raise")
    if df["commit"].nunique() > 1:
        raise ValueError(f"{path}: runs of {df['commit'].nunique()} commits; a sweep is one commit's runs")
    groups = seeds.group_flat(df)
    if groups is None or groups["n_seeds"].max() < 2:
        return None
    return Sweep(groups, str(df["commit"].iloc[0]), f"reports/{RUNS_FILE}", True)


def read_table_file(path: Path, markdown: Path | None = None) -> Sweep | None:
    """reports/sweep.csv (grouped: `<set>_mean/_lo/_hi` in percent) as groups without per-seed values."""
    if not path.is_file():
        return None
    df = pd.read_csv(path, dtype={"method": str, "variant": str, "commit": str}, keep_default_na=False)
    sets = [c.removesuffix("_mean") for c in df.columns if c.endswith("_mean")]
    if not {"method", "ratio", "variant", "n_seeds"} <= set(df.columns) or not sets:
        raise ValueError(f"{path}: not a sweep table (method, ratio, variant, n_seeds, <set>_mean/_lo/_hi)")
    rows = []
    for r in df.to_dict("records"):
        row = {"method": r["method"], "ratio": float(r["ratio"]), "variant": r["variant"],
               "n_seeds": int(r["n_seeds"]), "seeds": str(r.get("seeds", "")).split(), "per_seed": {}}
        for name in sets:
            mean = pd.to_numeric(r.get(f"{name}_mean"), errors="coerce")
            if not np.isfinite(mean):
                continue
            col = f"eer.{name}"
            row.update({col: mean / 100, f"{col}.lo": pd.to_numeric(r.get(f"{name}_lo"), errors="coerce") / 100,
                        f"{col}.hi": pd.to_numeric(r.get(f"{name}_hi"), errors="coerce") / 100,
                        f"{col}.n": int(r["n_seeds"]), f"{col}.kind": "seeds" if r["n_seeds"] > 1 else "bootstrap"})
        rows.append(row)
    commit = str(df["commit"].iloc[0]) if "commit" in df.columns and len(df) else ""
    if not commit and markdown is not None and markdown.is_file():
        found = _TITLE.search(markdown.read_text(errors="replace")[:500])
        commit = found.group(1) if found else ""
    return Sweep(pd.DataFrame(rows), commit, f"reports/{TABLE_FILE}", False) if rows else None


def load_sweep(runs: pd.DataFrame | None, reports: Path) -> Sweep | None:
    """The sweep to show: the experiments' newest sweep, else the committed files (None when there is none)."""
    return (from_experiments(runs) or read_runs_file(reports / RUNS_FILE)
            or read_table_file(reports / TABLE_FILE, reports / MARKDOWN_FILE))


@dataclass(frozen=True)
class Head:
    """The workspace's git commit (short sha) and how many commits it is past the sweep's (None when unknown)."""

    commit: str
    since_sweep: int | None = None


def head_commit(repo: Path, sweep_commit: str = "", timeout_s: float = 10.0) -> Head | None:
    """`git rev-parse HEAD` in `repo` (None outside git), and `git rev-list --count <sweep>..HEAD`."""
    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=timeout_s,
                                 check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    head = git("rev-parse", "--short=7", "HEAD")
    if not head:
        return None
    since = git("rev-list", "--count", f"{sweep_commit}..HEAD") if sweep_commit else None
    return Head(head, int(since) if since and since.isdigit() else None)


def same_commit(a: str, b: str) -> bool:
    """Two (possibly abbreviated) shas name the same commit."""
    n = min(len(a), len(b))
    return n >= 4 and a[:n] == b[:n]
