"""The sample stage at scale through `dvc repro`, against the library call in the same run
(`python -m benchmarks.bench_sampling_stream --stage`).

Builds under --dir a DVC project (no git) holding: one teacher pool of --rows float16 embeddings (the generator of
bench_sampling_stream), its ids.parquet, a matching clip table written in Arrow chunks (speakers split 90% train /
10% dev, unique ids, paths and hashes), params.yaml with the sample section (`stream_above_rows` below the pool)
and a dvc.yaml with the sample stage as the project has it (the same cmd, deps, params and outs). The dependency
hashes are recorded first (`dvc status`, untimed), as they are once embed has written its outputs. Then, each in
a fresh process: the library calls, `stream_nc` over the pool's train rows (the NC selection the stage runs:
library_s) and the whole stage's work in Python (sample.sample_to: reading the clip table, every sampler, the
manifests: stage_library_s), and `dvc repro sample` (the stage with its CLI and DVC's hashing and caching of its
outputs: repro_s). Reported: the times and the ratios of repro_s to each (the goal: at most 2), the stage's own
seconds from its log, the peak anonymous memory of the stage process
(RssAnon, sampled every 0.2 s) and that per clip (goal: at most 200 B held per clip), the manifest sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from benchmarks.bench_sampling_stream import ROOT, generate, last_json, warm_imports
from benchmarks.common import ProcPeak, merge_bench, print_table
from pipeline.schema import clip_schema, validate_arrow

BATCH = 1_000_000
TEACHER = "t0"
CMD = ("python -m pipeline sample --clips data/clips.parquet --embeddings data/embeddings --out data/manifests "
       "--diagnostics reports/sampling.json")


def clip_batch(start: int, stop: int) -> pa.Table:
    """Clip-table rows start..stop matching `generate` (even rows bona fide; speaker = row / 2 mod 2000)."""
    i = np.arange(start, stop)
    bona = i % 2 == 0
    speaker = (i // 2) % 2000
    ids = np.char.add("c", np.char.zfill(i.astype(str), 9))
    n = stop - start
    return pa.table({
        "clip_id": ids, "path": np.char.add(np.char.add("data/x/", ids), ".flac"), "corpus": ["bench"] * n,
        "speaker": np.char.add("s", np.char.zfill(speaker.astype(str), 4)),
        "label": np.where(bona, "bonafide", "spoof"),
        "system": np.where(bona, "-", np.char.add("voc", (i % 8).astype(str))),
        "paradigm": np.where(bona, "bonafide", "vocoder"), "parent_id": pa.nulls(n, pa.string()),
        "split": np.where(speaker < 1800, "train", "dev"), "duration_s": np.ones(n), "sample_rate": np.full(n, 16000),
        "bandwidth_hz": np.full(n, 8000.0), "leading_silence_s": np.zeros(n), "trailing_silence_s": np.zeros(n),
        "rms_dbfs": np.full(n, -20.0), "noise_floor_dbfs": np.full(n, -60.0), "spectral_tilt_db": np.full(n, -6.0),
        "sha256": np.char.zfill(np.char.mod("%x", i * 2654435761 % 2**61), 64),
        "source": np.char.add(np.char.add("raw/", ids), ".wav"), "matched": pa.nulls(n, pa.string()),
    }).cast(clip_schema())


def write_clip_table(root: Path, rows: int) -> float:
    """data/clips.parquet (checked batch by batch) and the pool's ids.parquet for the generated rows."""
    t0 = time.perf_counter()
    (root / "data").mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(root / "data" / "clips.parquet", clip_schema()) as clips, \
            pq.ParquetWriter(root / "data" / "embeddings" / TEACHER / "ids.parquet",
                             pa.schema([("clip_id", pa.string())])) as ids:
        for start in range(0, rows, BATCH):
            batch = validate_arrow(clip_batch(start, min(rows, start + BATCH)), stage="bench", offset=start)
            clips.write_table(batch)
            ids.write_table(pa.table({"clip_id": batch.column("clip_id")}))
    return time.perf_counter() - t0


def write_project(root: Path, args: argparse.Namespace) -> None:
    """params.yaml, dvc.yaml (the project's sample stage) and `dvc init --no-scm`."""
    params = {"seed": 0, "runtime": {"threads": args.threads},
              "teachers": {TEACHER: {"arch": "resnet", "pool": {"paradigms": ["bonafide", "vocoder"]}}},
              "sample": {"method": "nc", "ratio": args.ratio, "n_clusters": args.n_clusters, "seed": 0,
                         "stream_above_rows": 1000}}
    stage = {"cmd": CMD, "deps": ["data/embeddings", "data/clips.parquet"], "params": ["sample", "teachers", "runtime"],
             "outs": ["data/manifests", {"reports/sampling.json": {"cache": False}}]}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"sample": stage}}, sort_keys=False))
    dvc(root, "init", "--no-scm", "-q")


def env() -> dict[str, str]:
    """The stage's environment: this checkout's pipeline, this interpreter's `python` and `dvc` first on PATH."""
    out = dict(os.environ, PYTHONPATH=str(ROOT), DVC_NO_ANALYTICS="1")
    out["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{out.get('PATH', '')}"
    return out


def dvc(root: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "dvc"), *argv], cwd=root, env=env(), check=True,
                          capture_output=True, text=True)


