"""The data-efficiency view: EERs of the workspace, of every DVC experiment and of every distinct commit.

Reads the repository through DVC's Python API in this process (dvc.repo.Repo, the object dvc.api.exp_show
opens; no `dvc` subprocess): `experiments.show` gives what `dvc exp show --json` prints (the workspace, then
baseline commits newest first, each with `data.params[<file>].data`, `data.metrics[<file>].data` and
`experiments` = [{name, executor: {state} | null, revs: [...]}]), and `status` what `dvc status --json` prints.
Not every commit is collected, only those that can carry numbers of their own: the commits whose metrics file
differs from their first parent's (found by comparing blob ids in git, about 1 ms a commit), the baselines of
experiments and HEAD; a commit that repeats its parent's numbers would fold into it anyway. That, and one DVC
start instead of two, is what turned the tens of seconds of `dvc exp show --all-commits` + `dvc status` into
about a second. The result is flattened into rows of kind `workspace`, `experiment` or `baseline`: name, rev,
the method (sample.method, `nc:<order>` when sample.nc.order is not nearest), sample.ratio, a note and every
`eer.*` metric of the detector's metrics file. Commits that carry the same committed numbers are one row;
queued, running and failed experiments are counted, not listed.
`status <stage> --with-deps`, once, says whether the workspace's numbers are current, stale or unverified.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.reporting.inputs import flatten

log = logging.getLogger(__name__)

UNFINISHED = ("queued", "running", "failed")


@dataclass
class ExperimentRuns:
    """The experiments table (None when unavailable), why it is unavailable, and skipped counts by state."""

    runs: pd.DataFrame | None
    reason: str = ""
    skipped: dict[str, int] | None = None
    freshness: Freshness | None = None


@dataclass(frozen=True)
class Freshness:
    """Whether the workspace's metrics file is the output of its current inputs (`dvc status` of its stage).

    state: `current` (nothing changed), `stale` (a dep, param or the file changed since it was written),
    `unverified` (inputs absent, e.g. a fresh clone without `dvc pull`: the numbers are the committed ones),
    `unknown` (dvc could not tell); detail: what dvc reported.
    """

    state: str
    detail: str = ""


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
    short = "" if rev == "workspace" else rev[:7]
    ci = eer_cis(_pick(data.get("metrics"), metrics_file))
    # params and ci: object columns (not `eer*`), read by pipeline/reporting/seeds.py to group seeds
    return {"name": entry.get("name") or rev[:7], "rev": short, "kind": kind, "method": method_label(params),
            "ratio": params.get("sample.ratio"), "note": "", **eers, "params": params, "ci": ci}


def method_label(params: dict[str, Any]) -> Any:
    """sample.method, with the NC order when it is not the paper's nearest (`nc:farthest`, `nc:stratified`)."""
    method, order = params.get("sample.method"), params.get("sample.nc.order")
    return f"{method}:{order}" if method == "nc" and order not in (None, "nearest") else method


