"""Benchmark every resynthesis system: real-time factor at 1 and 2 torch threads, and peak memory.

Audio: the first `--seconds` of bona fide demo clips from data/clips.parquet (synthetic speech-like
tones when the demo is not prepared). Generators: data/generators/{codec,diffusion} when fitted,
else untrained models of the params.yaml architecture (speed does not depend on the weights).
Each (system, threads) runs in its own subprocess, so that its peak RSS and thread count are its
own. Reported per row: speed_x = audio seconds per wall-clock second (1/RTF), speed_x_cpu = audio
seconds per CPU-second of the process (what a dedicated core would give when the machine is shared),
peak_mb, and the issue's target. Merges the rows into reports/bench.json under "resynth".

    .venv/bin/python -m benchmarks.bench_resynth [--seconds 15] [--threads 1 2]
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

from benchmarks.common import merge_bench, peak_rss_mb, print_table

SYSTEMS = {
    "vocoder": ["hifigan_universal", "world", "griffinlim"],
    "codec": ["encodec_6kbps", "encodec_1.5kbps", "codec2_1300", "mp3_16kbps", "opus_8kbps"],
    "diffusion": ["diffusion_s0.3", "diffusion_s0.5"],
}
TARGETS = {"hifigan_universal": 1.0, "world": 5.0, "griffinlim": 5.0, "diffusion_s0.3": 1.0, "diffusion_s0.5": 1.0}
CODEC_TARGET = 20.0
ROOT = Path(__file__).resolve().parents[1]   # the children import benchmarks/ from any working directory


def demo_waves(seconds: float, sr: int) -> tuple[list[np.ndarray], str]:
    """Bona fide demo clips (sorted by clip_id) up to `seconds` in total, or synthetic tones."""
    from pipeline.audio import read_audio

    clips_path = Path("data/clips.parquet")
    if clips_path.exists():
        import pandas as pd

        clips = pd.read_parquet(clips_path)
        clips = clips[clips["label"] == "bonafide"].sort_values("clip_id")
        waves, total = [], 0.0
        for path in clips["path"]:
            wave, _ = read_audio(path, sr)
            waves.append(wave)
            total += len(wave) / sr
            if total >= seconds:
                break
        if waves:
            return waves, f"demo ({len(waves)} bona fide clips)"
    rng = np.random.default_rng(0)
    waves = []
    for i in range(max(1, int(seconds // 3))):
        t = np.arange(3 * sr) / sr
        f0 = 110 + 20 * i
        w = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
        waves.append((0.1 * w + 0.005 * rng.standard_normal(t.size)).astype(np.float32))
    return waves, "synthetic"


def generators(tmp: Path, params: dict, paradigms: list[str]) -> dict[str, str]:
    """Fitted generator directories, or untrained ones of the configured size saved under tmp (for the paradigms
    asked for)."""
    import torch

    from pipeline.resynth import codec, diffusion

    out = {}
    fitted = Path("data/generators/codec")
    if "codec" not in paradigms:
        pass
    elif (fitted / "config.json").exists():
        out["codec"] = str(fitted)
    else:
        torch.manual_seed(0)
        cfg = {**codec.SMALL_ENCODEC, **params.get("fit_codec", {}).get("model", {})}
        model = codec.make_encodec(cfg)
        model.train()  # one k-means codebook init, as the first training step does
        x = torch.randn(4, 1, 16000) * 0.1
        model.quantizer(model.encoder(x), model.frame_rate, max(cfg["bandwidths"]))
        codec.save_codec(model.eval(), cfg, tmp / "codec")
        out["codec"] = str(tmp / "codec")
    fitted = Path("data/generators/diffusion")
    if "diffusion" not in paradigms:
        pass
    elif (fitted / "config.json").exists():
        out["diffusion"] = str(fitted)
    else:
        unet = diffusion.make_unet(params.get("fit_diffusion", {}).get("unet"))
        diffusion.save_diffusion(unet, diffusion.make_scheduler(), diffusion.MEL_STATS_DEFAULT, tmp / "diffusion")
        out["diffusion"] = str(tmp / "diffusion")
    return out


def child(paradigm: str, system: str, threads: int, audio: str, generator: str | None, batch: int,
          ddim_steps: int) -> dict:
    """Build one system, warm it up, time it over the waves (batched as the stage does)."""
    import torch

    from pipeline.resynth import build

    torch.set_num_threads(threads)
    base_mb = peak_rss_mb()  # torch + the backends imported, before any model
    data = np.load(audio)
    sr = int(data["sr"])
    waves = [data[k] for k in sorted(k for k in data.files if k.startswith("w"))]
    waves.sort(key=len)
    cfg = {"sample_rate": sr, "seed": 0, "generator": generator, "ddim_steps": ddim_steps}
    t0 = time.perf_counter()
    resynth = build(paradigm, system, cfg, "cpu")
    load_s = time.perf_counter() - t0
    resynth([waves[0][:sr]], ["warmup"])
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(0, len(waves), batch):
        resynth(waves[i: i + batch], [f"k{j}" for j in range(i, min(i + batch, len(waves)))])
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    audio_s = sum(len(w) for w in waves) / sr
    return {"paradigm": paradigm, "system": system, "threads": threads, "audio_s": audio_s,
            "speed_x": audio_s / wall, "speed_x_cpu": audio_s / max(cpu, 1e-9), "rtf": wall / audio_s,
            "load_s": load_s, "peak_mb": peak_rss_mb(), "base_mb": base_mb}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds of audio per system")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--paradigms", nargs="+", default=list(SYSTEMS))
    parser.add_argument("--systems", nargs="+", default=None, help="only these systems (default: every one)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--ddim-steps", type=int, default=10)
    parser.add_argument("--omp-wait-policy", default=os.environ.get("OMP_WAIT_POLICY", ""),
                        help="OMP_WAIT_POLICY for the runs (PASSIVE: no spinning, far faster on a shared machine)")
    parser.add_argument("--timeout", type=float, default=600.0, help="per (system, threads) run")
    parser.add_argument("--child", nargs=6, metavar=("PARADIGM", "SYSTEM", "THREADS", "AUDIO", "GEN", "BATCH"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        paradigm, system, threads, audio, gen, batch = args.child
        row = child(paradigm, system, int(threads), audio, None if gen == "-" else gen, int(batch), args.ddim_steps)
        print("RESULT " + json.dumps(row))
        return 0

    import yaml

    params = yaml.safe_load(Path("params.yaml").read_text()) if Path("params.yaml").exists() else {}
    sr = int(params.get("audio", {}).get("sample_rate", 16000))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        waves, source = demo_waves(args.seconds, sr)
        audio = tmp_path / "audio.npz"
        np.savez(audio, sr=sr, **{f"w{i:04d}": w for i, w in enumerate(waves)})
        gens = generators(tmp_path, params, args.paradigms)
        load = os.getloadavg()[0]
        for paradigm in args.paradigms:
            for system in (s for s in SYSTEMS[paradigm] if args.systems is None or s in args.systems):
                for threads in args.threads:
                    cmd = [sys.executable, "-m", "benchmarks.bench_resynth", "--ddim-steps", str(args.ddim_steps),
                           "--child", paradigm, system, str(threads), str(audio), gens.get(paradigm, "-"),
                           str(args.batch)]
                    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore",
                           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
                    if args.omp_wait_policy:
                        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
                    try:
                        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
                    except subprocess.TimeoutExpired:
                        rows.append({"paradigm": paradigm, "system": system, "threads": threads, "error": "timeout"})
                        continue
                    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                    if proc.returncode or not lines:
                        rows.append({"paradigm": paradigm, "system": system, "threads": threads,
                                     "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "?"})
                        continue
                    row = json.loads(lines[-1][7:])
                    target = CODEC_TARGET if paradigm == "codec" else TARGETS[system]
                    row["target_x"] = target
                    row["meets"] = "yes" if row["speed_x"] >= target else (
                        "cpu-only" if row["speed_x_cpu"] * threads >= target else "no")
                    rows.append(row)
                    print(f"{system} x{threads}: {row['speed_x']:.2f}x real time", file=sys.stderr)
    table = [{k: r.get(k) for k in ("system", "threads", "speed_x", "speed_x_cpu", "target_x", "meets", "peak_mb",
                                   "base_mb", "error") if k in r} for r in rows]
    print_table(table, f"resynthesis speed on {source}, {args.seconds:g} s per system (load average {load:.1f} "
                       f"on {os.cpu_count()} cores at start, OMP_WAIT_POLICY={args.omp_wait_policy or 'default'})")
    policy = args.omp_wait_policy or "default"
    merge_bench("resynth", [{**r, "audio": source, "load_avg": load, "omp_wait_policy": policy} for r in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
