"""A tiny fake pipeline run for the report tests: every input file of the report, in the formats of the
upstream stages, written by code (no audio is needed: the report reads tables, scores and embeddings)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import audit, evaluate
from pipeline.schema import make_rejects, write_clips, write_rejects

TEACHERS = ("resnet_vocoder", "convnext_codec")


def _clip(clip_id: str, speaker: str, label: str, system: str, paradigm: str, split: str, rng: np.random.Generator,
          parent_id: str | None = None, shortcut: bool = False) -> dict:
    spoof = label == "spoof"
    return {
        "clip_id": clip_id, "path": f"data/clips/{clip_id}.flac", "corpus": "demo", "speaker": speaker,
        "label": label, "system": system, "paradigm": paradigm, "parent_id": parent_id, "split": split,
        # with shortcut=True the spoofs are longer and quieter: the audit must notice
        "duration_s": float(rng.uniform(1.0, 4.0) + (3.0 if shortcut and spoof else 0.0)),
        "sample_rate": 16000, "bandwidth_hz": float(rng.uniform(3500, 8000)),
        "leading_silence_s": float(rng.uniform(0.0, 0.3)),
        "trailing_silence_s": float(rng.uniform(0.0, 0.3)),
        "rms_dbfs": float(rng.uniform(-30, -18) - (12.0 if shortcut and spoof else 0.0)),
        "noise_floor_dbfs": float(rng.uniform(-70, -50)), "spectral_tilt_db": float(rng.uniform(-8, -4)),
        "sha256": "0" * 64, "source": f"data/raw/demo/{clip_id.split('__')[0]}.wav", "matched": None,
    }


def make_fake_run(root: Path, n_speakers: int = 8, clips_per_speaker: int = 6, shortcut: bool = False,
                  seed: int = 0, min_system_clips: int = 8) -> dict[str, Path]:
    """Write a tiny run under root (data/, reports/, params.yaml); return the report's paths. evaluate's
    min_system_clips (8) ranks the unseen TTS systems (10 clips each) and greys the vocoder systems of the test
    set (6 each with the defaults)."""
    rng = np.random.default_rng(seed)
    splits = ["train", "train", "train", "train", "dev", "dev", "test", "test"]
    bona, recon, tts = [], [], []
    for s in range(n_speakers):
        for c in range(clips_per_speaker):
            cid = f"demo_s{s}_c{c}"
            split = splits[s % len(splits)]
            bona.append(_clip(cid, f"spk{s}", "bonafide", "-", "bonafide", split, rng))
            system = ("hifigan_universal", "world")[c % 2]
            recon.append(_clip(f"{cid}__{system}", f"spk{s}", "spoof", system, "vocoder", split, rng, parent_id=cid,
                               shortcut=shortcut))
    for k in range(20):
        system = ("piper_joe", "espeak_en-us")[k % 2]
        tts.append(_clip(f"tts_{k}", system, "spoof", system, "tts", "eval:tts", rng, shortcut=shortcut))
    data = root / "data"
    clips = write_clips(pd.DataFrame(bona + tts), data / "clips.parquet")
    recon_df = write_clips(pd.DataFrame(recon), data / "recon" / "vocoder.parquet")
    write_rejects(make_rejects([
        {"clip_id": "demo_bad_1", "path": "data/raw/demo/bad1.wav", "corpus": "demo", "stage": "prepare",
         "reason": "silent audio (peak below -60 dBFS)"},
        {"clip_id": "demo_bad_2", "path": "data/raw/demo/bad2.wav", "corpus": "demo", "stage": "prepare",
         "reason": "unreadable audio"},
    ]), data / "rejects.parquet")
    allc = pd.concat([clips, recon_df], ignore_index=True)

    reports = root / "reports"
    (reports / "reconstruction").mkdir(parents=True)
    (reports / "reconstruction" / "vocoder.json").write_text(json.dumps({"paradigm": "vocoder", "systems": {
        "hifigan_universal": {"n": 24, "logmel_distance": 0.81, "snr_db": 7.5, "rtf": 0.12},
        "world": {"n": 24, "logmel_distance": 1.3, "snr_db": 3.1, "rtf": 0.05}}}))

    pool = allc[allc["split"].isin(["train", "dev", "test"])].reset_index(drop=True)
    manifest_rows = []
    for i, t in enumerate(TEACHERS):
        tdir = data / "teachers" / t
        tdir.mkdir(parents=True)
        (tdir / "metrics.json").write_text(json.dumps({"dev_eer": 0.05 + 0.03 * i, "epochs": 3}))
        (tdir / "config.json").write_text(json.dumps({"arch": "resnet" if i == 0 else "convnext",
                                                      "frontend": "logmel"}))
        edir = data / "embeddings" / t
        edir.mkdir(parents=True)
        centre = np.where((pool["label"] == "bonafide").to_numpy()[:, None], 1.0, -1.0)
        emb = (centre * np.linspace(1, 0, 16)[None, :] + 0.5 * rng.standard_normal((len(pool), 16)))
        np.save(edir / "emb.npy", emb.astype(np.float16))
        pool[["clip_id"]].to_parquet(edir / "ids.parquet", index=False)
        picked = pool[pool["split"] == "train"].sample(frac=0.3, random_state=i)
        manifest_rows.append(picked.assign(teacher=t, distance=rng.uniform(0, 1, len(picked)),
                                           cluster=np.where(picked["label"] == "spoof", i, -1).astype("int32"),
                                           sampler="nc"))
    manifest = pd.concat(manifest_rows).drop_duplicates("clip_id").reset_index(drop=True)
    write_clips(manifest, data / "manifests" / "nc.parquet", groups=("manifest",))
    write_clips(manifest, data / "manifests" / "train.parquet", groups=("manifest",))
    def counts(df: pd.DataFrame) -> dict:
        return {"n": len(df), **{c: {str(k): int(v) for k, v in df[c].value_counts().sort_index().items()}
                                 for c in ("label", "paradigm", "system", "speaker")}}

    # the sample stage's layout (pipeline/sample.py): settings, per-pool NC1 and counts, merged counts
    train = pool[pool["split"] == "train"]
    (reports / "sampling.json").write_text(json.dumps({
        "seed": 7, "method": "nc", "ratio": 0.25, "class_ratio": {}, "n_clusters": 2, "normalize": True,
        "index": "flat",
        "pools": {t: {"n_rows": len(pool), "n_train": len(train), "dim": 16, "nc1": 0.31 + i, "nc1_selected": 0.12,
                      "class_mean_distance": {"bonafide|spoof": 1.4}, "before": counts(train),
                      "after": {"nc": counts(manifest), "random": counts(manifest)}} for i, t in enumerate(TEACHERS)},
        "merged": {"nc": counts(manifest), "random": counts(manifest)}, "dev": counts(pool[pool["split"] == "dev"]),
        "train": {"method": "nc", "n": len(manifest)}}))

    # the evaluate stage's own code writes its files (scores/, eer.csv, plots/, metrics.json) from fake scores
    sets = evaluate.build_eval_sets(allc, ("test", "tts", "leave_out"), {"train_paradigms": ["vocoder"]})
    scores = pd.Series(np.where(allc["label"] == "bonafide", 1.0, -1.0) + rng.standard_normal(len(allc)),
                       index=allc["clip_id"].to_numpy())
    metrics, table, scored = evaluate.run(sets, scores, seen_paradigms=["vocoder"], n_boot=50, seed=7)
    metrics["min_system_clips"] = min_system_clips
    evaluate.write_outputs(metrics, table, scored, reports)
    # the audit stage's own code writes audit.json / audit.csv / hardness.csv
    audit_p = audit.AuditParams(folds=3, seed=7)
    summaries, audit_table = audit.run_audit(allc, audit_p)
    hard = audit.hardness(allc, scores, "teacher:resnet_vocoder")
    audit.write_outputs(summaries, audit_table, hard, audit_p, reports, audit.run_system_audit(allc, audit_p))
    (root / "params.yaml").write_text("seed: 7\nreport:\n  pca_points: 500\n  experiments: true\n")
    return {
        "root": root, "reports": reports, "clips": data / "clips.parquet",
        "recon": data / "recon" / "vocoder.parquet", "rejects": data / "rejects.parquet",
        "embeddings": data / "embeddings", "manifests": data / "manifests", "teachers": data / "teachers",
        "params": root / "params.yaml", "out": reports / "index.html",
    }


def report_argv(paths: dict[str, Path]) -> list[str]:
    """The report stage's command line for a fake run."""
    return ["--params", str(paths["params"]), "--reports", str(paths["reports"]),
            "--clips", str(paths["clips"]), str(paths["recon"]), "--rejects", str(paths["rejects"]),
            "--embeddings", str(paths["embeddings"]), "--manifests", str(paths["manifests"]),
            "--teachers", str(paths["teachers"]), "--repo", str(paths["root"]), "--out", str(paths["out"])]
