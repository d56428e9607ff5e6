"""Benchmark `nc_select` on synthetic embeddings: seconds and peak memory at N = 10k, 100k, 1M (D = 256).

Reads nothing; merges its results into reports/bench.json under the key "sampling" ("sampling_float32" for
`--dtype float32`) and prints a table.
Each N runs in its own subprocess so that ru_maxrss (peak resident set, which counts FAISS's native
allocations, unlike tracemalloc) belongs to that N alone. The input is float16 as the embed stage writes
it (N x D x 2 bytes); the reference "embedding matrix" size is the same matrix in float32 (N x D x 4 bytes,
1.02 GB at 1M x 256). Targets: 1M in <= 0.5 s on 2 cores (issue 26; issue 5 asked 10 s), peak RSS <= 2x the
float32 matrix, time about linear in N. torch is imported before the clock starts (the float16 copy of the
block kernel uses it); cpu_s is the process's CPU time (the machine is shared: compare within one run).

    .venv/bin/python benchmarks/bench_sampling.py [--sizes 10000 100000 1000000] [--dim 256] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import merge_bench  # noqa: E402  (after the path set-up, for `python benchmarks/...`)


def synthetic(n: int, d: int, seed: int = 0, dtype: str = "float16"):
    """float16 embeddings, half bona fide (one blob), half spoof (8 modes), made in chunks (no float64 copy)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    emb = np.empty((n, d), dtype=dtype)
    labels = np.where(np.arange(n) % 2 == 0, "bonafide", "spoof")
    centres = rng.standard_normal((9, d), dtype=np.float32) * 2.0
    step = 65536
    for start in range(0, n, step):
        m = min(step, n - start)
        mode = np.where(labels[start:start + m] == "bonafide", 0, 1 + rng.integers(0, 8, m))
        emb[start:start + m] = centres[mode] + rng.standard_normal((m, d), dtype=np.float32)
    return emb, labels


def child(n: int, d: int, threads: int, ratio: float, n_clusters: int, dtype: str) -> dict:
    """One measurement in this process: returns seconds, RSS before and peak RSS (bytes)."""
    import faiss

    from pipeline.sampling import kernel, nc_select

    faiss.omp_set_num_threads(threads)
    kernel.load_torch()                          # its import (a few seconds) is not the selection's time
    emb, labels = synthetic(n, d, dtype=dtype)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0, c0 = time.perf_counter(), time.process_time()
    idx = nc_select(emb, labels, ratio, n_clusters=n_clusters, seed=0)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"n": n, "dim": d, "seconds": seconds, "cpu_s": cpu, "rss_before_bytes": rss_before,
            "peak_rss_bytes": peak, "selected": int(len(idx)), "loadavg_1min": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    """Run every size in a subprocess, print the table, merge into reports/bench.json."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ratio", type=float, default=0.25)
    ap.add_argument("--n-clusters", type=int, default=8)
    ap.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="input dtype")
    ap.add_argument("--out", type=Path, default=None, help="bench.json to merge into (default reports/bench.json)")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.dim, args.threads, args.ratio, args.n_clusters, args.dtype)))
        return 0
    rows = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--child", str(n), "--dim", str(args.dim), "--threads", str(args.threads),
               "--ratio", str(args.ratio), "--n-clusters", str(args.n_clusters), "--dtype", args.dtype]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        res = json.loads(out.strip().splitlines()[-1])
        f32 = n * args.dim * 4
        res.update(f32_matrix_bytes=f32, input_bytes=n * args.dim * (2 if args.dtype == "float16" else 4),
                   peak_over_f32_matrix=res["peak_rss_bytes"] / f32,
                   extra_over_f32_matrix=(res["peak_rss_bytes"] - res["rss_before_bytes"]) / f32,
                   us_per_row=1e6 * res["seconds"] / n)
        rows.append(res)
    print(f"nc_select, D={args.dim}, ratio={args.ratio}, k={args.n_clusters}, threads={args.threads}, "
          f"{args.dtype} input")
    print(f"{'N':>9} {'seconds':>8} {'us/row':>7} {'peak RSS GB':>12} {'f32 matrix GB':>14} {'peak/f32':>9} "
          f"{'(peak-before)/f32':>18}")
    for r in rows:
        print(f"{r['n']:>9} {r['seconds']:>8.2f} {r['us_per_row']:>7.2f} {r['peak_rss_bytes'] / 1e9:>12.3f} "
              f"{r['f32_matrix_bytes'] / 1e9:>14.3f} {r['peak_over_f32_matrix']:>9.2f} "
              f"{r['extra_over_f32_matrix']:>18.2f}")
    key = "sampling" if args.dtype == "float16" else f"sampling_{args.dtype}"
    merge_bench(key, rows, args.out, function="pipeline.sampling.nc_select", dim=args.dim, ratio=args.ratio,
                n_clusters=args.n_clusters, threads=args.threads, input_dtype=args.dtype,
                memory_reference="float32 N x D matrix (peak_over_f32_matrix = peak RSS of the whole process / it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
