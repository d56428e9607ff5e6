"""The `ray` side of the per-clip engine (pipeline/runtime/engine.py): warm actors that read their own rows.

Reads the rows the driver wrote for it; writes the resume shards of `partial_dir` (through shards.ShardWorker).
What makes Ray pay off on a few cores, where Ray Data's executor, a new actor pool per call and pickled pandas
shards shipped by the driver cost more than the second core gave (measured: +75% on 2 cores):

- Warm actors: one pool per process (and Ray session), started on the first call and kept for every later call
  of the process (reconstruct makes one call per system): an actor imports the stage's code once and rebuilds
  its batch function only when the factory changes (a token: the hash of the pickled factory). A failed call
  lets the pool go (an actor may be broken); the next call starts a new one.
- Workers read their rows: the driver writes the table once as Parquet, one row group per batch, into a folder
  the actors see (beside partial_dir, or a temporary folder: under the working directory when joining a cluster,
  which must be shared as the clip paths are); a task names a range of batches and the actor reads those row
  groups. A table Arrow cannot carry unchanged (checked on its first rows) travels pickled in its tasks instead.
- Task sizes follow the workload: each actor's first task is one batch; from the seconds its batches took, later
  tasks hold about TARGET_S of work, and never more than remaining / (2 x actors) batches, so that the actors
  finish together (guided self-scheduling). Two tasks per actor are in flight, so an actor never waits for the
  driver. With resume files (partial_dir) or shards to skip, the tasks are the caller's fixed shards.
- The driver blocks in ray.wait: no executor thread of its own competes with the actors for the cores.
Results do not depend on how batches group into tasks: every batch sees the rows it sees locally.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger("pipeline.runtime.ray_pool")

TARGET_S = 2.0            # seconds of work per task once a batch's cost is known
IN_FLIGHT = 2             # tasks queued per actor
PROBE_ROWS = 256          # rows whose Arrow round trip must be exact for the Parquet route
_POOL: dict[str, Any] = {}   # this process's warm actors: {key, actors}
LAST_RUN: dict[str, Any] = {}  # what the last run_tasks did (tasks, actors, seconds building and computing)


class EngineActor:
    """A Ray actor: builds the batch function of a factory once, then runs tasks of batches read from the rows."""

    def __init__(self) -> None:
        self.token: str | None = None
        self.worker: Any = None
        self.files: dict[str, Any] = {}

    def run(self, token: str, make: list, batch_size: int, partial: str | None, source: Any, first: int,
            stop: int, k: int, key: str, cwd: str, threads: int = 0) -> tuple[Any, float, float]:
        """Batches first..stop of the rows -> (per-batch results, or None when written to partial; seconds of the
        batches; seconds spent building the batch function first)."""
        import ray

        from pipeline.runtime.shards import ShardWorker

        if os.path.isdir(cwd) and os.getcwd() != cwd:
            os.chdir(cwd)  # clip paths are relative to the repo root: the same mount path on every node
        build = 0.0
        if token != self.token:
            t0 = time.perf_counter()
            fn, factory = ray.get(make[0])
            self.worker, self.token = ShardWorker(fn, factory, batch_size, partial, threads), token
            build = time.perf_counter() - t0
        self.worker.threads = int(threads)       # runtime.threads of this call (run_shard pins torch to it)
        rows = self._rows(source, first, stop)
        t0 = time.perf_counter()
        results = self.worker.run_shard(rows, k, key)
        return (None if partial is not None else results), time.perf_counter() - t0, build

    def _rows(self, source: Any, first: int, stop: int) -> pd.DataFrame:
        kind, value = source
        if kind == "rows":
            return pickle.loads(value)
        import pyarrow.parquet as pq

        if value not in self.files:
            self.files = {value: pq.ParquetFile(value)}      # one table at a time: a new call, a new file
        return self.files[value].read_row_groups(list(range(first, stop))).to_pandas()


@dataclass
class Task:
    k: int                  # the caller's shard number (fixed shards) or the first batch (sized tasks)
    first: int              # batches first..stop
    stop: int
    key: str
    actor: Any = None


def actors(cfg: Any, n: int) -> list[Any]:
    """min(n, concurrency) warm actors of this process's pool (started on first use, kept across calls; a new
    Ray session or other resources per actor start a new pool, the old actors are let go)."""
    import ray

    key = (ray.get_runtime_context().get_job_id(), float(cfg.num_gpus or 0), float(cfg.num_cpus))
    if _POOL.get("key") != key:
        forget_pools()
        _POOL.update(key=key, actors=[])
    pool = _POOL["actors"]
    want = max(1, min(n, int(cfg.concurrency)))
    while len(pool) > int(cfg.concurrency):       # fewer actors asked for than before: their CPUs go back
        ray.kill(pool.pop())
    remote = ray.remote(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus or 0, max_restarts=0)(EngineActor)
    while len(pool) < want:
        pool.append(remote.remote())
    return pool[:want]


def forget_pools() -> None:
    """Let the warm actors go (after a failed call one may be broken; a new session has none of them)."""
    import ray

    for actor in _POOL.get("actors", []):
        try:
            ray.kill(actor)
        except Exception:  # noqa: BLE001 - an actor of a finished session is already gone
            pass
    _POOL.clear()


def write_rows(table: pd.DataFrame, batch_size: int, folder: Path) -> tuple[str, Any] | None:
    """Write the table as Parquet, one row group per batch ("parquet", path); None when Arrow would change it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        arrow = pa.Table.from_pandas(table, preserve_index=False)
        pd.testing.assert_frame_equal(arrow.slice(0, PROBE_ROWS).to_pandas(),
                                      table.iloc[:PROBE_ROWS].reset_index(drop=True))
    except (pa.ArrowException, AssertionError, TypeError, ValueError) as exc:
        log.info("engine: rows travel pickled (Arrow would not give them back unchanged: %s)", str(exc)[:200])
        return None
    path = folder / "rows.parquet"
    pq.write_table(arrow, path, row_group_size=max(int(batch_size), 1))
    return "parquet", str(path)


