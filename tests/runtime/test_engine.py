"""The local engine: batches in table order, resume by shard after a failure, clear errors (ray never imported)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.params import ConfigError, Runtime
from pipeline.runtime import engine

ROOT = Path(__file__).resolve().parents[2]


def _table(n: int = 23) -> pd.DataFrame:
    return pd.DataFrame({"clip_id": [f"c{i:03d}" for i in range(n)], "x": [float(i) for i in range(n)],
                         "parent_id": [None if i % 3 else f"p{i}" for i in range(n)]})


def square(batch: pd.DataFrame) -> pd.DataFrame:
    """Result rows of a batch: drops odd x (a batch may return fewer rows than it got), records its size."""
    keep = batch[batch["x"] % 2 == 0]
    return pd.DataFrame({"clip_id": keep["clip_id"], "y": keep["x"] ** 2, "batch_len": len(batch),
                         "first_index": batch.index[0]})


class FailOnce:
    """A batch function that raises on the batch holding `bad` while `flag` exists, and logs every call."""

    def __init__(self, bad: str, flag: Path, calls: list[str]) -> None:
        self.bad, self.flag, self.calls = bad, flag, calls

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        self.calls += batch["clip_id"].tolist()
        if self.bad in set(batch["clip_id"]) and self.flag.exists():
            raise RuntimeError("worker killed")
        return square(batch)


def test_local_engine_returns_the_rows_of_a_plain_loop_in_order():
    table = _table()
    expected = pd.concat([square(table.iloc[i:i + 4].reset_index(drop=True)) for i in range(0, 23, 4)],
                         ignore_index=True)
    got = engine.map_batches(square, table, batch_size=4, shard_batches=2)
    pd.testing.assert_frame_equal(got, expected)
    assert set(got["batch_len"]) == {4, 3} and set(got["first_index"]) == {0}


def test_map_batch_results_keeps_one_result_per_batch_in_order():
    results = engine.map_batch_results(lambda b: b["clip_id"].tolist(), _table(10), batch_size=3, shard_batches=1)
    assert results == [["c000", "c001", "c002"], ["c003", "c004", "c005"], ["c006", "c007", "c008"], ["c009"]]


def test_actor_factory_is_built_once_and_used_for_every_batch():
    built = []

    def factory():
        built.append(1)
        return square

    got = engine.map_batches(None, _table(), batch_size=5, actor_factory=factory)
    assert built == [1] and len(got) == 12


def test_a_failed_batch_resumes_from_the_shards_written_without_duplicates(tmp_path):
    table, partial = _table(), tmp_path / ".partial"
    flag = tmp_path / "fail"
    flag.touch()
    calls: list[str] = []
    with pytest.raises(RuntimeError, match="worker killed"):
        engine.map_batches(FailOnce("c013", flag, calls), table, batch_size=4, shard_batches=2, partial_dir=partial)
    assert len(list(partial.glob("shard-*.pkl"))) == 1          # shard 0 (rows 0-7) finished before the failure
    assert not list(partial.glob(".*"))                         # no half-written temp file left
    flag.unlink()
    calls.clear()
    got = engine.map_batches(FailOnce("c013", flag, calls), table, batch_size=4, shard_batches=2, partial_dir=partial)
    assert calls == table["clip_id"].tolist()[8:]               # only the shards not done were computed
    pd.testing.assert_frame_equal(got, engine.map_batches(square, table, batch_size=4, shard_batches=2))
    assert got["clip_id"].is_unique
    engine.clear_partial(partial)
    assert not partial.exists()


def test_shards_of_another_table_are_not_reused(tmp_path):
    partial = tmp_path / ".partial"
    engine.map_batches(square, _table(), batch_size=4, partial_dir=partial)
    other = _table()
    other["clip_id"] = "z" + other["clip_id"]
    got = engine.map_batches(square, other, batch_size=4, partial_dir=partial)
    assert got["clip_id"].str.startswith("z").all()


def test_bad_engine_settings_are_clear_errors():
    with pytest.raises(ConfigError, match="params runtime.engine: unknown value 'spark'"):
        engine.EngineConfig(engine="spark")
    with pytest.raises(ConfigError, match="params runtime.concurrency: must be >= 1"):
        engine.EngineConfig(engine="ray", concurrency=0)
    with pytest.raises(ValueError, match="batch_size"):
        engine.map_batches(square, _table(), batch_size=0)
    with pytest.raises(ValueError, match="exactly one"):
        engine.map_batches(square, _table(), batch_size=2, actor_factory=lambda: square)
    with pytest.raises(ValueError, match="exactly one"):
        engine.map_batches(None, _table(), batch_size=2)


def test_engine_config_from_params_asks_a_gpu_per_actor_only_on_cuda():
    cfg = engine.EngineConfig.from_runtime(Runtime.from_params({"engine": "ray", "concurrency": 3}), device="cuda:0")
    assert (cfg.engine, cfg.concurrency, cfg.num_gpus) == ("ray", 3, 1.0)
    assert engine.EngineConfig.from_runtime(Runtime.from_params({"device": "cpu"})) == engine.LOCAL


def test_an_empty_table_gives_an_empty_frame():
    assert engine.map_batches(square, _table(0), batch_size=4).empty


def test_the_local_engine_never_imports_ray():
    code = ("import sys, pandas as pd; from pipeline.runtime import engine; "
            "engine.map_batches(lambda b: b, pd.DataFrame({'clip_id': ['a', 'b']}), batch_size=1); "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_a_shard_worker_runs_torch_on_the_threads_it_is_given():
    """What a Ray actor does (issue 27, case 15): torch on runtime.threads, once the batch function imported it."""
    import torch

    def factory():
        import torch  # noqa: F401  the batch function's module imports torch, as a stage's model code does

        return square

    torch.set_num_threads(1)
    engine.ShardWorker(None, factory, 4, None, threads=3)
    assert torch.get_num_threads() == 3
    engine.ShardWorker(None, factory, 4, None, threads=0)   # 0: left as the process has it
    assert torch.get_num_threads() == 3
    assert engine.EngineConfig.from_runtime(Runtime(engine="ray", threads=2)).threads == 2
    torch.set_num_threads(1)
