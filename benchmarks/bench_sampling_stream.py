"""Benchmark streamed NC selection (pipeline/sampling/streaming.py) at 10M x 256 float16: time and peak memory.

Writes `--rows` synthetic embeddings (half bona fide, one blob; half spoof, 8 modes) as emb-*.npy row
shards of `--shard-rows` under `--dir` (default /tmp/hardset_bench_stream), generated chunk by chunk into
np.lib.format.open_memmap files: the matrix is never in RAM. Then, in a fresh subprocess (so that the
peak belongs to the selection alone), reads them with pipeline.embstore.read_embeddings (one memory map
per shard) and runs `stream_nc_select`. Reported: seconds, peak RSS (ru_maxrss: counts the file pages
the memory maps touched, which the kernel can drop at will), and the peaks of anonymous memory
(RssAnon, the real working set) and of mapped file pages (RssFile), sampled from /proc every 0.2 s.
With `--check` (small --rows only) the selection is compared with nc_select on the matrix in memory.
Merges the row into reports/bench.json under "sampling_stream" and deletes the shards unless --keep.

`--stage` measures the whole sample stage instead (pipeline/sample.py: read the clip table, `run()` on
a pool above `sample.stream_above_rows`, write the manifests): it also writes a matching clip table
(one teacher pool; speakers split 90% train / 10% dev) and ids.parquet, and merges the row under
"sampling_stream_stage", with the resident memory after reading the clip table (what pandas holds).

    .venv/bin/python -m benchmarks.bench_sampling_stream [--rows 10000000] [--dim 256] [--threads 2]
    .venv/bin/python -m benchmarks.bench_sampling_stream --stage --rows 2000000
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import merge_bench, print_table  # noqa: E402  (after the path set-up)
from pipeline.embstore import shard_name  # noqa: E402

CHUNK = 65536


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


class ProcPeak:
    """Peaks of RssAnon and RssFile (bytes) of this process, sampled from /proc/self/status."""

    def __init__(self) -> None:
        self.anon = self.file = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                self.anon = max(self.anon, int(line.split()[1]) * 1024)
            elif line.startswith("RssFile:"):
                self.file = max(self.file, int(line.split()[1]) * 1024)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.2)

    def __enter__(self) -> ProcPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def write_clip_table(out: Path, rows: int) -> float:
    """A valid clip table and ids.parquet for the generated rows (even rows bona fide, as in `generate`)."""
    import pandas as pd

    from pipeline.schema import write_clips

    t0 = time.perf_counter()
    i = np.arange(rows)
    bona = i % 2 == 0
    speaker = (i // 2) % 2000
    ids = pd.Series(i).map("c{:09d}".format).to_numpy()
    clips = pd.DataFrame({
        "clip_id": ids, "path": "data/x/" + pd.Series(ids) + ".flac", "corpus": "bench",
        "speaker": pd.Series(speaker).map("s{:04d}".format).to_numpy(),
        "label": np.where(bona, "bonafide", "spoof"),
        "system": np.where(bona, "-", "voc" + pd.Series(i % 8).astype(str)),
        "paradigm": np.where(bona, "bonafide", "vocoder"), "parent_id": None,
        "split": np.where(speaker < 1800, "train", "dev"), "duration_s": 1.0, "sample_rate": 16000,
        "bandwidth_hz": 8000.0, "leading_silence_s": 0.0, "trailing_silence_s": 0.0, "rms_dbfs": -20.0,
        "noise_floor_dbfs": -60.0, "spectral_tilt_db": -6.0, "sha256": "0" * 64, "source": "raw/x.wav", "matched": None,
    })
    write_clips(clips, out / "clips.parquet")
    pool = out / "embeddings" / "t0"
    pd.DataFrame({"clip_id": ids}).to_parquet(pool / "ids.parquet")
    return time.perf_counter() - t0


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stage_child(directory: str, threads: int, ratio: float, n_clusters: int) -> dict:
    """The sample stage's steps (main without the argument parsing) on a streamed pool, in this fresh process."""
    import faiss

    from pipeline import sample
    from pipeline.schema import read_clip_tables

    faiss.omp_set_num_threads(threads)
    root = Path(directory)
    p = sample.SampleParams.from_params({"method": "nc", "ratio": ratio, "n_clusters": n_clusters,
                                         "stream_above_rows": 0})
    with ProcPeak() as peak:
        t0 = time.perf_counter()
        clips = read_clip_tables([root / "clips.parquet"], stage="sample")
        t_read = time.perf_counter()
        anon_clips = _status_mb("RssAnon")
        pools = [sample.load_pool("t0", root / "embeddings" / "t0")]
        manifests, diag = sample.run(pools, clips, p, 0)
        t_run = time.perf_counter()
        peak._sample()
        anon_run, peak_run = _status_mb("RssAnon"), peak.anon / 2**20
        sample.write_outputs(manifests, diag, p.method, root / "manifests", root / "sampling.json")
        t_end = time.perf_counter()
    pool = diag["pools"]["t0"]
    return {"rows": len(clips), "train_rows": pool["n_train"], "dim": pool["dim"],
            "shards": len(pools[0].embeddings.shards),
            "seconds": t_end - t0, "read_clips_s": t_read - t0, "run_s": t_run - t_read, "write_s": t_end - t_run,
            "nc_rows": len(manifests["nc"]), "full_rows": len(manifests["full"]),
            "diagnostics_rows": pool["diagnostics_rows"], "skipped": sorted(pool["skipped"]),
            "anon_after_clip_table_mb": anon_clips, "anon_after_run_mb": anon_run, "peak_anon_to_run_mb": peak_run,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_anon_mb": peak.anon / 2**20, "peak_file_mapped_mb": peak.file / 2**20}


def child(directory: str, threads: int, ratio: float, n_clusters: int, chunk_rows: int, check: bool) -> dict:
    """One measurement in this (fresh) process."""
    import faiss

    from pipeline.embstore import read_embeddings
    from pipeline.sampling.streaming import stream_nc_select

    faiss.omp_set_num_threads(threads)
    store = read_embeddings(directory)
    labels = np.load(Path(directory) / "labels.npy")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with ProcPeak() as peak:
        t0 = time.perf_counter()
        idx = stream_nc_select(store, labels, ratio, n_clusters=n_clusters, seed=0, chunk_rows=chunk_rows)
        seconds = time.perf_counter() - t0
    out = {"rows": len(labels), "dim": int(store.shape[1]), "shards": len(getattr(store, "shards", [store])),
           "seconds": seconds, "rows_per_s": len(labels) / seconds, "selected": int(len(idx)),
           "rss_before_mb": rss_before / 2**20,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "peak_anon_mb": peak.anon / 2**20, "peak_file_mapped_mb": peak.file / 2**20}
    if check:
        from pipeline.sampling import nc_select

        ref = nc_select(np.asarray(store[np.arange(len(labels))]), labels, ratio, n_clusters=n_clusters, seed=0,
                        chunk_rows=chunk_rows)
        out["equals_nc_select"] = bool(np.array_equal(ref, idx))
    return out


def _last_json(cmd: list[str]) -> dict:
    res = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


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
    ap.add_argument("--check", action="store_true", help="compare with nc_select in memory (small --rows only)")
    ap.add_argument("--keep", action="store_true", help="keep the generated shards")
    ap.add_argument("--stage", action="store_true", help="time the sample stage (clip table + run + write)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    emb_dir = args.dir / "embeddings" / "t0" if args.stage else args.dir
    if args.generate_only:
        gen = {"generate_s": generate(emb_dir, args.rows, args.dim, args.shard_rows)}
        if args.stage:
            gen["clip_table_s"] = write_clip_table(args.dir, args.rows)
        print(json.dumps(gen))
        return 0
    if args.child:
        print(json.dumps(stage_child(str(args.dir), args.threads, args.ratio, args.n_clusters) if args.stage else
                         child(str(args.dir), args.threads, args.ratio, args.n_clusters, args.chunk_rows, args.check)))
        return 0
    if args.dir.exists():
        shutil.rmtree(args.dir)
    try:
        # Both steps in fresh processes: ru_maxrss survives fork + exec, so the parent must stay small.
        base = [sys.executable, "-m", "benchmarks.bench_sampling_stream", "--dir", str(args.dir)]
        stage = ["--stage"] if args.stage else []
        gen = _last_json(base + stage + ["--generate-only", "--rows", str(args.rows), "--dim", str(args.dim),
                                         "--shard-rows", str(args.shard_rows)])
        res = _last_json(base + stage + ["--child", "--threads", str(args.threads), "--ratio", str(args.ratio),
                                         "--n-clusters", str(args.n_clusters), "--chunk-rows", str(args.chunk_rows)]
                         + (["--check"] if args.check else []))
        row = {**res, **gen, "matrix_float16_mb": args.rows * args.dim * 2 / 2**20}
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)
    print_table([row], "sample stage, streamed pool" if args.stage else "streamed NC selection")
    note = "peak_rss counts mapped file pages (reclaimable page cache); peak_anon is the working set"
    if args.stage:
        merge_bench("sampling_stream_stage", [row], threads=args.threads, ratio=args.ratio,
                    n_clusters=args.n_clusters, shard_rows=args.shard_rows,
                    note=note + "; anon_after_clip_table/_run: after reading the clip table / after run() "
                         "(the manifests in pandas); peak_anon_to_run: the peak up to the end of run()")
    else:
        merge_bench("sampling_stream", [row], threads=args.threads, ratio=args.ratio, n_clusters=args.n_clusters,
                    chunk_rows=args.chunk_rows, shard_rows=args.shard_rows, note=note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
