"""Benchmark fine-tuning AASIST from a pretrained model (train.init): seconds per training step on CPU.

One step = train's: forward (train mode) on a batch of random crops, cross-entropy, backward,
AdamW step over the trainable parameters. Modes: `backend` (pipeline/detector/finetune.py: sinc front end and
residual encoder frozen, in eval mode, so the encoder takes the fused eval path), `backend-plain`
(the same freeze, the encoder on its reference path: what the fused path saves) and `all` (every
parameter trained). Weights are random (the speed does not depend on them). Rows: mode, trained
parameters, threads, batch, crop seconds, s/step (median of `--steps` after one warm-up step) and
the 1-minute load average (the machine is shared: compare rows of one run). Prints only.

    .venv/bin/python -m benchmarks.bench_finetune --threads 2 --batch 8 --crop-s 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from benchmarks.common import print_table
from pipeline.detector.finetune import freeze_front
from pipeline.models import build_model


def seconds_per_step(arch: str, mode: str, batch: int, crop_s: float, steps: int) -> tuple[int, float]:
    """(trained parameters, median seconds per step) of `steps` steps after one warm-up step."""
    torch.manual_seed(0)
    model = build_model({"arch": arch, "fast": mode != "backend-plain"})
    if mode != "all":
        freeze_front(model)
    model.train()
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    x = 0.1 * torch.randn(batch, int(crop_s * 16000))
    y = torch.arange(batch) % 2
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return sum(q.numel() for q in params), statistics.median(times[1:])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="aasist", choices=["aasist", "aasist-l"])
    parser.add_argument("--modes", nargs="+", default=["backend", "backend-plain", "all"])
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop-s", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for mode in args.modes:
            n, s = seconds_per_step(args.arch, mode, args.batch, args.crop_s, args.steps)
            rows.append({"arch": args.arch, "mode": mode, "trained_params": n, "threads": threads,
                         "batch": args.batch, "crop_s": args.crop_s, "s_per_step": round(s, 3),
                         "load1": round(os.getloadavg()[0], 2)})
            print(rows[-1], flush=True)
    print_table(rows, f"{args.arch} fine-tuning, seconds per training step (CPU)")


if __name__ == "__main__":
    main()
