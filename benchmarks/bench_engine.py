"""Benchmark the engines: the reconstruct (vocoder) and embed batch functions over the same clips, run by the
local engine and by Ray Data with 1 and 2 actors on a local Ray instance.

Writes `--clips` synthetic speech-like FLAC clips of `--seconds` each to a temp dir (nothing read from
data/), then runs, for each workload, `pipeline.runtime.engine.map_batch_results` with the stage's own actor
factory (`reconstruct.batch_function`: builds the vocoder; `embed.batch_function`: loads a ResNet teacher
checkpoint, untrained: speed does not depend on the weights). Reported per row: clips/s (wall clock,
actor start-up included, Ray start excluded and given once as ray_init_s), overhead vs the local engine
(Ray seconds / local seconds - 1; at 1 worker the cost of Ray, at 2 workers net of the speed-up),
and the peak RSS summed over this process and all its descendants (Ray's GCS, raylet and workers),
sampled every 0.2 s. Each actor and the local run use one torch thread. Merges the rows into
reports/bench.json under "engine" and prints a table.

    .venv/bin/python -m benchmarks.bench_engine [--clips 500] [--seconds 1.0] [--vocoder hifigan_universal]
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import torch

from benchmarks.common import merge_bench, print_table
from pipeline import embed, reconstruct
from pipeline.audio import measure, write_audio
from pipeline.models import build_model, save_checkpoint
from pipeline.runtime.engine import EngineConfig, map_batch_results

SR = 16000
TEACHER = {"arch": "resnet", "frontend": "logmel", "width": 16, "embedding_dim": 128, "sample_rate": SR}


class TreePeak:
    """Peak of the summed RSS of this process and its descendants, sampled in a thread."""

    def __init__(self, every_s: float = 0.2) -> None:
        self.every_s, self.peak, self._stop = every_s, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.every_s)

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def make_clips(root: Path, n: int, seconds: float) -> pd.DataFrame:
    """n bona fide clip-table rows with FLACs of speech-like tones (the columns reconstruct and embed read)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    rows = []
    for i in range(n):
        f0 = 100 + 10 * (i % 20)
        phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 5 * t))) / SR
        wave = (0.15 * sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
                + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
        path = root / f"c{i:05d}.flac"
        sha = write_audio(path, wave, SR)
        rows.append({"clip_id": f"c{i:05d}", "path": str(path), "corpus": "bench", "speaker": f"s{i % 10}",
                     "label": "bonafide", "system": "-", "paradigm": "bonafide", "parent_id": None,
                     "split": "train", **measure(wave, SR), "sha256": sha, "source": str(path)})
    return pd.DataFrame(rows)


def workloads(clips: pd.DataFrame, tmp: Path, vocoder: str) -> dict[str, tuple]:
    """name -> (actor factory, batch size, result -> clips done)."""
    cfg = {"systems": [vocoder], "sample_rate": SR, "seed": 0, "generator": None}
    recon = functools.partial(reconstruct.batch_function, "vocoder", vocoder, cfg, "cpu", tmp / "recon", SR)
    torch.manual_seed(0)
    ckpt = save_checkpoint(build_model(TEACHER).eval(), None, tmp / "teacher" / "model.pt")
    p = embed.EmbedParams(batch_size=32, eval_s=float(clips["duration_s"].iloc[0]))
    emb = functools.partial(embed.batch_function, ckpt, "resnet", p, torch.device("cpu"), SR)
    return {f"reconstruct/{vocoder}": (recon, 8, lambda r: len(r.rows)),
            "embed/resnet": (emb, 32, lambda r: len(r[1]))}


def run_one(factory, batch: int, count, clips: pd.DataFrame, cfg: EngineConfig) -> tuple[float, int, int]:
    """(seconds, clips done, peak tree RSS bytes) of one engine run."""
    with TreePeak() as mem:
        t0 = time.perf_counter()
        results = map_batch_results(None, clips, batch_size=batch, cfg=cfg, actor_factory=factory, shard_batches=4)
        seconds = time.perf_counter() - t0
    return seconds, sum(count(r) for r in results), mem.peak


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=1.0, help="length of each clip")
    ap.add_argument("--vocoder", default="hifigan_universal", help="vocoder system of the reconstruct workload")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    import ray

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_engine_") as d:
        tmp = Path(d)
        clips = make_clips(tmp / "clips", args.clips, args.seconds)
        loads = workloads(clips, tmp, args.vocoder)
        local_s = {}
        for name, (factory, batch, count) in loads.items():
            seconds, done, peak = run_one(factory, batch, count, clips, EngineConfig())
            local_s[name] = seconds
            rows.append({"workload": name, "engine": "local", "workers": 1, "clips": done, "seconds": seconds,
                         "clips_per_s": done / seconds, "overhead_vs_local": 0.0, "peak_tree_mb": peak / 2**20})
        t0 = time.perf_counter()
        ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False,
                 runtime_env={"py_modules": [str(Path(embed.__file__).parent)]})
        ray_init_s = time.perf_counter() - t0
        try:
            for name, (factory, batch, count) in loads.items():
                for w in args.workers:
                    seconds, done, peak = run_one(factory, batch, count, clips, EngineConfig(engine="ray",
                                                                                             concurrency=w))
                    rows.append({"workload": name, "engine": "ray", "workers": w, "clips": done, "seconds": seconds,
                                 "clips_per_s": done / seconds, "overhead_vs_local": seconds / local_s[name] - 1.0,
                                 "peak_tree_mb": peak / 2**20})
        finally:
            ray.shutdown()
    print_table(rows, f"engines over {args.clips} clips of {args.seconds} s (ray start {ray_init_s:.1f} s)")
    merge_bench("engine", rows, clips=args.clips, clip_seconds=args.seconds, ray_init_s=ray_init_s,
                cpu_count=os.cpu_count(), loadavg_1min=os.getloadavg()[0], ray=ray.__version__,
                note="seconds include actor start-up; overhead_vs_local = ray seconds / local seconds - 1")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
