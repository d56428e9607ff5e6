"""Vocoder copy-synthesis on a second of test-made audio (WORLD, Griffin-Lim, HiFi-GAN)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.resynth import build, list_systems, resynthesize, vocoder
from pipeline.resynth.common import logmel_distance
from tests.conftest import make_wave
from tests.resynth.hifigan import TINY_HIFIGAN, make_hifigan, save_hifigan

SR = 16000


def _check(wave: np.ndarray, out: np.ndarray, max_db: float) -> float:
    assert out.shape == wave.shape and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert not np.allclose(out, wave, atol=1e-4)
    dist = logmel_distance(wave, out, SR)
    assert 0.3 < dist < max_db
    return dist


@pytest.mark.parametrize("system", ["world", "griffinlim"])
def test_classical_vocoders_keep_length_and_stay_close(system):
    wave = make_wave(1.0, SR)
    out = resynthesize("vocoder", system, [wave], SR)[0]
    _check(wave, out, max_db=12.0)


def test_griffinlim_is_time_aligned_with_its_input():
    wave = make_wave(1.0, SR)
    out = build("vocoder", "griffinlim", {"sample_rate": SR})([wave])[0]
    env_in = np.convolve(np.abs(wave), np.ones(400) / 400, mode="same")
    env_out = np.convolve(np.abs(out), np.ones(400) / 400, mode="same")
    lags = range(-200, 201, 8)
    best = max(lags, key=lambda lag: float(np.dot(env_in[1000:-1000], np.roll(env_out, -lag)[1000:-1000])))
    assert abs(best) <= 16


@pytest.mark.parametrize("system", ["hifigan_universal", "hifigan_ljspeech"])
def test_the_wheels_pretrained_hifigans_reconstruct_a_second(system):
    wave = make_wave(1.0, SR)
    out = build("vocoder", system, {"sample_rate": SR})([wave, wave[:8000]])
    assert len(out[1]) == 8000
    _check(wave, out[0], max_db=12.0)
    assert system in vocoder.SYSTEMS


def test_hifigan_loads_a_locally_saved_checkpoint(tmp_path):
    generator, cfg = make_hifigan(TINY_HIFIGAN)
    save_hifigan(generator, cfg, tmp_path / "g.pth.tar", tmp_path / "config.json")
    r = vocoder.build("hifigan_tiny", {"sample_rate": SR, "hifigan_checkpoint": tmp_path / "g.pth.tar",
                                       "hifigan_config": tmp_path / "config.json"})
    wave = make_wave(1.0, SR)
    out = r([wave])[0]
    assert out.shape == wave.shape and np.isfinite(out).all()
    loaded = sum(p.numel() for p in r.generator.parameters())
    assert loaded < 200_000  # the tiny net, not the wheel's 14M-parameter one


def test_hifigan_config_with_another_mel_is_refused(tmp_path):
    generator, cfg = make_hifigan(TINY_HIFIGAN)
    save_hifigan(generator, {**cfg, "num_mels": 100}, tmp_path / "g.pth.tar", tmp_path / "config.json")
    with pytest.raises(ValueError, match="num_mels"):
        vocoder.load_hifigan(tmp_path / "g.pth.tar", tmp_path / "config.json")


def test_missing_hifigan_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        vocoder.load_hifigan(tmp_path / "absent.pth.tar")


def test_unknown_vocoder_and_paradigm_raise():
    with pytest.raises(ValueError, match="unknown vocoder system"):
        build("vocoder", "wavenet", {})
    with pytest.raises(ValueError, match="unknown paradigm"):
        build("gan", "x", {})


def test_empty_or_stereo_input_raises():
    r = build("vocoder", "world", {"sample_rate": SR})
    with pytest.raises(ValueError, match="mono"):
        r([np.zeros(0, dtype=np.float32)])
    with pytest.raises(ValueError, match="mono"):
        r([np.zeros((2, 100), dtype=np.float32)])


def test_list_systems_defaults_and_config():
    assert list_systems("vocoder", {}) == list(vocoder.SYSTEMS)
    assert list_systems("vocoder", {"systems": ["world"]}) == ["world"]


def test_vocoders_are_deterministic():
    torch.manual_seed(0)
    wave = make_wave(0.5, SR, seed=3)
    for system in ("world", "griffinlim"):
        r = build("vocoder", system, {"sample_rate": SR})
        np.testing.assert_array_equal(r([wave])[0], r([wave])[0])


def test_frozen_torchscript_generator_matches_eager():
    torch.manual_seed(0)
    generator, _ = make_hifigan(TINY_HIFIGAN)
    vocoder.remove_weight_norm(generator)
    frozen = vocoder.freeze_generator(generator)
    mel = torch.randn(2, 80, 40)
    with torch.inference_mode():
        torch.testing.assert_close(frozen(mel), generator.eval()(mel), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("system", ["griffinlim", "hifigan_universal", "world"])
def test_a_clip_gives_the_same_output_alone_as_in_a_batch(system):
    r = build("vocoder", system, {"sample_rate": SR})
    waves = [make_wave(0.7, SR, seed=1), make_wave(1.3, SR, seed=2, f0=140), make_wave(0.45, SR, seed=3, f0=220)]
    batched = r(waves, ["a", "b", "c"])
    for wave, key, out in zip(waves, "abc", batched):
        np.testing.assert_array_equal(r([wave], [key])[0], out)


def test_bf16_precision_autocasts_the_network_only():
    """Resynthesizer.precision bf16: HiFi-GAN runs under autocast (a different but close reconstruction);
    Griffin-Lim, pure signal processing, is not autocast and gives the same samples."""
    wave = make_wave(1.0, SR)
    hifi = build("vocoder", "hifigan_universal", {"sample_rate": SR})
    ref = hifi([wave])[0]
    hifi.precision = "bf16"
    low = hifi([wave])[0]
    assert low.dtype == np.float32 and not np.array_equal(low, ref)
    assert logmel_distance(ref, low, SR) < 1.5
    _check(wave, low, max_db=12.0)
    griffin = build("vocoder", "griffinlim", {"sample_rate": SR, "griffinlim_iters": 4})
    ref = griffin([wave])[0]
    griffin.precision = "bf16"
    assert np.array_equal(griffin([wave])[0], ref)
