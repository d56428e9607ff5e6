"""Benchmark how the report reads the experiments: in process through DVC's Python API (what
pipeline/reporting/experiments.py does now) against the two `dvc` subprocesses it ran before (`dvc exp show
--json --all-commits` and `dvc status <stage> --with-deps --json`), on one repository, in the same run.

Reads the git + DVC repository `--repo` (default: this checkout; the demo's clone is the one that matters: its
history and experiments); writes nothing there. Each route runs in a fresh process, its seconds from the start
of that process (Python, DVC's import and the work), as the report pays them: `in_process_s` is a child that
imports the reporting module and calls `load_experiments`; `subprocess_s` is the two `dvc` commands one after
the other. Reported: both, their ratio, the rows the in-process view found and the commits of the repository.
Merges the row into reports/bench.json under "report_experiments" and prints a table.

    .venv/bin/python -m benchmarks.bench_report_experiments --repo /path/to/demo/clone [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import merge_bench, print_table  # noqa: E402  (after the path set-up)

METRICS = "reports/metrics.json"


def child(repo: str) -> dict:
    """The in-process route in this fresh process: import, load_experiments; seconds from the process start."""
    import psutil

    from pipeline.reporting.experiments import load_experiments

    exps = load_experiments(Path(repo), METRICS)
    rows = 0 if exps.runs is None else len(exps.runs)
    return {"rows": rows, "reason": exps.reason, "seconds": time.time() - psutil.Process().create_time()}


def dvc_routes(repo: Path) -> float:
    """The two subprocesses the report ran before, one after the other: their seconds."""
    import yaml

    from pipeline.reporting.experiments import producing_stage

    stage = producing_stage(yaml.safe_load((repo / "dvc.yaml").read_text()), METRICS) or "report"
    dvc = str(Path(sys.executable).parent / "dvc")
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    t0 = time.perf_counter()
    for cmd in ([dvc, "exp", "show", "--json", "--all-commits", "--no-pager"],
                [dvc, "status", stage, "--with-deps", "--json"]):
        subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, check=False)
    return time.perf_counter() - t0


def measure(repo: Path, repeats: int) -> dict:
    """Both routes `repeats` times, alternating (the fastest of each: a shared machine)."""
    inner, outer, rows = [], [], None
    for _ in range(repeats):
        out = subprocess.run([sys.executable, __file__, "--child", str(repo)], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
        res = json.loads(out.strip().splitlines()[-1])
        inner.append(res["seconds"])
        rows = res["reason"] or res["rows"]
        outer.append(dvc_routes(repo))
    commits = subprocess.run(["git", "rev-list", "--all", "--count"], cwd=repo, capture_output=True, text=True)
    return {"repo": str(repo), "commits": int(commits.stdout.strip() or 0), "rows": rows,
            "in_process_s": min(inner), "subprocess_s": min(outer), "subprocess_over_in_process":
            min(outer) / min(inner), "repeats": repeats, "loadavg_1min": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=ROOT, help="git + DVC repository (default: this checkout)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each route (the fastest is reported)")
    ap.add_argument("--out", type=Path, default=None, help="bench.json to merge into (default reports/bench.json)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child)))
        return 0
    row = measure(args.repo.resolve(), args.repeats)
    print_table([row], "report experiments: in process vs the dvc subprocesses")
    merge_bench("report_experiments", [row], args.out,
                note="seconds from each route's process start (Python, DVC import, work); subprocess_s: "
                     "`dvc exp show --json --all-commits` + `dvc status <stage> --with-deps --json` as the report "
                     "ran them before issue 26; the machine is shared: see loadavg_1min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
