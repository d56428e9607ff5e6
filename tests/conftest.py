"""Shared test builders: tiny waves and clip tables made in code, nothing downloaded."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import pipeline.__main__  # noqa: F401  the CLI's CPU pin, set before torch is imported, as in every stage
from pipeline.audio import measure, to_pcm16


def make_wave(seconds: float = 1.0, sample_rate: int = 16000, f0: float = 180.0, seed: int = 0,
              noise: float = 0.01) -> np.ndarray:
    """A speech-like test signal: a harmonic tone with a syllable-rate envelope plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    vib = f0 * (1 + 0.05 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(vib) / sample_rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = 0.5 * (1 + np.sin(2 * np.pi * 3 * t - np.pi / 2))
    wave = 0.3 * env * wave / 2 + noise * rng.standard_normal(len(t))
    return wave.astype(np.float32)


def write_wave(path: Path, wave: np.ndarray, sample_rate: int = 16000, subtype: str = "PCM_16") -> Path:
    """Write a test wave (format from the suffix) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, sample_rate, subtype=subtype)
    return path


def tiny_clip_table(root: Path, n_speakers: int = 4, clips_per_speaker: int = 3, sample_rate: int = 16000,
                    seconds: float = 1.0, with_spoof: bool = True) -> pd.DataFrame:
    """A valid clip table whose FLAC files exist under root (bona fide tones; spoof = noisier tones)."""
    rows = []
    splits = ["train", "train", "dev", "test"]
    for s in range(n_speakers):
        for c in range(clips_per_speaker):
            for label in ("bonafide", "spoof") if with_spoof else ("bonafide",):
                seed = s * 100 + c * 2 + (label == "spoof")
                wave = make_wave(seconds, sample_rate, f0=120 + 30 * s, seed=seed,
                                 noise=0.01 if label == "bonafide" else 0.08)
                clip_id = f"tiny_s{s}_c{c}" + ("" if label == "bonafide" else "__noise")
                path = write_wave(root / f"{clip_id}.flac", wave, sample_rate)
                pcm = to_pcm16(wave)
                rows.append({
                    "clip_id": clip_id, "path": str(path), "corpus": "tiny", "speaker": f"spk{s}",
                    "label": label, "system": "-" if label == "bonafide" else "noise",
                    "paradigm": "bonafide" if label == "bonafide" else "vocoder",
                    "parent_id": None if label == "bonafide" else f"tiny_s{s}_c{c}",
                    "split": splits[s % len(splits)], **measure(wave, sample_rate),
                    "sha256": hashlib.sha256(pcm.tobytes()).hexdigest(), "source": f"raw/{clip_id}.wav",
                    "matched": None,
                })
    return pd.DataFrame(rows)


HANDOFF_SYSTEMS = ("hifigan_universal", "encodec_1.5kbps")


def colliding_tables(root: Path) -> dict[str, pd.DataFrame]:
    """{train, dev, eval} clip tables: bona fide parents in clips/, and per parent one fake per system in
    recon/<system>/<the parent's file name>, as reconstruct writes them (train rows carry manifest columns)."""
    from pipeline.schema import validate_clips

    clips = validate_clips(tiny_clip_table(root / "clips", n_speakers=4, clips_per_speaker=2, with_spoof=False))
    fakes = []
    for system in HANDOFF_SYSTEMS:
        for row in clips.to_dict("records"):
            path = root / "recon" / system / Path(row["path"]).name
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(row["path"], path)
            fakes.append({**row, "clip_id": f"{row['clip_id']}__{system}", "path": str(path), "label": "spoof",
                          "system": system, "paradigm": "codec" if "encodec" in system else "vocoder",
                          "parent_id": row["clip_id"]})
    table = validate_clips(pd.concat([clips, pd.DataFrame(fakes)], ignore_index=True))
    manifest = table[table["split"] == "train"].assign(teacher="t", distance=0.5, cluster=0, sampler="nc")
    return {"train": validate_clips(manifest, groups=("manifest",)), "dev": table[table["split"] == "dev"],
            "eval": table[table["split"].isin(["test", "train"])]}  # eval gets train rows too: they are left out


@pytest.fixture
def handoff_tables(tmp_path) -> dict[str, Path]:
    """The colliding tables written as Parquet files: {train, dev, eval} -> path."""
    from pipeline.schema import write_clips

    out = {}
    for part, df in colliding_tables(tmp_path / "corpus").items():
        out[part] = tmp_path / f"{part}.parquet"
        write_clips(df, out[part], groups=("manifest",) if part == "train" else ())
    return out


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tests run on one thread: a busy neighbour core must not slow them 25x."""
    try:
        import torch
    except ImportError:  # stages without torch
        yield
        return
    torch.set_num_threads(1)
    yield
