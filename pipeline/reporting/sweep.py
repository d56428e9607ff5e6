"""The seeded sweep the report shows, and the commit it ran on.

Sources, in order: the DVC experiments of the newest sweep (`dvc exp show`, grouped by
pipeline/reporting/seeds.py); else the committed files of scripts/sweep.sh (pipeline/reporting/sweep_export.py):
reports/sweep_runs.csv (one row per run: grouped and paired here exactly as the experiments are), else
reports/sweep.csv (grouped means and CIs; its commit from the `commit` column or sweep.md's title) with the paired
intervals against full and random that reports/sweep_paired.csv recorded (no per-seed values there: the other
comparisons show the two means and whether their CIs overlap). A sweep is always ONE commit's runs: nothing is
pooled across commits.
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
PAIRED_FILE = "sweep_paired.csv"
MARKDOWN_FILE = "sweep.md"
PAIRED_COLUMNS = ("method", "ratio", "variant", "reference", "set", "n_pairs", "diff_mean", "diff_lo", "diff_hi")
_TITLE = re.compile(r"baseline commit ([0-9a-f]{4,40})")


@dataclass(frozen=True)
class Sweep:
    """A grouped sweep (seeds.group_runs' table), the commit it ran on ("" when unknown), where it was read,
    whether per-seed values are known (paired intervals need them), and sweep_paired.csv's table when the paired
    intervals were read from it instead (each group's `recorded` then holds them, see `recorded`)."""

    groups: pd.DataFrame
    commit: str
    source: str
    paired: bool
    pairs: pd.DataFrame | None = None


@dataclass(frozen=True)
class RecordedDifference:
    """A paired difference as reports/sweep_paired.csv recorded it (fractions): what seeds.fmt_paired and
    seeds.verdict read of a PairedDifference, without the per-seed values."""

    n: int
    mean: float
    lo: float
    hi: float
    sign_p: float = np.nan
    wilcoxon_p: float = np.nan


def recorded(a: pd.Series, b: pd.Series, col: str) -> RecordedDifference | None:
    """EER(a) - EER(b) on `col` as sweep_paired.csv recorded it: b is full, or random at a's ratio (None else)."""
    rec = a.get("recorded")
    ref = str(b.get("method"))
    if not isinstance(rec, dict) or ref not in ("full", "random"):
        return None
    if ref == "random" and not np.isclose(float(a["ratio"]), float(b["ratio"])):
        return None
    return rec.get((ref, col))


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


def read_paired_file(path: Path) -> pd.DataFrame | None:
    """reports/sweep_paired.csv (differences in EER points) or None when absent; a clear error when malformed."""
    if not path.is_file():
        return None
    df = pd.read_csv(path, dtype={"method": str, "variant": str, "reference": str, "set": str, "commit": str},
                     keep_default_na=False)
    missing = [c for c in PAIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: columns {missing} missing; re-run python -m pipeline.reporting.sweep_export")
    for col in ("ratio", "n_pairs", "diff_mean", "diff_lo", "diff_hi", "sign_p", "wilcoxon_p"):
        if col in df.columns:
            df[col] = pd.to_numeric(df[col].replace("", np.nan), errors="raise")
    return df


def _recorded_by_group(pairs: pd.DataFrame | None) -> dict[tuple[str, float, str], dict]:
    """{(method, ratio, variant): {(reference, "eer.<set>"): RecordedDifference}} from sweep_paired.csv."""
    out: dict[tuple[str, float, str], dict] = {}
    for r in ([] if pairs is None else pairs.to_dict("records")):
        if not np.isfinite(r["diff_mean"]):
            continue
        d = RecordedDifference(int(r["n_pairs"]), r["diff_mean"] / 100, r["diff_lo"] / 100, r["diff_hi"] / 100,
                               float(r.get("sign_p", np.nan)), float(r.get("wilcoxon_p", np.nan)))
        key = (str(r["method"]), round(float(r["ratio"]), 9), str(r["variant"]))
        out.setdefault(key, {})[(str(r["reference"]), f"eer.{r['set']}")] = d
    return out


def _commit_of(df: pd.DataFrame, markdown: Path | None) -> str:
    commit = str(df["commit"].iloc[0]) if "commit" in df.columns and len(df) else ""
    if not commit and markdown is not None and markdown.is_file():
        found = _TITLE.search(markdown.read_text(errors="replace")[:500])
        commit = found.group(1) if found else ""
    return commit


def read_table_file(path: Path, markdown: Path | None = None, paired: Path | None = None) -> Sweep | None:
    """reports/sweep.csv (grouped: `<set>_mean/_lo/_hi` in percent) as groups without per-seed values, with the
    paired intervals of sweep_paired.csv (`paired`) when it is there and of the same commit."""
    if not path.is_file():
        return None
    df = pd.read_csv(path, dtype={"method": str, "variant": str, "commit": str}, keep_default_na=False)
    sets = [c.removesuffix("_mean") for c in df.columns if c.endswith("_mean")]
    if not {"method", "ratio", "variant", "n_seeds"} <= set(df.columns) or not sets:
        raise ValueError(f"{path}: not a sweep table (method, ratio, variant, n_seeds, <set>_mean/_lo/_hi)")
    commit = _commit_of(df, markdown)
    pairs = read_paired_file(paired) if paired is not None else None
    if pairs is not None and "commit" in pairs.columns and len(pairs) and commit \
            and not same_commit(str(pairs["commit"].iloc[0]), commit):
        raise ValueError(f"{paired}: paired intervals of commit {pairs['commit'].iloc[0]}, but {path} is of commit "
                         f"{commit}; re-run python -m pipeline.reporting.sweep_export")
    by_group = _recorded_by_group(pairs)
    rows = []
    for r in df.to_dict("records"):
        row = {"method": r["method"], "ratio": float(r["ratio"]), "variant": r["variant"],
               "n_seeds": int(r["n_seeds"]), "seeds": str(r.get("seeds", "")).split(), "per_seed": {},
               "recorded": by_group.get((r["method"], round(float(r["ratio"]), 9), r["variant"]), {})}
        for name in sets:
            mean = pd.to_numeric(r.get(f"{name}_mean"), errors="coerce")
            if not np.isfinite(mean):
                continue
            col = f"eer.{name}"
            row.update({col: mean / 100, f"{col}.lo": pd.to_numeric(r.get(f"{name}_lo"), errors="coerce") / 100,
                        f"{col}.hi": pd.to_numeric(r.get(f"{name}_hi"), errors="coerce") / 100,
                        f"{col}.n": int(r["n_seeds"]), f"{col}.kind": "seeds" if r["n_seeds"] > 1 else "bootstrap"})
        rows.append(row)
    if not rows:
        return None
    source = f"reports/{TABLE_FILE}" + (f" and reports/{PAIRED_FILE}" if pairs is not None else "")
    return Sweep(pd.DataFrame(rows), commit, source, False, pairs)


def load_sweep(runs: pd.DataFrame | None, reports: Path) -> Sweep | None:
    """The sweep to show: the experiments' newest sweep, else the committed files (None when there is none)."""
    return (from_experiments(runs) or read_runs_file(reports / RUNS_FILE)
            or read_table_file(reports / TABLE_FILE, reports / MARKDOWN_FILE, reports / PAIRED_FILE))


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