def run_tasks(fn: Any, factory: Any, table: pd.DataFrame, *, batch_size: int, cfg: Any, shards: list | None,
              keys: list[str], todo: list[int], partial: str | None, desc: str) -> Iterator[tuple[int, Any]]:
    """Yield (k, per-batch results) of the table's batches as the actors finish them (see the module doc).

    `shards`: the caller's fixed (start, stop) row ranges, with `keys` and the shard numbers `todo` to run; None:
    sized tasks over every batch (k = the first batch)."""
    import ray

    from pipeline.logs import progress
    from pipeline.runtime.shards import shard_file

    n_batches = math.ceil(len(table) / batch_size)
    folder = Path(partial) if partial is not None else Path(tempfile.mkdtemp(
        prefix=".engine-rows-", dir=os.getcwd() if os.environ.get("RAY_ADDRESS") else None))
    rows_file = folder / "rows.parquet"
    try:
        source = write_rows(table, batch_size, folder)
        blob = pickle.dumps((fn, factory), protocol=pickle.HIGHEST_PROTOCOL)
        make = [ray.put((fn, factory))]
        token = hashlib.sha256(blob).hexdigest()
        fixed = None if shards is None else [Task(k, shards[k][0] // batch_size,
                                                  math.ceil(shards[k][1] / batch_size), keys[k]) for k in todo]
        pool = actors(cfg, len(fixed) if fixed is not None else n_batches)
        sizer = Sizer(n_batches, len(pool))
        bar = progress(None, desc=f"{desc} (ray, {len(pool)} actors)", unit="batch",
                       total=n_batches if fixed is None else sum(t.stop - t.first for t in fixed))
        flight: dict[Any, Task] = {}
        LAST_RUN.clear()
        LAST_RUN.update(actors=len(pool), tasks=0, batches=0, build_s=0.0, compute_s=0.0,
                        rows="parquet" if source else "pickled")
        while True:
            for actor in pool:
                while sum(t.actor is actor for t in flight.values()) < IN_FLIGHT:
                    task = fixed.pop(0) if fixed else (sizer.next() if fixed is None else None)
                    if task is None:
                        break
                    task.actor = actor
                    src = source or ("rows", pickle.dumps(table.iloc[task.first * batch_size:task.stop * batch_size],
                                                          protocol=pickle.HIGHEST_PROTOCOL))
                    flight[actor.run.remote(token, make, batch_size, partial, src, task.first, task.stop, task.k,
                                            task.key, os.getcwd(), int(getattr(cfg, "threads", 0)))] = task
            if not flight:
                break
            done, _ = ray.wait(list(flight), num_returns=1)
            task = flight.pop(done[0])
            try:
                results, seconds, build = ray.get(done[0])
            except Exception:
                forget_pools()
                raise
            sizer.observe(task.stop - task.first, seconds)
            for name, value in (("tasks", 1), ("batches", task.stop - task.first), ("build_s", build),
                                ("compute_s", seconds)):
                LAST_RUN[name] += value
            bar.update(task.stop - task.first)
            if partial is not None:        # written by the actor: read back here rather than sent twice
                results = pickle.loads(shard_file(Path(partial), task.k, task.key).read_bytes())
            yield task.k, results
        bar.close()
    finally:
        if partial is None:
            shutil.rmtree(folder, ignore_errors=True)
        elif rows_file.exists():
            rows_file.unlink()


class Sizer:
    """Sized tasks over batches 0..n: one batch per task until a cost is known, then about TARGET_S of work,
    at most remaining / (2 x actors) batches (guided self-scheduling: the actors finish together)."""

    def __init__(self, n_batches: int, n_actors: int) -> None:
        self.next_batch, self.n, self.actors = 0, n_batches, max(n_actors, 1)
        self.per_batch: float | None = None

    def observe(self, batches: int, seconds: float) -> None:
        if batches > 0:
            cost = seconds / batches
            self.per_batch = cost if self.per_batch is None else 0.5 * (self.per_batch + cost)

    def next(self) -> Task | None:
        left = self.n - self.next_batch
        if left <= 0:
            return None
        size = 1
        if self.per_batch is not None:
            size = max(1, min(int(TARGET_S / max(self.per_batch, 1e-6)), left // (2 * self.actors)))
        first = self.next_batch
        self.next_batch += size
        return Task(first, first, first + size, "")
