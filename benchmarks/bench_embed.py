"""Benchmark the embed stage and a teacher training step, per architecture, on CPU threads (or a GPU).

Writes N synthetic 4-second FLAC clips to a temp dir (nothing read from data/), then measures
for each teacher architecture: embedding clips/s with the waves in memory (model only) and end to
end through `pipeline.embed.run` (FLAC decode + first-N-seconds + model + shards + final files),
and the median time of one training step (forward, backward, AdamW) on a batch of random crops.
Merges the rows into reports/bench.json under "embed" and prints a table. Rates are best of
`--repeats` and the 1-minute load average is recorded: on a machine shared with other jobs the
wall-clock figures fall with the load.
Target (issue 4): >= 200 four-second clips/s for the small ResNet on 2 cores.
Pretrained-detector architectures (issue 13): AASIST and AASIST-L (random weights: the speed does not
depend on them) and an SSL teacher of wav2vec 2.0 base size (12 layers, 768 wide, 95M parameters,
built from a random `Wav2Vec2Config()` in a temp dir, as `ssl_path` would load a real one) with a
linear back end. They are 100-1000x slower, so they run `--heavy-clips` clips at `--heavy-batch` and
train `--heavy-train-batch`. `--device cuda --precision bf16` measures the GPU path (embed.precision).

    .venv/bin/python -m benchmarks.bench_embed --threads 2
    .venv/bin/python -m benchmarks.bench_embed --device cuda --precision bf16 --archs aasist ssl-base
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from benchmarks.bench_engine import make_clips  # a valid clip table of speech-like FLACs
from benchmarks.common import merge_bench, peak_rss_mb, print_table
from pipeline import embed
from pipeline.models import build_model
from pipeline.params import PRECISIONS
from pipeline.runtime.devices import inference_precision, resolve_device

CONFIGS = {
    "resnet": {"arch": "resnet", "frontend": "logmel", "width": 16, "embedding_dim": 128},
    "convnext": {"arch": "convnext", "frontend": "lfcc", "width": 16, "embedding_dim": 128},
    "lcnn": {"arch": "lcnn", "frontend": "lfcc", "width": 16, "embedding_dim": 128},
    "aasist": {"arch": "aasist"},
    "aasist-l": {"arch": "aasist-l"},
    "ssl-base": {"arch": "ssl", "ssl_layer": "weighted", "backend": "linear"},  # + ssl_path: a temp base-size dir
}
HEAVY = ("aasist", "aasist-l", "ssl-base")
CPU = torch.device("cpu")


def base_size_ssl_dir(root: Path) -> str:
    """A wav2vec 2.0 base-size model (random weights) saved as a local `from_pretrained` directory."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(root / "w2v2-base")
    return str(root / "w2v2-base")


def model_only(model: torch.nn.Module, n: int, seconds: float, batch: int, repeats: int,
               device: torch.device = CPU, precision: str = "fp32") -> tuple[float, float]:
    """Best-of-repeats clips/s of `features` on in-memory waves: (wall clock, per CPU-second of this process).

    On a machine shared with other jobs the wall-clock rate drops with the load; clips per CPU-second
    times the thread count estimates the rate on that many dedicated cores.
    """
    waves = (torch.randn(batch, int(seconds * 16000)) * 0.1).to(device)
    with torch.inference_mode(), inference_precision(device, precision):
        model.features(waves)  # warm-up
        best, best_cpu = 0.0, 0.0
        for _ in range(repeats):
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            done = 0
            while done < n:
                model.features(waves)
                done += batch
            _sync(device)
            best = max(best, done / (time.perf_counter() - t0))
            best_cpu = max(best_cpu, done / max(time.process_time() - c0, 1e-9))
    return best, best_cpu


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def end_to_end(model: torch.nn.Module, clips: pd.DataFrame, seconds: float, batch: int, out: Path,
               repeats: int, device: torch.device = CPU, precision: str = "fp32") -> float:
    """Best-of-repeats clips/s of the embed stage's run() over FLAC files (fresh output dirs: nothing resumed)."""
    p = embed.EmbedParams(batch_size=batch, eval_s=seconds, precision=precision)
    vec, dim = embed.build_vectorizer(model, p, device)
    # Warm-up on one batch: first calls pay for lazy imports (pyarrow, soundfile) and allocator growth.
    embed.run(clips.iloc[:batch], vec, dim, p, 16000, out.with_name(out.name + "_warm"), "warm", device)
    best = 0.0
    for k in range(repeats):
        t0 = time.perf_counter()
        embed.run(clips, vec, dim, p, 16000, out.with_name(f"{out.name}_{k}"), "bench", device)
        best = max(best, len(clips) / (time.perf_counter() - t0))
    return best


