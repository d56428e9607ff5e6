"""Run a per-clip batch function over a clip table: locally (in order, one process) or on Ray.

Reads nothing but the table it is given; writes only the optional resume shards (`partial_dir`).
Per-clip stages are functions from a batch of clip-table rows to a result (DESIGN.md, Conventions);
this module runs such a function over every batch of a table and returns the results in table order,
whatever the engine:

- `local` (the default): batches in order, in this process; ray is never imported.
- `ray`: a pool of `concurrency` warm Ray actors (`num_gpus` each when the stage runs on CUDA) that each
  build the batch function once (`actor_factory`: loads the model in the actor, not in the driver), read
  their rows themselves and take tasks sized to the workload (pipeline/runtime/ray_pool.py). Joins the
  cluster at `RAY_ADDRESS` when set, else starts a local instance of `ray_num_cpus` CPUs.

Each batch sees the same rows, in the same order, with the same dtypes and a fresh 0..n-1 index, on both
engines (rows that Arrow would change travel pickled), and results come back pickled: the results are
identical to the local engine's.

Resumable by shard: with `partial_dir`, each finished shard's results are written there atomically
as `shard-<k>-<key>.pkl`, key = sha256 of the shard's clip ids; a re-run (after a crash or a killed
worker) loads the shards that exist and computes only the others, so no row is lost or duplicated.
The caller removes the directory (`clear_partial`) once its own outputs are written. On a cluster,
`partial_dir` and the audio paths must be on a filesystem every node sees.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import shutil
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.logs import progress
from pipeline.params import ENGINES, ConfigError, Runtime, number, one_of
from pipeline.runtime.shards import BatchFn, ShardWorker, shard_file

log = logging.getLogger("pipeline.runtime.engine")



@dataclass(frozen=True)
class EngineConfig:
    """params `runtime` as the engine needs it: engine, actor count, GPUs and CPUs per actor.

    A stage makes it from its parsed `runtime` block (pipeline.params.Runtime) with `from_runtime`; a bad value
    is a ConfigError naming the runtime key.
    """

    engine: str = "local"
    concurrency: int = 1
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    ray_num_cpus: int | None = None   # CPUs of a local Ray instance (None: all); ignored with RAY_ADDRESS
    threads: int = 0                  # torch CPU threads in each actor (runtime.threads; 0: Ray's default, 1)

    def __post_init__(self) -> None:
        one_of("runtime.engine", self.engine, ENGINES)
        number("runtime.concurrency", self.concurrency, low=1, integer=True)
        if self.num_gpus < 0 or self.num_cpus <= 0:
            raise ConfigError("engine: num_gpus must be >= 0 and num_cpus > 0")

    @classmethod
    def from_runtime(cls, runtime: Runtime, device: Any = None) -> EngineConfig:
        """From params `runtime` (engine, concurrency, ray_num_cpus); one GPU per actor when `device` is CUDA."""
        cuda = str(device if device is not None else runtime.device).startswith("cuda")
        return cls(engine=runtime.engine, concurrency=runtime.concurrency, num_gpus=1.0 if cuda else 0.0,
                   ray_num_cpus=runtime.ray_num_cpus,
                   threads=runtime.threads if runtime.engine == "ray" else 0)  # local: the stage set them already


LOCAL = EngineConfig()


def shard_key(ids: list[str]) -> str:
    """A short hash of a shard's clip ids, in order: the name of its resume file."""
    return hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()[:20]


def plan_shards(n_rows: int, batch_size: int, shard_batches: int) -> list[tuple[int, int]]:
    """(start, stop) row ranges of the shards: whole batches, `shard_batches` of them per shard."""
    if batch_size < 1 or shard_batches < 1:
        raise ValueError(f"batch_size and shard_batches must be >= 1, got {batch_size}, {shard_batches}")
    step = batch_size * shard_batches
    return [(s, min(s + step, n_rows)) for s in range(0, n_rows, step)]


def clear_partial(partial_dir: str | Path | None) -> None:
    """Remove the resume shards once the caller's outputs are written."""
    if partial_dir is not None and Path(partial_dir).exists():
        shutil.rmtree(partial_dir)


