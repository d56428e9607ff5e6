"""A shard of a per-clip stage's table: its resume file and the worker that runs its batches (both engines).

Writes the resume file `shard-<k>-<key>.pkl` of a finished shard into `partial_dir` (atomically); reads nothing.
pipeline/runtime/engine.py (the local loop) and pipeline/runtime/ray_pool.py (the Ray actors) share it.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.io import atomic_path

BatchFn = Callable[[pd.DataFrame], Any]


def shard_file(partial_dir: Path, k: int, key: str) -> Path:
    """The resume file of shard k (key: engine.shard_key of its clip ids)."""
    return Path(partial_dir) / f"shard-{k:06d}-{key}.pkl"


class ShardWorker:
    """Runs the batch function over the batches of a shard: the local loop's state, and a Ray actor's (the model
    lives here)."""

    def __init__(self, fn: BatchFn | None, actor_factory: Callable[[], BatchFn] | None, batch_size: int,
                 partial_dir: str | None, threads: int = 0) -> None:
        if (fn is None) == (actor_factory is None):
            raise ValueError("engine: give exactly one of a batch function and an actor_factory")
        self.fn = actor_factory() if actor_factory is not None else fn
        self.batch_size = int(batch_size)
        self.partial_dir = partial_dir
        self.threads = int(threads)
        self.pin_torch_threads()

    def pin_torch_threads(self) -> None:
        """Run torch on the driver's thread count (`threads`, runtime.threads) once the batch function has imported
        it. Ray starts an actor with OMP_NUM_THREADS=1, and a reduction summed over 1 thread and over 2 rounds
        differently: outputs then differed from the local engine's by a 16-bit step. Torch-free stages never
        import it here."""
        if self.threads > 0 and "torch" in sys.modules and sys.modules["torch"].get_num_threads() != self.threads:
            sys.modules["torch"].set_num_threads(self.threads)

    def run_shard(self, rows: pd.DataFrame, k: int, key: str,
                  on_batch: Callable[[int], Any] | None = None) -> list[Any]:
        """The per-batch results of one shard (written to the resume file first when there is one); `on_batch(n)` is
        called with each batch's row count when it is done (progress)."""
        self.pin_torch_threads()
        results = []
        for s in range(0, len(rows), self.batch_size):
            batch = rows.iloc[s:s + self.batch_size].reset_index(drop=True)
            results.append(self.fn(batch))
            if on_batch is not None:
                on_batch(len(batch))
        if self.partial_dir is not None:
            with atomic_path(shard_file(Path(self.partial_dir), k, key)) as tmp:
                tmp.write_bytes(pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL))
        return results
