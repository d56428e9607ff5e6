"""Benchmark AASIST / AASIST-L inference on CPU: clips/s at batch 32 x 64,600 samples, 1 and 2 threads.

One call = `model.forward_with_features` (logits + every embed layer), as embed and score run it.
Rows: arch, parameters, path (fast = the eval path used by the pipeline; plain = the reference
path, the released model's op order without the eval fusions, run at `--plain-batch` to bound its
memory), threads, batch, clips/s (best of `--repeats`) and the 1-minute load average (this machine
is shared: rates fall with the load, so compare rows of one run). Merged into reports/bench.json
under "aasist". The authors' code was measured at 2.3 clips/s (AASIST) and 2.7 (AASIST-L) on this
CPU, batch 32, 2 threads (issue 13).

    .venv/bin/python -m benchmarks.bench_aasist --threads 1 2
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from benchmarks.common import merge_bench, peak_rss_mb, print_table
from pipeline.models import build_model

N_SAMPLES = 64600  # the authors' input: 4.0375 s at 16 kHz


def speech_like(n: int, seed: int = 0) -> torch.Tensor:
    """n clips of harmonic tones with a syllable envelope plus noise, [n, N_SAMPLES]."""
    rng = np.random.default_rng(seed)
    t = np.arange(N_SAMPLES) / 16000.0
    waves = [0.2 * np.sin(2 * np.pi * (100 + 7 * i) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
             + 0.02 * rng.standard_normal(N_SAMPLES) for i in range(n)]
    return torch.from_numpy(np.stack(waves).astype(np.float32))


def clips_per_s(model: torch.nn.Module, waves: torch.Tensor, repeats: int) -> float:
    """Best rate of `repeats` timed calls (after a 2-clip warm-up)."""
    with torch.inference_mode():
        model.forward_with_features(waves[:2])
        best = 0.0
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.forward_with_features(waves)
            best = max(best, len(waves) / (time.perf_counter() - t0))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["aasist", "aasist-l"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--plain-batch", type=int, default=8, help="batch of the plain path (0 = skip it)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-save", action="store_true", help="print only, do not touch reports/bench.json")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    waves = speech_like(args.batch)
    rows = []
    for arch in args.archs:
        model = build_model({"arch": arch}).eval()
        n_params = sum(p.numel() for p in model.parameters())
        for threads in args.threads:
            torch.set_num_threads(threads)
            paths = [("fast", args.batch)] + ([("plain", args.plain_batch)] if args.plain_batch else [])
            for path, batch in paths:
                model.config["fast"] = path == "fast"
                rate = clips_per_s(model, waves[:batch], args.repeats)
                rows.append({"arch": arch, "params": n_params, "path": path, "threads": threads, "batch": batch,
                             "clips_per_s": round(rate, 3), "load_1min": round(os.getloadavg()[0], 2)})
                print(rows[-1], flush=True)
            model.config["fast"] = True
    print_table(rows, f"AASIST inference, {N_SAMPLES} samples per clip (peak RSS {peak_rss_mb():.0f} MiB)")
    if not args.no_save:
        merge_bench("aasist", rows, n_samples=N_SAMPLES, authors_code_clips_per_s={"aasist": 2.3, "aasist-l": 2.7},
                    note="authors' rates: their code, batch 32, 2 threads, this CPU (issue 13)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
