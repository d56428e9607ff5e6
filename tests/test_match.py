"""match_to_parent: a fake differs from its parent only by the generator (band, level, silences, non-speech)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.audio import bandwidth_hz, leading_silence_s, noise_floor_dbfs, resample, rms_dbfs, trailing_silence_s
from pipeline.matching import match_record, match_to_parent, speech_mask
from tests.conftest import make_wave

SR = 16000


def _recording(seed: int = 0, lead_s: float = 0.3, trail_s: float = 0.4, pause_s: float = 0.3) -> np.ndarray:
    """A 4 kHz-band 'recording': room noise at -60 dBFS, two words with a pause, silences at both ends."""
    rng = np.random.default_rng(seed)
    word = resample(make_wave(0.5, 8000, seed=seed), 8000, SR)
    parts = [np.zeros(int(lead_s * SR)), word, np.zeros(int(pause_s * SR)), word, np.zeros(int(trail_s * SR))]
    wave = np.concatenate(parts).astype(np.float32)
    noise = resample(rng.standard_normal(len(wave) // 2).astype(np.float32), 8000, SR)[: len(wave)]
    return (wave + 0.001 * noise[: len(wave)]).astype(np.float32)


def _generator_output(parent: np.ndarray, seed: int = 1) -> np.ndarray:
    """A vocoder-like output: the parent 6 dB louder, full-band hiss everywhere (also in the silences)."""
    rng = np.random.default_rng(seed)
    return (2.0 * parent + 0.01 * rng.standard_normal(len(parent))).astype(np.float32)


def test_a_reconstruction_gets_its_parents_band_level_length_and_silences():
    parent = _recording()
    fake = _generator_output(parent)[:-500]  # a generator that returns a little less audio
    out, matched = match_to_parent(fake, parent, SR)
    assert matched == "length,band,level,silence,gate:parent" == match_record("parent", True)
    assert len(out) == len(parent)
    assert rms_dbfs(out) == pytest.approx(rms_dbfs(parent), abs=0.1)
    assert abs(bandwidth_hz(out, SR) - bandwidth_hz(parent, SR)) < 200
    assert leading_silence_s(out, SR) == pytest.approx(leading_silence_s(parent, SR), abs=0.021)
    assert trailing_silence_s(out, SR) == pytest.approx(trailing_silence_s(parent, SR), abs=0.021)


def test_the_non_speech_gate_removes_generator_noise_that_the_parent_lacks():
    parent = _recording()
    fake = _generator_output(parent)
    gated, _ = match_to_parent(fake, parent, SR, gate="parent")
    plain, _ = match_to_parent(fake, parent, SR, gate="none")
    quiet = speech_mask(parent, SR) == 0
    assert quiet.sum() > 0.2 * SR
    # gated: the parent's own non-speech (level-matched: within a fraction of a dB); ungated: the generator's hiss
    assert noise_floor_dbfs(gated, SR) == pytest.approx(noise_floor_dbfs(parent, SR), abs=1.0)
    assert noise_floor_dbfs(plain, SR) > noise_floor_dbfs(parent, SR) + 6.0
    np.testing.assert_allclose(gated[quiet], parent[quiet], atol=2e-3)


def test_a_tts_fake_keeps_its_length_and_gets_the_parents_silences_noise_and_level():
    parent = _recording(seed=3, lead_s=0.25, trail_s=0.35, pause_s=0.2)
    word = resample(make_wave(0.7, 8000, seed=9, noise=0.0), 8000, SR)
    # TTS-like: digital silence, its own (short) leading silence, a long pause, full band, another level
    tts = np.concatenate([np.zeros(800), word, np.zeros(int(0.5 * SR)), word, np.zeros(400)]).astype(np.float32)
    tts = (0.5 * tts + 0.002 * np.random.default_rng(4).standard_normal(len(tts))).astype(np.float32)
    out, matched = match_to_parent(tts, parent, SR, same_length=False)
    assert matched == "band,level,silence,gate:noise" == match_record("parent", False)
    assert len(out) != len(parent)  # the generator's duration stays (the audit shows it)
    assert rms_dbfs(out) == pytest.approx(rms_dbfs(parent), abs=0.1)
    assert bandwidth_hz(out, SR) <= bandwidth_hz(parent, SR) + 200
    assert leading_silence_s(out, SR) == pytest.approx(leading_silence_s(parent, SR), abs=0.041)
    assert trailing_silence_s(out, SR) == pytest.approx(trailing_silence_s(parent, SR), abs=0.041)
    assert noise_floor_dbfs(out, SR) == pytest.approx(noise_floor_dbfs(parent, SR), abs=3.0)
    unmatched_floor = noise_floor_dbfs(tts, SR)
    assert abs(unmatched_floor - noise_floor_dbfs(parent, SR)) > 6.0  # the shortcut the matching removes


def test_the_matched_band_measures_exactly_the_parents_band():
    """A plain low-pass at the parent's measured band would measure a few bins lower, every time: a shortcut."""
    from pipeline.audio import lowpass, to_pcm16

    rng = np.random.default_rng(0)
    for k in range(12):
        wave = make_wave(2.0, SR, seed=k, noise=0.02) + 0.01 * rng.standard_normal(2 * SR).astype(np.float32)
        parent = to_pcm16(lowpass(wave, SR, 3000 + 300 * k)).astype(np.float32) / 32768
        fake = parent + 0.003 * rng.standard_normal(len(parent)).astype(np.float32)
        out, _ = match_to_parent(fake, parent, SR, parent_bandwidth_hz=bandwidth_hz(parent, SR))
        out = to_pcm16(out).astype(np.float32) / 32768
        assert bandwidth_hz(out, SR) == bandwidth_hz(parent, SR), k
        plain = to_pcm16(lowpass(fake, SR, bandwidth_hz(parent, SR))).astype(np.float32) / 32768
        assert bandwidth_hz(plain, SR) < bandwidth_hz(parent, SR)


