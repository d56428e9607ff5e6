"""Diffusion (SDEdit) reconstruction with a tiny UNet and a tiny HiFi-GAN saved locally by the test."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipeline.resynth import build, diffusion
from pipeline.resynth.common import logmel_distance
from tests.conftest import make_wave
from tests.resynth.hifigan import TINY_HIFIGAN, make_hifigan, save_hifigan

SR = 16000
TINY_UNET = {"block_out_channels": [8, 16], "layers_per_block": 1}


@pytest.fixture()
def models(tmp_path):
    torch.manual_seed(0)
    unet_dir = tmp_path / "diffusion"
    diffusion.save_diffusion(diffusion.make_unet(TINY_UNET), diffusion.make_scheduler(),
                             {"mel_mean": -6.0, "mel_std": 3.0}, unet_dir)
    generator, cfg = make_hifigan(TINY_HIFIGAN)
    save_hifigan(generator, cfg, tmp_path / "g.pth.tar", tmp_path / "hifigan.json")
    return {"generator": str(unet_dir), "hifigan_checkpoint": str(tmp_path / "g.pth.tar"),
            "hifigan_config": str(tmp_path / "hifigan.json"), "sample_rate": SR, "seed": 7, "ddim_steps": 3}


def test_sdedit_reconstruction_of_a_second(models):
    wave = make_wave(1.0, SR)
    out = build("diffusion", "diffusion_s0.5", models)([wave], ["clip_a"])[0]
    assert out.shape == wave.shape and np.isfinite(out).all()
    assert not np.allclose(out, wave, atol=1e-4)
    assert logmel_distance(wave, out, SR) > 0.3


def test_output_depends_on_the_clip_key_not_on_the_batch(models):
    r = build("diffusion", "diffusion_s0.3", models)
    a, b = make_wave(1.0, SR, seed=1), make_wave(0.7, SR, seed=2, f0=140)
    alone = r([a], ["a"])[0]
    batched = r([b, a], ["b", "a"])[1]
    np.testing.assert_array_equal(alone, batched)
    other_key = r([a], ["z"])[0]
    assert not np.allclose(alone, other_key, atol=1e-5)


def test_ddim_timesteps_start_at_the_strength_and_count_k():
    sched = diffusion.make_scheduler()
    assert diffusion.ddim_timesteps(sched, 0.3, 10) == list(range(300, 0, -30))
    assert diffusion.ddim_timesteps(sched, 0.5, 10)[0] == 500
    assert len(diffusion.ddim_timesteps(sched, 1.0, 4)) == 4


def test_a_bare_unet_directory_loads_with_from_pretrained(tmp_path, models):
    bare = tmp_path / "bare"
    diffusion.make_unet(TINY_UNET).save_pretrained(bare)
    unet, sched, stats = diffusion.load_diffusion(bare)
    assert stats == diffusion.MEL_STATS_DEFAULT and sched["num_train_timesteps"] == 1000
    out = build("diffusion", "diffusion_s0.2", {**models, "generator": str(bare)})([make_wave(0.5, SR)])[0]
    assert np.isfinite(out).all()


def test_a_recorded_pretrained_path_is_followed(tmp_path, models):
    rec = tmp_path / "record"
    rec.mkdir()
    (rec / "config.json").write_text(json.dumps({"source": "pretrained", "path": models["generator"]}))
    unet, _, stats = diffusion.load_diffusion(rec)
    assert stats["mel_mean"] == -6.0


def test_bad_diffusion_settings_raise(tmp_path, models):
    with pytest.raises(ValueError, match="diffusion_s"):
        build("diffusion", "diffusion_strong", models)
    with pytest.raises(ValueError, match="strength"):
        build("diffusion", "diffusion_s1.5", models)
    with pytest.raises(FileNotFoundError, match="fit_diffusion"):
        build("diffusion", "diffusion_s0.3", {**models, "generator": str(tmp_path / "none")})
    with pytest.raises(ValueError, match="model directory"):
        build("diffusion", "diffusion_s0.3", {**models, "generator": None})


def test_systems_follow_the_strengths():
    assert diffusion.systems({"strengths": [0.3, 0.5]}) == ["diffusion_s0.3", "diffusion_s0.5"]


def test_precision_set_on_the_system_reaches_its_vocoder_and_bf16_stays_close(models):
    """reconstruct sets `precision` on the built system: the UNet and its HiFi-GAN share it."""
    wave = make_wave(1.0, SR)
    system = build("diffusion", "diffusion_s0.5", models)
    ref = system([wave], ["clip_a"])[0]
    system.precision = "bf16"
    assert system.vocoder.precision == "bf16"
    low = system([wave], ["clip_a"])[0]
    assert low.shape == ref.shape and np.isfinite(low).all() and not np.array_equal(low, ref)
    assert logmel_distance(ref, low, SR) < 3.0