def library_child(directory: str, threads: int, ratio: float, n_clusters: int) -> dict:
    """stream_nc over the pool's train rows (the stage's NC selection), timed in this process."""
    from pipeline.embstore import read_embeddings
    from pipeline.sampling.streaming import stream_nc

    warm_imports(threads)
    root = Path(directory)
    table = pq.read_table(root / "data" / "clips.parquet", columns=["label", "split"])
    train = np.flatnonzero(table.column("split").to_numpy(zero_copy_only=False) == "train")
    labels = table.column("label").to_numpy(zero_copy_only=False)[train]
    store = read_embeddings(root / "data" / "embeddings" / TEACHER)
    t0 = time.perf_counter()
    res = stream_nc(store, labels, ratio, n_clusters=n_clusters, seed=0, rows=train, keep_distances=True)
    return {"library_s": time.perf_counter() - t0, "train_rows": int(len(train)), "nc_selected": int(len(res.indices))}


def stage_child(directory: str, threads: int) -> dict:
    """The sample stage's work as a library call in this process (sample.sample_to: what main runs, without the
    CLI and DVC), into data/manifests_lib, timed after the imports."""
    import types

    from pipeline import sample
    from pipeline.params import load_params

    warm_imports(threads)
    root = Path(directory)
    params = load_params(root / "params.yaml")
    p = sample.SampleParams.from_params(params["sample"])
    args = types.SimpleNamespace(clips=[root / "data" / "clips.parquet"], out=root / "data" / "manifests_lib",
                                 diagnostics=root / "reports" / "sampling_lib.json")
    t0 = time.perf_counter()
    pools = [sample.load_pool(TEACHER, root / "data" / "embeddings" / TEACHER)]
    sizes = sample.sample_to(args, pools, p, 0)
    seconds = time.perf_counter() - t0
    shutil.rmtree(args.out)
    args.diagnostics.unlink()
    return {"stage_library_s": seconds, "stage_library_rows": sizes}


def timed_repro(root: Path) -> dict:
    """`dvc repro sample` with the peak RssAnon of the stage process (the `pipeline sample` descendant)."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "dvc"), "repro", "sample"], cwd=root, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, stage_pid = None, None
    while proc.poll() is None:
        if stage_pid is None:
            for p in psutil.Process(proc.pid).children(recursive=True):
                try:
                    if "pipeline" in p.cmdline() and "sample" in p.cmdline():
                        stage_pid, peak = p.pid, ProcPeak(p.pid).__enter__()
                except psutil.Error:
                    pass
        time.sleep(0.05)
    seconds = time.perf_counter() - t0
    if peak is not None:
        peak._stop.set()
    log = proc.stdout.read()
    if proc.returncode:
        raise RuntimeError(f"dvc repro sample failed:\n{log[-3000:]}")
    found = re.findall(r"sample done: .*? in ([0-9.]+) s", log)
    return {"repro_s": seconds, "stage_log_s": float(found[-1]) if found else None,
            "stage_peak_anon_mb": (peak.anon if peak else 0) / 2**20}


def main(args: argparse.Namespace) -> int:
    """Build the project, record the hashes, time the library call and the stage; merge the row."""
    root = args.dir
    if root.exists():
        shutil.rmtree(root)
    emb = root / "data" / "embeddings" / TEACHER
    try:
        gen_s = generate(emb, args.rows, args.dim, args.shard_rows)
        (emb / "labels.npy").unlink()
        table_s = write_clip_table(root, args.rows)
        write_project(root, args)
        t0 = time.perf_counter()
        dvc(root, "status")                      # records the dependency hashes in DVC's state, as embed would
        hash_s = time.perf_counter() - t0
        lib = last_json([sys.executable, "-m", "benchmarks.stage_repro", str(root), str(args.threads),
                         str(args.ratio), str(args.n_clusters)])
        lib.update(last_json([sys.executable, "-m", "benchmarks.stage_repro", str(root), str(args.threads)]))
        load = os.getloadavg()[0]
        rep = timed_repro(root)
        diag = json.loads((root / "reports" / "sampling.json").read_text())
        sizes = {f.stem: f.stat().st_size / 2**20 for f in sorted((root / "data" / "manifests").glob("*.parquet"))}
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    lib.pop("stage_library_rows")
    row = {"rows": args.rows, "dim": args.dim, **lib, **rep, "repro_over_library": rep["repro_s"] / lib["library_s"],
           "repro_over_stage_library": rep["repro_s"] / lib["stage_library_s"],
           "stage_anon_bytes_per_clip": rep["stage_peak_anon_mb"] * 2**20 / args.rows,
           "manifest_rows": {m: diag["merged"][m]["n"] for m in diag["merged"]}, "manifest_mb": sizes,
           "generate_s": gen_s, "clip_table_s": table_s, "dvc_hash_deps_s": hash_s, "loadavg_1min": load}
    print_table([{k: v for k, v in row.items() if not isinstance(v, dict)}], "sample stage through dvc repro")
    merge_bench("sampling_stream_stage", [row], args.out, threads=args.threads, ratio=args.ratio,
                n_clusters=args.n_clusters, shard_rows=args.shard_rows,
                note="repro_s: `dvc repro sample` (dependency hashes recorded before, as after embed); library_s: "
                     "stream_nc over the pool's train rows, same run; stage_peak_anon_mb: RssAnon of the stage "
                     "process; the machine is shared: see loadavg_1min")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if len(sys.argv) == 3:
        print(json.dumps(stage_child(sys.argv[1], int(sys.argv[2]))))
    else:
        d, threads, ratio, k = sys.argv[1:5]
        print(json.dumps(library_child(d, int(threads), float(ratio), int(k))))