def test_matching_is_deterministic_and_rejects_an_unknown_gate():
    parent, fake = _recording(), _generator_output(_recording())
    a, _ = match_to_parent(fake, parent, SR)
    b, _ = match_to_parent(fake.copy(), parent.copy(), SR)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="gate"):
        match_to_parent(fake, parent, SR, gate="zero")


def test_speech_mask_is_one_in_words_zero_in_long_silences_with_soft_edges():
    parent = _recording(lead_s=0.5)
    mask = speech_mask(parent, SR, hang_s=0.1, fade_s=0.01)
    assert mask[: int(0.3 * SR)].max() == 0.0
    assert mask[int(0.6 * SR): int(0.8 * SR)].min() == 1.0
    edge = np.nonzero((mask > 0) & (mask < 1))[0]
    assert 0 < len(edge) < 0.1 * len(mask)


def test_pre_echo_in_the_margins_around_speech_does_not_move_the_silences_or_the_noise_floor():
    """Before: the parent gate kept the generator's output within hang_s of speech, so a codec's pre-echo and hiss
    there made EnCodec fakes 20-60 ms shorter in silence and ~10 dB higher in noise floor (audit EER 3%)."""
    parent = _recording(lead_s=0.5, trail_s=0.5)
    rng = np.random.default_rng(3)
    smear = np.convolve(np.abs(parent), np.ones(1600) / 1600, mode="same")  # energy smeared 50 ms around the words
    fake = (parent + 0.3 * smear * rng.standard_normal(len(parent)) + 0.003 * rng.standard_normal(len(parent)))
    gated_only, _ = match_to_parent(fake.astype(np.float32), parent, SR, hang_s=0.1)
    assert noise_floor_dbfs(parent, SR) - noise_floor_dbfs(gated_only, SR) == pytest.approx(0.0, abs=1.0)
    assert leading_silence_s(gated_only, SR) == pytest.approx(leading_silence_s(parent, SR), abs=0.021)
    assert trailing_silence_s(gated_only, SR) == pytest.approx(trailing_silence_s(parent, SR), abs=0.021)
    loud = slice(int(0.6 * SR), int(1.0 * SR))  # inside the first word: the generator's output is kept there
    scale = np.float32(10 ** ((rms_dbfs(gated_only) - rms_dbfs(parent)) / 20))
    assert not np.allclose(gated_only[loud], parent[loud] * scale, atol=1e-3)
