"""Channels (pipeline.resynth.channel): label-keeping round trips, and the role every system has."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.audio import bandwidth_hz
from pipeline.resynth import channel
from pipeline.resynth.common import logmel_distance
from pipeline.schema import CHANNEL_FAMILIES, ROLES, default_role, system_role
from tests.conftest import make_wave

SR = 16000


@pytest.mark.parametrize("system", channel.SYSTEMS)
def test_every_channel_round_trips_a_second_at_the_clip_rate(system):
    wave = make_wave(1.0, SR, seed=2)
    out = channel.build(system, SR)([wave])[0]
    assert out.shape == wave.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert not np.allclose(out, wave, atol=1e-4)
    assert logmel_distance(wave, out, SR) < 25.0


@pytest.mark.parametrize("system", ["g711_mulaw", "g711_alaw", "gsm_fr", "g726_32", "codec2_1300"])
def test_telephone_channels_carry_the_telephone_band_only(system):
    wave = (make_wave(1.0, SR, noise=0.0) + 0.05 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    assert bandwidth_hz(wave, SR) > 7000
    assert bandwidth_hz(channel.build(system, SR)([wave])[0], SR) < 4500  # the 8 kHz round trip (+ filter slope)


def test_g722_is_wideband_telephony_and_keeps_the_signal_in_time():
    pytest.importorskip("G722")
    wave = (make_wave(1.0, SR, noise=0.0) + 0.05 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    out = channel.build("g722", SR)([wave])[0]
    assert 6500 < bandwidth_hz(out, SR) <= 8000  # the 7 kHz band of G.722, where G.711 keeps 4 kHz
    assert np.corrcoef(out, wave)[0, 1] > 0.95  # aligned: no delay left after the QMF filter bank
    assert channel.build("g722", 22050)([wave[:8000]])[0].shape == (8000,)  # other clip rates go through 16 kHz
    assert default_role("g722") == "channel" and "g722" in CHANNEL_FAMILIES


def test_channel_round_trips_are_deterministic_per_clip_in_any_order():
    a, b = make_wave(1.0, SR, seed=3), make_wave(0.7, SR, seed=4)
    for system in ("codec2_1300", "opus_8kbps", "gsm_fr", "g722"):
        r = channel.build(system, SR)
        alone = r([a])[0]
        np.testing.assert_array_equal(r([b, b, a])[2], alone)


def test_the_codec2_helper_process_restarts_after_it_is_closed():
    r = channel.build("codec2_3200", SR)
    wave = make_wave(0.5, SR)
    first = r([wave])[0]
    channel._HELPER.close()
    np.testing.assert_array_equal(r([wave])[0], first)


def test_unknown_channel_names_and_settings_are_value_errors():
    with pytest.raises(ValueError, match="unknown channel"):
        channel.build("aac_32kbps", SR)
    with pytest.raises(ValueError, match="Codec2 mode"):
        channel.build("codec2_999", SR)
    with pytest.raises(ValueError, match="MP3"):
        channel.build("mp3_500kbps", SR)
    assert channel.systems(None) == list(channel.SYSTEMS)


def test_roles_default_by_family_and_a_flip_is_honoured():
    assert CHANNEL_FAMILIES == channel.FAMILIES and ROLES == ("spoof", "channel")
    for system in channel.SYSTEMS:
        assert default_role(system) == "channel", system
    for system in ("encodec_6kbps", "hifigan_universal", "world", "griffinlim", "diffusion_s0.5", "espeak_m3",
                   "piper_joe", "A07"):
        assert default_role(system) == "spoof", system
    assert system_role("encodec_6kbps", {"encodec_6kbps": "channel"}) == "channel"
    assert system_role("mp3_16kbps", {"mp3_16kbps": "spoof"}) == "spoof"
    assert system_role("mp3_16kbps", {"encodec_6kbps": "channel"}) == "channel"
