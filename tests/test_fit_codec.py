"""fit_codec: a few training steps on test-made clips, the pretrained record, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from pipeline import fit_codec
from pipeline.resume import tree_hash
from pipeline.resynth import build
from pipeline.resynth.codec import load_codec
from pipeline.schema import write_clips
from tests.conftest import make_wave, tiny_clip_table

SR = 16000
TINY = {"n_filters": 4, "dimension": 16, "bandwidths": [1.5, 3.0]}


def _params(**kw) -> fit_codec.FitCodecParams:
    return fit_codec.FitCodecParams(**{"steps": 3, "batch_size": 2, "segment_s": 0.25, "model": TINY, **kw})


def test_training_writes_a_loadable_codec(tmp_path):
    clips = tiny_clip_table(tmp_path / "clips")
    metrics = fit_codec.run(clips, tmp_path / "gen", _params(), SR, 0, torch.device("cpu"))
    assert metrics["trained"] and metrics["steps"] == 3 and np.isfinite(metrics["loss/total"])
    assert {p.name for p in (tmp_path / "gen").iterdir()} == {"config.json", "model.pt", "metrics.json"}
    model, info = load_codec(tmp_path / "gen")
    assert info["source"] == "fitted" and model.target_bandwidths == [1.5, 3.0]
    out = build("codec", "encodec_3kbps", {"sample_rate": SR, "generator": str(tmp_path / "gen")})([make_wave(1.0)])
    assert out[0].shape == (SR,) and np.isfinite(out[0]).all()


def test_training_is_deterministic_by_seed(tmp_path):
    clips = tiny_clip_table(tmp_path / "clips", n_speakers=2, clips_per_speaker=2)
    states = []
    for name in ("a", "b"):
        torch.manual_seed(0)
        fit_codec.run(clips, tmp_path / name, _params(steps=2), SR, 5, torch.device("cpu"))
        states.append(torch.load(tmp_path / name / "model.pt"))
    for key in states[0]:
        torch.testing.assert_close(states[0][key], states[1][key])


def test_pretrained_is_recorded_not_trained(tmp_path):
    ckpt = tmp_path / "encodec_24khz.th"
    ckpt.write_bytes(b"weights")
    metrics = fit_codec.run(tiny_clip_table(tmp_path / "c"), tmp_path / "gen", _params(pretrained=str(ckpt)), SR, 0,
                            torch.device("cpu"))
    assert metrics["trained"] is False
    assert json.loads((tmp_path / "gen" / "config.json").read_text()) == {"source": "pretrained", "path": str(ckpt)}
    fit_codec.run(tiny_clip_table(tmp_path / "c"), tmp_path / "hub", _params(pretrained="hub"), SR, 0, "cpu")
    assert json.loads((tmp_path / "hub" / "config.json").read_text()) == {"source": "hub"}


def test_missing_pretrained_path_and_empty_train_split_raise(tmp_path):
    clips = tiny_clip_table(tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="pretrained"):
        fit_codec.run(clips, tmp_path / "gen", _params(pretrained=str(tmp_path / "nope")), SR, 0, "cpu")
    with pytest.raises(ValueError, match="no bona fide train clips"):
        fit_codec.run(clips[clips["split"] != "train"], tmp_path / "gen", _params(), SR, 0, "cpu")
    assert not (tmp_path / "gen").exists()  # a failed run leaves no output directory behind


def test_main_reads_params_and_writes_the_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_clips(tiny_clip_table(tmp_path / "clips", n_speakers=2, clips_per_speaker=2), "clips.parquet")
    params = {"seed": 1, "audio": {"sample_rate": SR}, "runtime": {"device": "cpu", "threads": 1},
              "fit_codec": {"pretrained": None, "steps": 2, "batch_size": 2, "segment_s": 0.25, "lr": 3e-4,
                            "model": TINY}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert fit_codec.main(["--clips", "clips.parquet", "--out", "gen"]) == 0
    # same seed and params: the very same output directory (no timing, no temp names inside), so DVC sees no change
    assert fit_codec.main(["--clips", "clips.parquet", "--out", "again"]) == 0
    assert tree_hash(tmp_path / "gen") == tree_hash(tmp_path / "again")
    assert "seconds" not in json.loads((tmp_path / "gen" / "metrics.json").read_text())
    assert (tmp_path / "gen" / "model.pt").exists()
    cost = json.loads((tmp_path / "metrics" / "fit_codec.json").read_text())  # the cost goes beside, for the report
    assert cost["stage"] == "fit_codec" and cost["source"] == "fitted" and cost["trained"] is True
    assert cost["steps"] == 2 and cost["clips"] == 4 and cost["seconds"] >= 0 and cost["threads"] == 1
