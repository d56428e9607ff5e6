"""Fake-or-Real on a fixture in the Kaggle mirror's nested layout; undecodable files end as rejects."""

import numpy as np
import pytest
import soundfile as sf

from pipeline import prepare
from pipeline.corpora import load_fake_or_real
from tests.conftest import make_wave, write_wave

PARTS = ("training", "validation", "testing")


def _corpus(tmp_path, nested=True, broken=False):
    root = tmp_path / "FoR"
    base = root / "for-norm/for-norm" if nested else root / "for-norm"
    for p, part in enumerate(PARTS):
        for c, cls in enumerate(("real", "fake")):
            for i in range(2):
                write_wave(base / part / cls / f"file{i}.wav_16k.wav_norm.wav", make_wave(0.4, seed=10 * p + 3 * c + i))
    mp3 = base / "training/fake/file9.mp3"
    sf.write(mp3, make_wave(0.4, seed=99), 16000, format="MP3")
    if broken:
        (base / "training/real/broken.mp3").write_bytes(b"ID3\x03\x00\x00\x00garbage, not an mp3 frame" * 4)
        (base / "testing/fake/truncated.wav").write_bytes(b"RIFF\x00\x00")
    return root


def test_fake_or_real_labels_from_folders_and_splits_from_partitions(tmp_path):
    res = load_fake_or_real(_corpus(tmp_path))
    assert res.rejects == []
    src = res.sources
    assert len(src) == 13
    assert src.groupby("split").size().to_dict() == {"dev": 4, "eval:fake_or_real_norm": 4, "train": 5}
    assert src.groupby("label").size().to_dict() == {"bonafide": 6, "spoof": 7}
    assert set(src[src["label"] == "spoof"]["system"]) == {"for_unknown"}
    assert set(src["speaker"]) == {"norm_training", "norm_validation", "norm_testing"}
    assert "fake_or_real_norm_training_fake_file9" in set(src["clip_id"])
    flat = load_fake_or_real(_corpus(tmp_path / "flat", nested=False), partitions=["testing"])
    assert len(flat.sources) == 4
    as_version = load_fake_or_real(tmp_path / "flat/FoR/for-norm", versions="for-norm", partitions=["testing"])
    assert len(as_version.sources) == 4


def test_fake_or_real_wrong_version_or_root_is_a_clear_error(tmp_path):
    root = _corpus(tmp_path)
    with pytest.raises(FileNotFoundError, match="for-2seconds"):
        load_fake_or_real(root, versions=["for-2seconds"])
    with pytest.raises(ValueError, match="unknown version"):
        load_fake_or_real(root, versions=["for-3seconds"])
    with pytest.raises(FileNotFoundError, match="root"):
        load_fake_or_real(tmp_path / "nowhere")


def test_prepare_turns_undecodable_fake_or_real_files_into_rejects(tmp_path):
    root = _corpus(tmp_path, broken=True)
    p = prepare.PrepareParams(corpora=({"name": "fake_or_real", "root": str(root)},), min_duration_s=0.1)
    clips, rejects, metrics = prepare.run(p, tmp_path / "clips")
    assert len(clips) == 13 and len(rejects) == 2
    assert set(rejects["clip_id"]) == {"fake_or_real_norm_training_real_broken",
                                       "fake_or_real_norm_testing_fake_truncated"}
    assert rejects["reason"].str.contains("unreadable audio").all()
    mp3 = clips[clips["clip_id"] == "fake_or_real_norm_training_fake_file9"]
    assert len(mp3) == 1 and np.isclose(mp3["duration_s"].iloc[0], 0.4, atol=0.05)
    assert metrics["source_rows"] == 15
