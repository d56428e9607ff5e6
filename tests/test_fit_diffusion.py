"""fit_diffusion: a few DDPM steps on test-made clips, the pretrained record, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from pipeline import fit_diffusion
from pipeline.resume import tree_hash
from pipeline.resynth.diffusion import load_diffusion, make_unet
from pipeline.schema import write_clips
from tests.conftest import tiny_clip_table

SR = 16000
TINY = {"block_out_channels": [8, 16], "layers_per_block": 1}


def _params(**kw) -> fit_diffusion.FitDiffusionParams:
    return fit_diffusion.FitDiffusionParams(**{"steps": 3, "batch_size": 2, "segment_frames": 16, "unet": TINY, **kw})


def test_training_writes_a_loadable_model(tmp_path):
    clips = tiny_clip_table(tmp_path / "clips")
    metrics = fit_diffusion.run(clips, tmp_path / "gen", _params(), SR, 0, torch.device("cpu"))
    assert metrics["trained"] and np.isfinite(metrics["loss/eps_mse"]) and metrics["mel_std"] > 0
    unet, sched, stats = load_diffusion(tmp_path / "gen")
    assert list(unet.config.block_out_channels) == [8, 16]
    assert sched["clip_sample"] is False and stats["mel_mean"] == pytest.approx(metrics["mel_mean"])


def test_pretrained_model_is_recorded_not_trained(tmp_path):
    make_unet(TINY).save_pretrained(tmp_path / "unet_dir")
    metrics = fit_diffusion.run(tiny_clip_table(tmp_path / "c"), tmp_path / "gen",
                                _params(model=str(tmp_path / "unet_dir")), SR, 0, "cpu")
    assert metrics["trained"] is False
    assert json.loads((tmp_path / "gen" / "config.json").read_text())["source"] == "pretrained"
    unet, _, _ = load_diffusion(tmp_path / "gen")
    assert list(unet.config.block_out_channels) == [8, 16]


def test_missing_model_and_empty_train_split_raise(tmp_path):
    clips = tiny_clip_table(tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="fit_diffusion.model"):
        fit_diffusion.run(clips, tmp_path / "gen", _params(model=str(tmp_path / "nope")), SR, 0, "cpu")
    with pytest.raises(ValueError, match="no bona fide train clips"):
        fit_diffusion.run(clips[clips["label"] == "spoof"], tmp_path / "gen", _params(), SR, 0, "cpu")
    assert not (tmp_path / "gen").exists()


def test_main_reads_params_and_writes_the_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_clips(tiny_clip_table(tmp_path / "clips", n_speakers=2, clips_per_speaker=2), "clips.parquet")
    params = {"seed": 1, "audio": {"sample_rate": SR}, "runtime": {"device": "cpu", "threads": 1},
              "fit_diffusion": {"model": None, "steps": 2, "batch_size": 2, "segment_frames": 16, "lr": 2e-4,
                                "unet": TINY}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert fit_diffusion.main(["--clips", "clips.parquet", "--out", "gen"]) == 0
    # same seed and params: the very same output directory (no timing, no temp names inside), so DVC sees no change
    assert fit_diffusion.main(["--clips", "clips.parquet", "--out", "again"]) == 0
    assert tree_hash(tmp_path / "gen") == tree_hash(tmp_path / "again")
    assert "seconds" not in json.loads((tmp_path / "gen" / "metrics.json").read_text())
    assert (tmp_path / "gen" / "unet" / "config.json").exists()
