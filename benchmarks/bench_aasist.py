"""Benchmark AASIST / AASIST-L inference on CPU: clips/s at batch 32 x 64,600 samples, 1 and 2 threads.

One call = `model.forward_with_features` (logits + every embed layer), as embed and score run it.
Rows: arch, parameters, path (fast = the eval path used by the pipeline; plain = the reference
path, the released model's op order without the eval fusions, run at `--plain-batch` to bound its
memory), threads, batch, clips/s (best of `--repeats`) and the 1-minute load average (this machine
is shared: rates fall with the load, so compare rows of one run). Merged into reports/bench.json
under "aasist". The authors' code was measured at 2.3 clips/s (AASIST) and 2.7 (AASIST-L) on this
CPU, batch 32, 2 threads (issue 13).

`--isa native pinned` (the default) runs each in a child process: native = torch's own choice of
kernels for this CPU (how the authors' code was timed), pinned = the pipeline's AVX2 pin
(pipeline/runtime/cpu_isa.py, what `python -m pipeline` stages run with). `x_authors` = rate / the
authors' rate at the same batch-32, 2-thread setting.

    .venv/bin/python -m benchmarks.bench_aasist --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import merge_bench, peak_rss_mb, print_table
from pipeline.models import build_model
from pipeline.runtime.cpu_isa import PIN_VAR, pin_cpu_isa

N_SAMPLES = 64600  # the authors' input: 4.0375 s at 16 kHz
AUTHORS = {"aasist": 2.3, "aasist-l": 2.7}  # their code, batch 32, 2 threads, this CPU (issue 13)


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


def measure(args: argparse.Namespace) -> list[dict]:
    """The rows of this process (its CPU kernels as its environment set them)."""
    torch.manual_seed(0)
    waves = speech_like(args.batch)
    isa = os.environ.get(PIN_VAR, "native")
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
                rows.append({"arch": arch, "params": n_params, "cpu_isa": isa, "path": path, "threads": threads,
                             "batch": batch, "clips_per_s": round(rate, 3),
                             "x_authors": round(rate / AUTHORS[arch], 2) if arch in AUTHORS else None,
                             "load_1min": round(os.getloadavg()[0], 2)})
                print(rows[-1], flush=True)
            model.config["fast"] = True
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["aasist", "aasist-l"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--plain-batch", type=int, default=8, help="batch of the plain path (0 = skip it)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--isa", nargs="+", choices=["native", "pinned"], default=["native", "pinned"])
    parser.add_argument("--child-out", help=argparse.SUPPRESS)  # a child run: write rows here
    parser.add_argument("--no-save", action="store_true", help="print only, do not touch reports/bench.json")
    args = parser.parse_args(argv)
    if args.child_out:
        Path(args.child_out).write_text(json.dumps(measure(args)))
        return 0
    rows: list[dict] = []
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--no-save"]
    for isa in args.isa:
        env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                                                                 "MKL_CBWR", PIN_VAR)}
        env[PIN_VAR] = "native" if isa == "native" else "avx2"
        env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
        pin_cpu_isa(env)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "rows.json"
            subprocess.run([sys.executable, "-m", "benchmarks.bench_aasist", *passthrough, "--child-out", str(out)],
                           env=env, check=True)
            rows += json.loads(out.read_text())
    print_table(rows, f"AASIST inference, {N_SAMPLES} samples per clip (peak RSS {peak_rss_mb():.0f} MiB)")
    if not args.no_save:
        merge_bench("aasist", rows, n_samples=N_SAMPLES, authors_code_clips_per_s=AUTHORS,
                    note="authors' rates: their code, batch 32, 2 threads, this CPU (issue 13)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
