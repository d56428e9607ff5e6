"""Benchmark the engines: the reconstruct (vocoder) and embed batch functions over the same clips, run by the
local engine and by Ray with 1 and 2 warm-actor pools on a local Ray instance, all rows from one run.

Writes synthetic speech-like FLAC clips of `--seconds` each to a temp dir (nothing read from data/), then runs,
for each workload, `pipeline.runtime.engine.map_batch_results` with the stage's own actor factory
(`reconstruct.batch_function`: builds the vocoder; `embed.batch_function`: loads a ResNet teacher checkpoint,
untrained: speed does not depend on the weights): reconstruct over `--clips` clips, embed over each of
`--embed-sizes` clips. Every Ray row starts a fresh actor pool (its actor start-up is in its seconds, as a stage
pays it once per process; Ray's own start is excluded and given once as ray_init_s). Reported per row: clips/s,
overhead vs the local engine at the same size (Ray seconds / local seconds - 1; at 2 workers net of the
speed-up; the goal for reconstruct at 2 workers: at most 0.15), the Ray pool's tasks, actor build seconds and
compute seconds (pipeline.runtime.ray_pool.LAST_RUN), and the peak RSS summed over this process and its
descendants (Ray's GCS, raylet and workers), sampled every 0.2 s. Each actor and the local run use one torch
thread. embed's break-even point (the clips at which Ray with the most workers takes as long as local) comes
from a straight-line fit of seconds against clips for each engine over the embed sizes. Merges the rows into
reports/bench.json under "engine" and prints a table.

    .venv/bin/python -m benchmarks.bench_engine [--clips 2000] [--embed-sizes 500 2000 6000] [--vocoder world]
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
                     "split": "train", **measure(wave, SR), "sha256": sha, "source": str(path),
                     "matched": None})
    return pd.DataFrame(rows)


def workloads(tmp: Path, vocoder: str, seconds: float) -> dict[str, tuple]:
    """name -> (actor factory, batch size, result -> clips done)."""
    cfg = {"systems": [vocoder], "sample_rate": SR, "seed": 0, "generator": None}
    recon = functools.partial(reconstruct.batch_function, "vocoder", vocoder, cfg, "cpu", tmp / "recon", SR)
    torch.manual_seed(0)
    ckpt = save_checkpoint(build_model(TEACHER).eval(), None, tmp / "teacher" / "model.pt")
    p = embed.EmbedParams(batch_size=32, eval_s=seconds)
    emb = functools.partial(embed.batch_function, ckpt, "resnet", p, torch.device("cpu"), SR)
    return {f"reconstruct/{vocoder}": (recon, 8, lambda r: len(r.rows)),
            "embed/resnet": (emb, 32, lambda r: len(r[1]))}


def run_one(factory, batch: int, count, clips: pd.DataFrame, cfg: EngineConfig) -> dict:
    """One engine run: seconds, clips done, peak tree RSS, and the Ray pool's own figures."""
    from pipeline.runtime import ray_pool

    if cfg.engine == "ray":
        ray_pool.forget_pools()                    # every Ray row pays its actors' start-up
    with TreePeak() as mem:
        t0 = time.perf_counter()
        results = map_batch_results(None, clips, batch_size=batch, cfg=cfg, actor_factory=factory, shard_batches=4)
        seconds = time.perf_counter() - t0
    done = sum(count(r) for r in results)
    row = {"clips": done, "seconds": seconds, "clips_per_s": done / seconds, "peak_tree_mb": mem.peak / 2**20}
    if cfg.engine == "ray":
        last = ray_pool.LAST_RUN
        row.update(ray_tasks=last["tasks"], ray_actor_build_s=last["build_s"], ray_compute_s=last["compute_s"],
                   ray_rows=last["rows"])
    return row


def break_even(rows: list[dict], workload: str, workers: int) -> dict:
    """Straight lines seconds = a + b x clips for local and Ray (`workers`) over the sizes measured; the clips
    at which they cross (None when Ray is not faster per clip)."""
    fits = {}
    for engine, w in (("local", 1), ("ray", workers)):
        pts = [(r["clips"], r["seconds"]) for r in rows if r["workload"] == workload and r["engine"] == engine
               and r["workers"] == w]
        if len(pts) < 2:
            return {}
        b, a = np.polyfit(*zip(*pts), 1)
        fits[engine] = (float(a), float(b))
    (a_l, b_l), (a_r, b_r) = fits["local"], fits["ray"]
    clips = (a_r - a_l) / (b_l - b_r) if b_l > b_r else None
    return {"workload": workload, "workers": workers, "local_fixed_s": a_l, "local_s_per_clip": b_l,
            "ray_fixed_s": a_r, "ray_s_per_clip": b_r, "break_even_clips": clips}


def measure_engines(args: argparse.Namespace, tmp: Path) -> tuple[list[dict], float]:
    """Every (workload, size, engine, workers) row, local rows first; and Ray's start time."""
    import ray

    sizes = {"reconstruct": [args.clips], "embed": sorted(set(args.embed_sizes))}
    clips = make_clips(tmp / "clips", max(args.clips, *args.embed_sizes), args.seconds)
    loads = workloads(tmp, args.vocoder, args.seconds)
    plan = [(name, n) for name in loads for n in sizes[name.split("/")[0]]]
    rows, local_s = [], {}
    for name, n in plan:
        factory, batch, count = loads[name]
        row = run_one(factory, batch, count, clips.iloc[:n], EngineConfig())
        local_s[name, n] = row["seconds"]
        rows.append({"workload": name, "engine": "local", "workers": 1, **row, "overhead_vs_local": 0.0})
    t0 = time.perf_counter()
    ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False,
             runtime_env={"py_modules": [str(Path(embed.__file__).parent)]})
    ray_init_s = time.perf_counter() - t0
    try:
        for name, n in plan:
            factory, batch, count = loads[name]
            for w in args.workers:
                row = run_one(factory, batch, count, clips.iloc[:n], EngineConfig(engine="ray", concurrency=w))
                rows.append({"workload": name, "engine": "ray", "workers": w, **row,
                             "overhead_vs_local": row["seconds"] / local_s[name, n] - 1.0})
    finally:
        ray.shutdown()
    return rows, ray_init_s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=2000, help="clips of the reconstruct workload")
    ap.add_argument("--embed-sizes", type=int, nargs="+", default=[500, 2000, 6000], help="clips of the embed runs")
    ap.add_argument("--seconds", type=float, default=1.0, help="length of each clip")
    ap.add_argument("--vocoder", default="world", help="vocoder system of the reconstruct workload")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path, default=None, help="bench.json to merge into (default reports/bench.json)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    import ray

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_engine_") as d:
        rows, ray_init_s = measure_engines(args, Path(d))
    even = break_even(rows, "embed/resnet", max(args.workers))
    print_table(rows, f"engines, {args.seconds} s clips (ray start {ray_init_s:.1f} s)")
    if even:
        print_table([even], "embed break-even (straight-line fits over the embed sizes)")
    merge_bench("engine", rows, args.out, clips=args.clips, embed_sizes=args.embed_sizes, clip_seconds=args.seconds,
                ray_init_s=ray_init_s, cpu_count=os.cpu_count(), loadavg_1min_before=load,
                loadavg_1min_after=os.getloadavg()[0], ray=ray.__version__, embed_break_even=even,
                note="every Ray row starts a fresh pool: seconds include actor start-up; overhead_vs_local = ray "
                     "seconds / local seconds at the same size - 1; the machine is shared: see loadavg_1min_*")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
