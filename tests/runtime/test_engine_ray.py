"""The ray engine on a local 2-CPU Ray instance (started once for the module) gives the local engine's results:
a toy batch function, a torch model in an actor pool, a resumed failure, and the reconstruct stage's vocoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import reconstruct
from pipeline.runtime import engine
from tests.conftest import tiny_clip_table
from tests.runtime.test_engine import _table, square

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a Ray start and its actor pools take minutes on 2 shared cores
ROOT = Path(__file__).resolve().parents[2]
RAY2 = engine.EngineConfig(engine="ray", concurrency=2)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray instance (2 CPUs) for the module; the workers import this checkout's pipeline and tests."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"py_modules": [str(ROOT / "pipeline"), str(ROOT / "tests")]})
    yield
    ray.shutdown()


def tiny_model_factory():
    """A seeded torch model built in the actor (as a stage's teacher would be loaded there)."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).eval()

    def embed(batch: pd.DataFrame) -> pd.DataFrame:
        x = np.stack([np.sin(np.arange(4) * v) for v in batch["x"]]).astype(np.float32)
        with torch.inference_mode():
            y = model(torch.from_numpy(x)).numpy().astype(np.float16)
        return pd.DataFrame({"clip_id": batch["clip_id"], "emb": list(y)})

    return embed


class LoggedFail:
    """Raises on the batch holding `bad` while `flag` exists; appends every batch's ids to `log` (any process)."""

    def __init__(self, bad: str, flag: str, log: str) -> None:
        self.bad, self.flag, self.log = bad, flag, log

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        with open(self.log, "a") as fh:
            fh.write("".join(f"{c}\n" for c in batch["clip_id"]))
        if self.bad in set(batch["clip_id"]) and Path(self.flag).exists():
            raise RuntimeError("worker killed")
        return square(batch)


def test_a_batch_function_on_ray_gives_the_local_rows_in_order():
    table = _table(41)
    local = engine.map_batches(square, table, batch_size=4, shard_batches=2)
    got = engine.map_batches(square, table, batch_size=4, shard_batches=2, engine="ray", concurrency=2)
    pd.testing.assert_frame_equal(got, local)


def test_a_torch_model_in_an_actor_pool_gives_the_local_embeddings():
    table = _table(30)
    local = engine.map_batches(None, table, batch_size=4, actor_factory=tiny_model_factory, shard_batches=1)
    got = engine.map_batches(None, table, batch_size=4, actor_factory=tiny_model_factory, shard_batches=1, cfg=RAY2)
    assert got["clip_id"].tolist() == local["clip_id"].tolist()
    np.testing.assert_array_equal(np.stack(got["emb"]), np.stack(local["emb"]))


def _wait_until_quiet(path: Path, quiet_s: float = 3.0, limit_s: float = 60.0) -> None:
    """Return once `path` has not grown for `quiet_s` seconds (or after `limit_s`)."""
    import time

    start, last, size = time.monotonic(), time.monotonic(), -1
    while time.monotonic() - start < limit_s:
        now = path.stat().st_size if path.exists() else 0
        if now != size:
            size, last = now, time.monotonic()
        elif time.monotonic() - last >= quiet_s:
            return
        time.sleep(0.2)


def test_a_worker_failure_on_ray_resumes_without_duplicate_or_missing_rows(tmp_path):
    table, partial = _table(40), tmp_path / ".partial"
    flag, log = tmp_path / "fail", tmp_path / "calls.txt"
    flag.touch()
    fn = LoggedFail("c033", str(flag), str(log))
    with pytest.raises(Exception, match="worker killed"):
        engine.map_batches(fn, table, batch_size=4, shard_batches=1, partial_dir=partial, cfg=RAY2)
    _wait_until_quiet(log)  # the other actor may still finish its batch after the driver raised
    done = len(list(partial.glob("shard-*.pkl")))
    assert done < 10  # shard_batches on ray: 10 batches over 2 actors -> shards of 2 batches
    flag.unlink()
    log.unlink()
    got = engine.map_batches(fn, table, batch_size=4, shard_batches=1, partial_dir=partial, cfg=RAY2)
    pd.testing.assert_frame_equal(got, engine.map_batches(square, table, batch_size=4, shard_batches=1))
    assert len(log.read_text().split()) == 40 - 4 * done     # the finished shards were not computed again


def test_reconstruct_vocoder_on_ray_writes_the_local_fakes_byte_for_byte(tmp_path, monkeypatch):
    """Issue 27, case 15: with runtime.threads 2, actors that ran torch on Ray's 1 thread wrote 32 of 48 griffinlim
    and hifigan FLACs 1 LSB off the local engine's (measured); on the driver's thread count every FLAC is equal."""
    import torch

    monkeypatch.chdir(tmp_path)
    clips = tiny_clip_table(Path("clips"), n_speakers=4, clips_per_speaker=2)
    p = reconstruct.ReconstructParams(paradigm="vocoder", batch_size=3, settings={
        "systems": ["world", "griffinlim", "hifigan_universal"], "griffinlim_iters": 4})
    Path("gen.py").write_text("# stands in for the vocoder module\n")
    outs, threads = {}, torch.get_num_threads()
    torch.set_num_threads(2)   # runtime.threads: 2, as reconstruct.main sets it on the driver
    try:
        for name, cfg in (("local", engine.LOCAL), ("ray", engine.EngineConfig("ray", concurrency=2, threads=2))):
            outs[name] = reconstruct.run(clips, p, "gen.py", Path(f"recon_{name}"), 16000, 3, "cpu", engine=cfg)
    finally:
        torch.set_num_threads(threads)
    (local, q_local), (got, q_ray) = outs["local"], outs["ray"]
    assert len(local) == 24
    pd.testing.assert_frame_equal(got.drop(columns="path"), local.drop(columns="path"))
    assert (got["path"].str.replace("recon_ray", "recon_local") == local["path"]).all()
    for path in local["path"]:
        assert Path(path.replace("recon_local", "recon_ray")).read_bytes() == Path(path).read_bytes(), path
    for system, stats in q_local["systems"].items():
        for key in ("n", "logmel_distance", "snr_db", "status"):
            assert q_ray["systems"][system][key] == stats[key]


def test_embed_on_ray_writes_the_local_embeddings(tmp_path):
    import functools

    import torch

    from pipeline import embed
    from pipeline.models import build_model, save_checkpoint
    from pipeline.params import TeacherParams
    from tests.test_embed import TEACHER

    clips = tiny_clip_table(tmp_path / "audio", n_speakers=4, clips_per_speaker=3, seconds=0.5)
    torch.manual_seed(0)
    model = build_model(TeacherParams.from_params(TEACHER, name="t").model_config(16000)).eval()
    path = save_checkpoint(model, None, tmp_path / "teacher" / "model.pt")
    p = embed.EmbedParams(batch_size=4, eval_s=0.5, shard_batches=1)
    cpu = torch.device("cpu")
    vec, dim = embed.build_vectorizer(model, p, cpu, with_scores=True)   # as embed.main and the actors do
    fp = embed.fingerprint(path, p, 16000)
    factory = functools.partial(embed.batch_function, path, "resnet", p, cpu, 16000)
    embed.run(clips, vec, dim, p, 16000, tmp_path / "local", fp, cpu)
    summary = embed.run(clips, vec, dim, p, 16000, tmp_path / "ray", fp, cpu, engine=RAY2, actor_factory=factory)
    assert summary["computed_clips"] == len(clips)
    for name in ("emb.npy", "ids.parquet", "rejects.parquet"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


def test_prepare_on_ray_writes_the_local_clips_and_rejects(tmp_path):
    from pipeline import prepare
    from tests.test_prepare import _corpus

    _corpus(tmp_path / "corpus")
    p = prepare.PrepareParams(corpora=({"name": "demo", "root": str(tmp_path / "corpus")},), seed=7,
                              max_reject_fraction=0.9)
    local = prepare.run(p, tmp_path / "local")
    got = prepare.run(p, tmp_path / "ray", engine=RAY2)
    pd.testing.assert_frame_equal(got[0].drop(columns="path"), local[0].drop(columns="path"))
    pd.testing.assert_frame_equal(got[1].drop(columns="path"), local[1].drop(columns="path"))
    assert len(local[1]) >= 8 and got[2] == local[2]


def test_score_on_ray_writes_the_local_scores(tmp_path):
    import torch

    from pipeline import score
    from pipeline.models import build_model, save_checkpoint
    from pipeline.params import TeacherParams
    from pipeline.schema import write_clips
    from tests.test_embed import TEACHER

    clips = tiny_clip_table(tmp_path / "audio", n_speakers=3, clips_per_speaker=3, seconds=0.5)
    torch.manual_seed(0)
    model = build_model(TeacherParams.from_params(TEACHER, name="t").model_config(16000)).eval()
    save_checkpoint(model, None, tmp_path / "model" / "model.pt")
    write_clips(clips, tmp_path / "clips.parquet")
    common = ["--model", str(tmp_path / "model"), str(tmp_path / "clips.parquet"), "--batch-size", "4",
              "--eval-s", "0.5", "--device", "cpu", "--threads", "2"]
    assert score.main([*common, "--out", str(tmp_path / "local.tsv")]) == 0
    assert score.main([*common, "--out", str(tmp_path / "ray.tsv"), "--engine", "ray"]) == 0
    local, on_ray = score.read_scores(tmp_path / "local.tsv"), score.read_scores(tmp_path / "ray.tsv")
    assert list(on_ray) == list(local) == list(clips["clip_id"])  # every clip, in row order
    assert on_ray == local   # to the last digit: the actors score on --threads too (issue 27, case 15)


def threaded_sum_factory():
    """A batch function whose result depends on torch's thread count: a long float32 sum is split per thread."""
    import torch

    x = torch.randn(4_000_000, generator=torch.Generator().manual_seed(0))

    def total(batch: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"clip_id": batch["clip_id"], "threads": torch.get_num_threads(),
                             "sum": float(x.sum())})

    return total


def test_actors_run_torch_on_the_driver_threads_so_sums_match_the_local_engine():
    """Before: Ray started each actor with OMP_NUM_THREADS=1 while the driver ran runtime.threads (2); a torch
    reduction then rounded differently, and reconstructions and scores moved by a 16-bit step (issue 27, case 15)."""
    import torch

    table = _table(8)
    torch.set_num_threads(2)
    local = engine.map_batches(None, table, batch_size=4, actor_factory=threaded_sum_factory)
    one = threaded_sum_factory()(table.iloc[:1])
    torch.set_num_threads(1)
    assert one["sum"][0] != threaded_sum_factory()(table.iloc[:1])["sum"][0]   # the thread count matters here
    got = engine.map_batches(None, table, batch_size=4, actor_factory=threaded_sum_factory,
                             cfg=engine.EngineConfig(engine="ray", concurrency=2, threads=2))
    assert got["threads"].tolist() == [2] * 8
    pd.testing.assert_frame_equal(got, local)
