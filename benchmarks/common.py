"""Shared benchmark plumbing: print a table and merge results into reports/bench.json."""

from __future__ import annotations

import fcntl
import json
import os
import platform
import resource
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.io import write_json_atomic

BENCH_JSON = Path("reports/bench.json")
BENCH_ENV = "HARDSET_BENCH_JSON"     # another bench.json (the benchmark tests point it at a temp file)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    """Print rows as an aligned text table."""
    if not rows:
        print(f"{title}: no rows")
        return
    cols = list(dict.fromkeys(c for r in rows for c in r))   # every column any row has, in first-seen order
    cells = [[f"{r.get(c, ''):.3g}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print(f"\n{title}")
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def merge_bench(key: str, rows: list[dict[str, Any]], path: Path | None = None, **meta: Any) -> None:
    """Store `rows` (and `meta`) under `key` in reports/bench.json (or `path`, or $HARDSET_BENCH_JSON), keeping
    the other benchmarks' keys.

    A lock file serialises concurrent benchmarks' read-modify-write.
    """
    path = Path(path or os.environ.get(BENCH_ENV) or BENCH_JSON)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".bench.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {}
        data[key] = {**meta, "rows": rows, "machine": platform.machine(),
                     "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json_atomic(data, path)


def status_kb(pid: int | str, key: str) -> int:
    """A field of /proc/<pid>/status in KiB (RssAnon, RssFile, ...); 0 when the process or the field is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class ProcPeak:
    """Peaks of RssAnon and RssFile (bytes) of a process (default: this one), sampled from /proc in a thread."""

    def __init__(self, pid: int | str = "self", every_s: float = 0.2) -> None:
        self.pid, self.every_s = pid, every_s
        self.anon = self.file = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        self.anon = max(self.anon, status_kb(self.pid, "RssAnon") * 1024)
        self.file = max(self.file, status_kb(self.pid, "RssFile") * 1024)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every_s)

    def __enter__(self) -> ProcPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
