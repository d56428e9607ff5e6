"""Benchmark streamed NC selection (pipeline/sampling/streaming.py) at 10M x 256 float16 against the in-memory
NC over 1M rows, in the same run: time and peak memory.

Writes `--rows` synthetic embeddings (half bona fide, one blob; half spoof, 8 modes) as emb-*.npy row shards of
`--shard-rows` under `--dir` (default /tmp/hardset_bench_stream), generated chunk by chunk into
np.lib.format.open_memmap files: the matrix is never in RAM. Then, each in a fresh subprocess (so that a peak
belongs to one measurement): (1) `nc_select` in memory over the first min(rows, 1M) rows, `--repeats` times
(median: `in_memory_1m_s`, scaled to 1M rows when fewer); (2) `stream_nc_select` over the memory-mapped shards.
Both import torch and faiss before the clock starts. Reported: seconds, `linear_ratio` = seconds / (rows / 1M x
in_memory_1m_s) (the goal: at most 2), peak RSS (ru_maxrss: counts the file pages the memory maps touched,
which the kernel can drop at will), and the peaks of anonymous memory (RssAnon, the real working set) and of
mapped file pages (RssFile), sampled from /proc every 0.2 s. With `--check` (small --rows only) the
selection is compared with nc_select on the matrix in memory. Merges the row into reports/bench.json under
"sampling_stream" and deletes the shards unless --keep.

`--stage` measures the whole sample stage through `dvc repro` instead (benchmarks/stage_repro.py): a clip table
for the rows (one teacher pool, speakers split 90% train / 10% dev), a DVC project with the sample stage, the
dependency hashes recorded first (as embed's outputs would be), then `dvc repro sample` timed against the
library call (`stream_nc` over the pool's train rows) in the same run; merged under "sampling_stream_stage".

    .venv/bin/python -m benchmarks.bench_sampling_stream [--rows 10000000] [--dim 256] [--threads 2]
    .venv/bin/python -m benchmarks.bench_sampling_stream --stage --rows 10000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import ProcPeak, merge_bench, print_table  # noqa: E402  (after the path set-up)
from pipeline.embstore import shard_name  # noqa: E402

CHUNK = 65536
MILLION = 1_000_000


def generate(out: Path, rows: int, dim: int, shard_rows: int, seed: int = 0) -> float:
    """Write the shards and labels.npy (int8: 1 bona fide, 0 spoof) chunk by chunk; return the seconds."""
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((9, dim), dtype=np.float32) * 2.0
    labels = np.lib.format.open_memmap(out / "labels.npy", mode="w+", dtype=np.int8, shape=(rows,))
    for k, start in enumerate(range(0, rows, shard_rows)):
        n = min(shard_rows, rows - start)
        shard = np.lib.format.open_memmap(out / shard_name(k), mode="w+", dtype=np.float16, shape=(n, dim))
        for a in range(0, n, CHUNK):
            m = min(CHUNK, n - a)
            lab = ((start + a + np.arange(m)) % 2 == 0).astype(np.int8)
            mode = np.where(lab == 1, 0, 1 + rng.integers(0, 8, m))
            block = centres[mode]
            block += rng.standard_normal((m, dim), dtype=np.float32)
            shard[a:a + m] = block
            labels[start + a:start + a + m] = lab
        shard.flush()
        del shard
    labels.flush()
    return time.perf_counter() - t0


def warm_imports(threads: int) -> float:
    """Import faiss and torch (the kernel's float16 copy) before a clock starts; return the seconds it took."""
    t0 = time.perf_counter()
    import faiss

    from pipeline.sampling import kernel

    faiss.omp_set_num_threads(threads)
    kernel.load_torch()
    return time.perf_counter() - t0


def memory_child(directory: str, threads: int, ratio: float, n_clusters: int, chunk_rows: int, repeats: int) -> dict:
    """nc_select in memory over the first min(N, 1M) rows of the shards, `repeats` times, in this process."""
    from pipeline.embstore import read_embeddings
    from pipeline.sampling import nc_select

    imports = warm_imports(threads)
    store = read_embeddings(directory)
    n = min(len(store), MILLION)
    emb = np.ascontiguousarray(store[np.arange(n)])
    labels = np.load(Path(directory) / "labels.npy")[:n]
    runs, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        nc_select(emb, labels, ratio, n_clusters=n_clusters, seed=0, chunk_rows=chunk_rows)
        runs.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"in_memory_rows": n, "in_memory_runs_s": runs, "in_memory_s": float(np.median(runs)),
            "in_memory_1m_s": float(np.median(runs)) * MILLION / n, "in_memory_1m_cpu_s": float(np.median(cpu))
            * MILLION / n, "import_s": imports}