def train_step_s(model: torch.nn.Module, batch: int, crop_s: float, steps: int,
                 device: torch.device = CPU) -> tuple[float, float]:
    """(median, min) seconds of one training step (forward, CE, backward, AdamW) on random crops (fp32)."""
    model.train()
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-3)
    x = (torch.randn(batch, int(crop_s * 16000)) * 0.1).to(device)
    y = torch.randint(0, 2, (batch,)).to(device)
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        if i >= 2:  # the first steps include allocator warm-up
            times.append(time.perf_counter() - t0)
    model.eval()
    return statistics.median(times), min(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clips", type=int, default=192)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--train-batch", type=int, default=32)
    ap.add_argument("--crop", type=float, default=2.0, help="training crop (pretrain.crop_s)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--heavy-clips", type=int, default=32, help="clips for aasist, aasist-l, ssl-base")
    ap.add_argument("--heavy-batch", type=int, default=16)
    ap.add_argument("--heavy-train-batch", type=int, default=8)
    ap.add_argument("--heavy-steps", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu | cuda[:N] | auto")
    ap.add_argument("--precision", choices=PRECISIONS, default="fp32", help="inference autocast (embed.precision)")
    ap.add_argument("--archs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = resolve_device(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.archs:
            heavy = name in HEAVY
            n, batch = (min(args.clips, args.heavy_clips), min(args.batch, args.heavy_batch)) if heavy \
                else (args.clips, args.batch)
            train_batch, steps = (args.heavy_train_batch, args.heavy_steps) if heavy else (args.train_batch, args.steps)
            config = dict(CONFIGS[name])
            if name == "ssl-base":
                config["ssl_path"] = base_size_ssl_dir(Path(tmp))
            clips = make_clips(Path(tmp) / f"audio_{name}", n, args.seconds)
            model = build_model(config).to(device).eval()
            wall, per_cpu = model_only(model, n, args.seconds, batch, args.repeats, device, args.precision)
            e2e = end_to_end(model, clips, args.seconds, batch, Path(tmp) / name, args.repeats, device, args.precision)
            step_med, step_min = train_step_s(model, train_batch, args.crop, steps, device)
            rows.append({
                "arch": name, "frontend": model.config.get("frontend", ""), "width": config.get("width", ""),
                "params_k": round(sum(p.numel() for p in model.parameters()) / 1000, 1),
                "device": str(device), "precision": args.precision,
                "threads": args.threads, "clip_s": args.seconds, "clips": n, "batch": batch,
                "model_clips_per_s": round(wall, 2),
                "model_clips_per_cpu_s_x_threads": round(per_cpu * args.threads, 2),
                "e2e_clips_per_s": round(e2e, 2),
                "train_batch": train_batch, "train_crop_s": args.crop,
                "train_step_s": round(step_med, 4), "train_step_min_s": round(step_min, 4),
                "peak_rss_mb": round(peak_rss_mb(), 1), "load_avg_1m": round(os.getloadavg()[0], 2),
            })
            print(rows[-1], flush=True)
    print_table(rows, f"embed: {args.seconds:g} s clips, {args.threads} threads, {device}, {args.precision} "
                      "(target: resnet >= 200 clips/s on 2 cores)")
    if not args.no_save:
        merge_bench("embed" if device.type == "cpu" else f"embed_{device.type}", rows)


if __name__ == "__main__":
    main()