def eer_cis(metrics: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """The evaluate stage's bootstrap CIs, `eer.<set>` -> (lo, hi), from metrics `eer_ci.<set>.{lo,hi}`."""
    ci = metrics.get("eer_ci") if isinstance(metrics, dict) else None
    out = {}
    for name, v in (ci or {}).items():
        if isinstance(v, dict) and isinstance(v.get("lo"), (int, float)) and isinstance(v.get("hi"), (int, float)):
            out[f"eer.{name}"] = (float(v["lo"]), float(v["hi"]))
    return out


def _key(row: dict[str, Any]) -> tuple:
    """What makes two rows the same run: sampling params and every EER."""
    return (str(row["method"]), str(row["ratio"]), tuple(sorted((k, v) for k, v in row.items() if k.startswith("eer"))))


def _fold_baselines(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per distinct committed result: commits that only carry the numbers of another commit (the
    metrics file was not re-run between them) fold into the oldest one, which introduced the numbers."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:                                   # `dvc exp show` lists commits newest first
        groups.setdefault(_key(row), []).append(row)
    out = []
    for same in groups.values():
        first = dict(same[-1])
        if len(same) > 1:
            names = [r["name"] for r in same[:-1]]
            first["note"] = (f"committed in {first['rev']}; the same numbers in {len(names)} later commit(s) "
                             f"({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})")
        else:
            first["note"] = f"committed in {first['rev']}"
        out.append(first)
    return out


def parse_exp_show(doc: list[dict[str, Any]], metrics_file: str | None = "reports/metrics.json") -> ExperimentRuns:
    """Rows of `dvc exp show --json` output: the workspace, each finished experiment, each distinct baseline.

    Kinds: `workspace` (the working tree's metrics file, whatever ran last), `experiment` (a finished `dvc exp
    run`), `baseline` (a git commit's committed metrics; commits that repeat the same numbers are folded into
    one row). A workspace or experiment whose numbers equal another row's says so in `note`, and the
    duplicate baseline row is dropped, so that no result is listed twice.
    """
    workspace: dict[str, Any] | None = None
    experiments: list[dict[str, Any]] = []
    baselines: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    for baseline in doc:
        if not isinstance(baseline, dict):
            continue
        if baseline.get("rev") == "workspace":
            workspace = _row({**baseline, "name": "workspace"}, "workspace", metrics_file)
            continue
        row = _row(baseline, "baseline", metrics_file)
        if row:
            baselines.append(row)
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
                    row["note"] = f"experiment on {str(baseline.get('rev') or '?')[:7]}"
                    row["base"] = str(baseline.get("rev") or "?")[:7]
                    experiments.append(row)
    baselines = _fold_baselines(baselines)
    if workspace is not None:
        same = [r for r in experiments + baselines if _key(r) == _key(workspace)]
        if same:
            twin = same[0]
            workspace["note"] = (f"the numbers of experiment {twin['name']}" if twin["kind"] == "experiment"
                                 else f"the numbers {twin['note']}")
            if twin.get("base"):
                workspace["base"] = twin["base"]      # still one seed of that sweep
            experiments = [r for r in experiments if r is not twin]
            baselines = [r for r in baselines if r is not twin]
    rows = ([workspace] if workspace else []) + experiments + baselines
    if not rows:
        return ExperimentRuns(None, "no finished experiment or commit has EER metrics", skipped)
    runs = pd.DataFrame(rows)
    runs["ratio"] = pd.to_numeric(runs["ratio"], errors="coerce")
    return ExperimentRuns(runs, "", skipped)


def producing_stage(dvc_yaml: Any, path: str) -> str | None:
    """The dvc.yaml stage that lists `path` among its metrics or outs (None when none does)."""
    target = str(Path(path))
    for name, stage in ((dvc_yaml or {}).get("stages") or {}).items():
        for group in ("metrics", "outs", "plots"):
            for out in (stage or {}).get(group) or []:
                out_path = next(iter(out)) if isinstance(out, dict) else out
                if str(Path(str(out_path))) == target:
                    return str(name)
    return None


ABSENT = ("deleted", "not in cache")
# An always-run stage (the corpus_index and init_model stamps) is listed on every `dvc status`. It rewrites its
# file only when its inputs changed, and then the stages after it show "changed deps": alone it says nothing.
ALWAYS = "always changed"


def _leaves(obj: Any, path: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(where, what) of every change in a `dvc status --json` document."""
    if isinstance(obj, dict):
        return [leaf for k, v in obj.items() for leaf in _leaves(v, (*path, str(k)))]
    if isinstance(obj, list):
        return [leaf for v in obj for leaf in _leaves(v, path)]
    return [(" ".join(path), str(obj))]


def classify_status(status: Any, metrics_file: str) -> Freshness:
    """Freshness from the JSON of `dvc status <stage> --with-deps` ({stage: [changes]}; {} when up to date)."""
    leaves = [(where, what) for where, what in _leaves(status) if what != ALWAYS]
    if not leaves:
        return Freshness("current")
    own = str(Path(metrics_file))
    changed = [f"{where}: {what}" for where, what in leaves if what not in ABSENT or own in where]
    absent = [f"{where}: {what}" for where, what in leaves if what in ABSENT and own not in where]
    if not changed:
        return Freshness("unverified", f"{len(absent)} input(s) not present, e.g. {'; '.join(absent[:2])}")
    detail = "; ".join(changed[:4]) + (f"; and {len(changed) - 4} more" if len(changed) > 4 else "")
    if absent:
        detail += f"; {len(absent)} input(s) not present"
    return Freshness("stale", detail)


def workspace_freshness(dvc_repo: Any, metrics_file: str) -> Freshness:
    """`status <stage> --with-deps` (DVC's Python API) of the stage that writes `metrics_file`."""
    import yaml

    try:
        stage = producing_stage(yaml.safe_load((Path(dvc_repo.root_dir) / "dvc.yaml").read_text()), metrics_file)
    except (OSError, yaml.YAMLError) as exc:
        return Freshness("unknown", f"dvc.yaml unreadable: {exc}")
    if stage is None:
        return Freshness("unknown", f"no stage of dvc.yaml writes {metrics_file}")
    try:
        return classify_status(dvc_repo.status(targets=[stage], with_deps=True), metrics_file)
    except Exception as exc:  # noqa: BLE001 - DVC raises many types; the report says it could not tell
        return Freshness("unknown", f"`dvc status` failed: {exc}")


def mark_workspace(exps: ExperimentRuns, freshness: Freshness) -> ExperimentRuns:
    """Put the workspace's freshness into its row's note: a stale number is never shown as the current one."""
    exps.freshness = freshness
    if exps.runs is None or not (exps.runs["kind"] == "workspace").any():
        return exps
    says = {"current": "up to date with its inputs (dvc status)",
            "stale": f"STALE: older than its inputs ({freshness.detail})",
            "unverified": f"not re-run here, inputs absent ({freshness.detail}): committed numbers",
            "unknown": f"freshness unknown ({freshness.detail})"}[freshness.state]
    i = exps.runs.index[exps.runs["kind"] == "workspace"][0]
    note = exps.runs.at[i, "note"]
    exps.runs.at[i, "note"] = f"{says}; {note}" if note else says
    return exps


def numbered_revs(scm: Any, metrics_file: str) -> list[str]:
    """The commits (of every branch and tag, newest first) whose metrics file differs from their first parent's."""
    blobs: dict[str, str | None] = {}

    def blob(rev: str) -> str | None:
        if rev not in blobs:
            try:
                blobs[rev] = scm.get_fs(rev).info(metrics_file).get("sha")
            except (FileNotFoundError, NotADirectoryError, KeyError):
                blobs[rev] = None
        return blobs[rev]

    out = []
    for rev in scm.list_all_commits():
        parents = scm.resolve_commit(rev).parents
        if blob(rev) is not None and blob(rev) != (blob(parents[0]) if parents else None):
            out.append(rev)
    return out


def collect(repo: Path, metrics_file: str | None) -> tuple[list[dict[str, Any]], Any]:
    """(`dvc exp show --json` document, `dvc status` freshness or None) of the repository, in this process."""
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        scm = dvc_repo.scm
        baselines = list(dvc_repo.experiments.ls(all_commits=True))
        revs = [scm.get_rev()] + (numbered_revs(scm, metrics_file) if metrics_file else []) + baselines
        shown = dvc_repo.experiments.show(revs=list(dict.fromkeys(revs)), num=1)
        doc = json.loads(json.dumps([e.dumpd() for e in shown], default=str))
        fresh = workspace_freshness(dvc_repo, metrics_file) if metrics_file else None
    order = {rev: i for i, rev in enumerate(revs)}          # baselines newest first, as --all-commits lists them
    doc.sort(key=lambda e: -1 if e.get("rev") == "workspace" else order.get(str(e.get("rev")), len(order)))
    return doc, fresh


def load_experiments(repo: Path, metrics_file: str | None = "reports/metrics.json",
                     timeout_s: float = 120.0) -> ExperimentRuns:
    """The experiments table of `repo` (see the module doc); a reason instead of rows when that cannot be done,
    or when DVC takes longer than `timeout_s` (params report.experiments_timeout_s)."""
    if not (repo / ".dvc").is_dir():
        return ExperimentRuns(None, f"{repo} is not a DVC repository")
    if not (repo / ".git").exists():
        return ExperimentRuns(None, "not a git repository: DVC experiments need git")
    try:
        import dvc.repo  # noqa: F401
    except ImportError:
        return ExperimentRuns(None, "dvc is not installed")
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = collect(repo, metrics_file)
        except Exception as exc:  # noqa: BLE001 - DVC raises many types; the section says why it is empty
            box["error"] = exc

    worker = threading.Thread(target=work, name="dvc-experiments", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        return ExperimentRuns(None, f"DVC did not list the experiments within {timeout_s:g} s "
                                    "(params report.experiments_timeout_s)")
    if "error" in box:
        return ExperimentRuns(None, f"DVC could not list the experiments: {type(box['error']).__name__}: "
                                    f"{box['error']}")
    doc, fresh = box["value"]
    exps = parse_exp_show(doc, metrics_file)
    return exps if fresh is None else mark_workspace(exps, fresh)
