"""Benchmark the embed stage and a teacher training step, per architecture, on CPU threads.

Writes N synthetic 4-second FLAC clips to a temp dir (nothing read from data/), then measures
for each teacher architecture: embedding clips/s with the waves in memory (model only) and end to
end through `pipeline.embed.run` (FLAC decode + first-N-seconds + model + shards + final files),
and the median time of one training step (forward, backward, AdamW) on a batch of random crops.
Merges the rows into reports/bench.json under "embed" and prints a table. Rates are best of
`--repeats` and the 1-minute load average is recorded: on a machine shared with other jobs the
wall-clock figures fall with the load.
Target (issue 4): >= 200 four-second clips/s for the small ResNet on 2 cores.

    .venv/bin/python -m benchmarks.bench_embed --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.common import merge_bench, peak_rss_mb, print_table
from pipeline import embed
from pipeline.audio import write_audio
from pipeline.models import build_model

CONFIGS = {
    "resnet": {"arch": "resnet", "frontend": "logmel", "width": 16, "embedding_dim": 128},
    "convnext": {"arch": "convnext", "frontend": "lfcc", "width": 16, "embedding_dim": 128},
    "lcnn": {"arch": "lcnn", "frontend": "lfcc", "width": 16, "embedding_dim": 128},
}


def make_clips(root: Path, n: int, seconds: float, sr: int = 16000) -> pd.DataFrame:
    """n FLAC clips of speech-like tones plus noise, as the clip-table columns the embed stage reads."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    rows = []
    for i in range(n):
        f0 = 100 + 10 * (i % 20)
        wave = 0.2 * np.sin(2 * np.pi * f0 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) \
            + 0.02 * rng.standard_normal(t.size)
        path = root / f"c{i:05d}.flac"
        write_audio(path, wave.astype(np.float32), sr)
        rows.append({"clip_id": f"c{i:05d}", "path": str(path), "corpus": "bench",
                     "label": "bonafide" if i % 4 == 0 else "spoof", "split": "train"})
    return pd.DataFrame(rows)


def model_only(model: torch.nn.Module, n: int, seconds: float, batch: int, repeats: int) -> tuple[float, float]:
    """Best-of-repeats clips/s of `features` on in-memory waves: (wall clock, per CPU-second of this process).

    On a machine shared with other jobs the wall-clock rate drops with the load; clips per CPU-second
    times the thread count estimates the rate on that many dedicated cores.
    """
    waves = torch.randn(batch, int(seconds * 16000)) * 0.1
    with torch.inference_mode():
        model.features(waves)  # warm-up
        best, best_cpu = 0.0, 0.0
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            done = 0
            while done < n:
                model.features(waves)
                done += batch
            best = max(best, done / (time.perf_counter() - t0))
            best_cpu = max(best_cpu, done / max(time.process_time() - c0, 1e-9))
    return best, best_cpu


def end_to_end(model: torch.nn.Module, clips: pd.DataFrame, seconds: float, batch: int, out: Path,
               repeats: int) -> float:
    """Best-of-repeats clips/s of the embed stage's run() over FLAC files (fresh output dirs: nothing resumed)."""
    p = embed.EmbedParams(batch_size=batch, eval_s=seconds)
    vec, dim = embed.build_vectorizer(model, p, torch.device("cpu"))
    # Warm-up on one batch: first calls pay for lazy imports (pyarrow, soundfile) and allocator growth.
    embed.run(clips.iloc[:batch], vec, dim, p, 16000, out.with_name(out.name + "_warm"), "warm", torch.device("cpu"))
    best = 0.0
    for k in range(repeats):
        t0 = time.perf_counter()
        embed.run(clips, vec, dim, p, 16000, out.with_name(f"{out.name}_{k}"), "bench", torch.device("cpu"))
        best = max(best, len(clips) / (time.perf_counter() - t0))
    return best


def train_step_s(model: torch.nn.Module, batch: int, crop_s: float, steps: int) -> tuple[float, float]:
    """(median, min) seconds of one training step (forward, CE, backward, AdamW) on random crops."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, int(crop_s * 16000)) * 0.1
    y = torch.randint(0, 2, (batch,))
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:  # the first steps include allocator warm-up
            times.append(time.perf_counter() - t0)
    model.eval()
    return statistics.median(times), min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clips", type=int, default=192)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--train-batch", type=int, default=32)
    ap.add_argument("--crop", type=float, default=2.0, help="training crop (pretrain.crop_s)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--archs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clips = make_clips(Path(tmp) / "audio", args.clips, args.seconds)
        for name in args.archs:
            model = build_model(CONFIGS[name]).eval()
            wall, per_cpu = model_only(model, args.clips, args.seconds, args.batch, args.repeats)
            step_med, step_min = train_step_s(model, args.train_batch, args.crop, args.steps)
            rows.append({
                "arch": name, "frontend": CONFIGS[name]["frontend"], "width": CONFIGS[name]["width"],
                "params_k": round(sum(p.numel() for p in model.parameters()) / 1000, 1),
                "threads": args.threads, "clip_s": args.seconds, "batch": args.batch,
                "model_clips_per_s": round(wall, 1),
                "model_clips_per_cpu_s_x_threads": round(per_cpu * args.threads, 1),
                "e2e_clips_per_s": round(end_to_end(model, clips, args.seconds, args.batch, Path(tmp) / name,
                                                    args.repeats), 1),
                "train_batch": args.train_batch, "train_crop_s": args.crop,
                "train_step_s": round(step_med, 4), "train_step_min_s": round(step_min, 4),
                "peak_rss_mb": round(peak_rss_mb(), 1), "load_avg_1m": round(os.getloadavg()[0], 2),
            })
    print_table(rows, f"embed: {args.clips} x {args.seconds:g} s clips, {args.threads} threads "
                      "(target: resnet >= 200 clips/s on 2 cores)")
    if not args.no_save:
        merge_bench("embed", rows)


if __name__ == "__main__":
    main()