# What pipeline/__main__.py sets before torch is imported (pipeline/runtime/cpu_isa.py); named here, not imported, so
# that the torch-free stages that use this engine do not depend on the pin.
FORWARDED_ENV = ("OMP_WAIT_POLICY", "HARDSET_CPU_ISA", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")


def ray_init(cfg: EngineConfig) -> None:
    """Join the cluster at RAY_ADDRESS, or start a local instance (once per process)."""
    import ray  # the local engine never imports ray

    if ray.is_initialized():
        return
    # Ship this checkout's `pipeline` package to the workers, so they run the driver's code, and the driver's CPU
    # pin: workers on a joined cluster do not inherit the driver's environment.
    runtime_env: dict[str, Any] = {"py_modules": [str(Path(__file__).resolve().parents[1])]}
    env_vars = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    if env_vars:
        runtime_env["env_vars"] = env_vars
    address = os.environ.get("RAY_ADDRESS")
    if address:
        log.info("joining the Ray cluster at %s", address)
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    else:
        log.info("starting a local Ray instance (%s CPUs)", cfg.ray_num_cpus or "all")
        ray.init(num_cpus=cfg.ray_num_cpus, include_dashboard=False, runtime_env=runtime_env, log_to_driver=False)


def iter_shards(fn: BatchFn | None, table: pd.DataFrame, *, batch_size: int, cfg: EngineConfig = LOCAL,
                actor_factory: Callable[[], BatchFn] | None = None, partial_dir: str | Path | None = None,
                shard_batches: int = 16, id_column: str = "clip_id", desc: str = "batches",
                skip: Collection[int] = ()) -> Iterator[tuple[int, list[Any]]]:
    """Yield (shard number, its per-batch results) for every shard but `skip`; done shards (resume files) first."""
    if (fn is None) == (actor_factory is None):
        raise ValueError("engine: give exactly one of a batch function and an actor_factory")
    shards = plan_shards(len(table), batch_size, shard_batches)
    skip = set(skip)
    ids = table[id_column].astype(str).tolist() if id_column in table.columns else [str(i) for i in range(len(table))]
    keys = [shard_key(ids[a:b]) for a, b in shards]
    todo = []
    for k, key in enumerate(keys):
        if k in skip:
            continue
        f = shard_file(Path(partial_dir), k, key) if partial_dir is not None else None
        if f is not None and f.exists():
            yield k, pickle.loads(f.read_bytes())
        else:
            todo.append(k)
    if partial_dir is not None and len(todo) + len(set(skip)) < len(shards):
        log.info("%s: %d of %d shards done before, resuming", desc, len(shards) - len(todo), len(shards))
    if not todo:
        return
    part = None if partial_dir is None else str(partial_dir)
    if partial_dir is not None:
        Path(partial_dir).mkdir(parents=True, exist_ok=True)
    if cfg.engine == "local":
        worker = ShardWorker(fn, actor_factory, batch_size, part)
        bar = progress(None, desc=desc, total=sum(shards[k][1] - shards[k][0] for k in todo), unit="row")
        for k in todo:
            a, b = shards[k]
            yield k, worker.run_shard(table.iloc[a:b], k, keys[k], on_batch=bar.update)
        bar.close()
        return
    from pipeline.runtime import ray_pool

    ray_init(cfg)
    # without resume files or shards to skip, the actors take tasks sized to the workload (results do not
    # depend on how batches group); otherwise the caller's shards, which name the resume files
    sized = partial_dir is None and not skip
    yield from ray_pool.run_tasks(fn, actor_factory, table, batch_size=batch_size, cfg=cfg,
                                  shards=None if sized else shards, keys=keys, todo=todo, partial=part, desc=desc)


def map_batch_results(fn: BatchFn | None, table: pd.DataFrame, *, batch_size: int, cfg: EngineConfig = LOCAL,
                      actor_factory: Callable[[], BatchFn] | None = None, partial_dir: str | Path | None = None,
                      shard_batches: int = 16, id_column: str = "clip_id", desc: str = "batches") -> list[Any]:
    """Every batch's result (any picklable object), in table order, on the configured engine."""
    by_shard = dict(iter_shards(fn, table, batch_size=batch_size, cfg=cfg, actor_factory=actor_factory,
                                partial_dir=partial_dir, shard_batches=shard_batches, id_column=id_column, desc=desc))
    return [r for k in sorted(by_shard) for r in by_shard[k]]


def map_batches(fn: BatchFn | None, table: pd.DataFrame, *, batch_size: int, engine: str = "local",
                concurrency: int = 1, num_gpus: float = 0.0, actor_factory: Callable[[], BatchFn] | None = None,
                partial_dir: str | Path | None = None, shard_batches: int = 16, cfg: EngineConfig | None = None,
                id_column: str = "clip_id", desc: str = "batches") -> pd.DataFrame:
    """Run a batch function (rows -> result rows, a DataFrame) over `table`; the result rows in table order.

    `fn` is a plain function (picklable for ray), or `actor_factory` a picklable zero-argument callable
    returning the batch function (called once per actor: load the model there). `cfg` overrides the
    engine keywords.
    """
    cfg = cfg or EngineConfig(engine=engine, concurrency=concurrency, num_gpus=num_gpus)
    results = map_batch_results(fn, table, batch_size=batch_size, cfg=cfg, actor_factory=actor_factory,
                                partial_dir=partial_dir, shard_batches=shard_batches, id_column=id_column, desc=desc)
    frames = [r for r in results if len(r)]
    if not frames:
        return results[0] if results else pd.DataFrame()
    return pd.concat(frames, ignore_index=True)