def child(directory: str, threads: int, ratio: float, n_clusters: int, chunk_rows: int, check: bool) -> dict:
    """One streamed measurement in this (fresh) process."""
    from pipeline.embstore import read_embeddings
    from pipeline.sampling.streaming import stream_nc_select

    warm_imports(threads)
    store = read_embeddings(directory)
    labels = np.load(Path(directory) / "labels.npy")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with ProcPeak() as peak:
        t0, c0 = time.perf_counter(), time.process_time()
        idx = stream_nc_select(store, labels, ratio, n_clusters=n_clusters, seed=0, chunk_rows=chunk_rows)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {"rows": len(labels), "dim": int(store.shape[1]), "shards": len(getattr(store, "shards", [store])),
           "seconds": seconds, "cpu_s": cpu, "rows_per_s": len(labels) / seconds, "selected": int(len(idx)),
           "rss_before_mb": rss_before / 2**20,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "peak_anon_mb": peak.anon / 2**20, "peak_file_mapped_mb": peak.file / 2**20}
    if check:
        from pipeline.sampling import nc_select

        ref = nc_select(np.asarray(store[np.arange(len(labels))]), labels, ratio, n_clusters=n_clusters, seed=0,
                        chunk_rows=chunk_rows)
        out["equals_nc_select"] = bool(np.array_equal(ref, idx))
    return out


def last_json(cmd: list[str], env: dict | None = None) -> dict:
    """Run a command (a benchmark child) in the repository root; its last stdout line, parsed as JSON."""
    res = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True, env=env)
    return json.loads(res.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace) -> dict:
    """Generate the shards, then the in-memory and the streamed measurement, each in a fresh process."""
    base = [sys.executable, "-m", "benchmarks.bench_sampling_stream", "--dir", str(args.dir)]
    common = ["--threads", str(args.threads), "--ratio", str(args.ratio), "--n-clusters", str(args.n_clusters),
              "--chunk-rows", str(args.chunk_rows)]
    load_before = os.getloadavg()[0]
    gen = last_json(base + ["--generate-only", "--rows", str(args.rows), "--dim", str(args.dim),
                            "--shard-rows", str(args.shard_rows)])
    mem = last_json(base + common + ["--child", "memory", "--repeats", str(args.repeats)])
    res = last_json(base + common + ["--child", "stream"] + (["--check"] if args.check else []))
    linear = res["rows"] / MILLION * mem["in_memory_1m_s"]
    return {**res, "in_memory_1m_s": mem["in_memory_1m_s"], "linear_ratio": res["seconds"] / linear,
            "in_memory_1m_cpu_s": mem["in_memory_1m_cpu_s"],
            "linear_ratio_cpu": res["cpu_s"] / (res["rows"] / MILLION * mem["in_memory_1m_cpu_s"]),
            "in_memory_runs_s": mem["in_memory_runs_s"], "in_memory_rows": mem["in_memory_rows"],
            "import_s": mem["import_s"], **gen, "matrix_float16_mb": args.rows * args.dim * 2 / 2**20,
            "loadavg_1min_before": load_before, "loadavg_1min_after": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--shard-rows", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/hardset_bench_stream"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ratio", type=float, default=0.25)
    ap.add_argument("--n-clusters", type=int, default=8)
    ap.add_argument("--chunk-rows", type=int, default=CHUNK)
    ap.add_argument("--repeats", type=int, default=3, help="runs of the in-memory baseline (median reported)")
    ap.add_argument("--check", action="store_true", help="compare with nc_select in memory (small --rows only)")
    ap.add_argument("--keep", action="store_true", help="keep the generated shards")
    ap.add_argument("--stage", action="store_true", help="time the sample stage through dvc repro")
    ap.add_argument("--out", type=Path, default=None, help="bench.json to merge into (default reports/bench.json)")
    ap.add_argument("--child", choices=("memory", "stream"), help=argparse.SUPPRESS)
    ap.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.stage:
        from benchmarks import stage_repro

        return stage_repro.main(args)
    if args.generate_only:
        print(json.dumps({"generate_s": generate(args.dir, args.rows, args.dim, args.shard_rows)}))
        return 0
    if args.child:
        work = (memory_child if args.child == "memory" else child)
        extra = (args.repeats,) if args.child == "memory" else (args.check,)
        print(json.dumps(work(str(args.dir), args.threads, args.ratio, args.n_clusters, args.chunk_rows, *extra)))
        return 0
    if args.dir.exists():
        shutil.rmtree(args.dir)
    try:
        row = measure(args)
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)
    print_table([{k: v for k, v in row.items() if not isinstance(v, list)}], "streamed NC selection")
    merge_bench("sampling_stream", [row], args.out, threads=args.threads, ratio=args.ratio, n_clusters=args.n_clusters,
                chunk_rows=args.chunk_rows, shard_rows=args.shard_rows,
                note="peak_rss counts mapped file pages (reclaimable page cache); peak_anon is the working set; "
                     "in_memory_1m_s: nc_select in memory over the first 1M rows, same run (median of repeats); "
                     "linear_ratio = seconds / (rows / 1M x in_memory_1m_s), goal <= 2; the machine is shared: "
                     "see loadavg_1min_*")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
