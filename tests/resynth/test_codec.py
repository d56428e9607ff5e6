"""Codec round trips on a second of test-made audio: EnCodec (fitted / local pretrained), Codec2, MP3, Opus."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipeline.resynth import build, codec
from pipeline.resynth.common import align_to, logmel_distance
from tests.conftest import make_wave

SR = 16000
TINY = {"n_filters": 4, "dimension": 16, "bandwidths": [1.5, 6.0]}


def _check(wave: np.ndarray, out: np.ndarray, max_db: float) -> None:
    assert out.shape == wave.shape and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert not np.allclose(out, wave, atol=1e-4)
    assert 0.2 < logmel_distance(wave, out, SR) < max_db


@pytest.mark.parametrize("system", ["codec2_1300", "codec2_3200", "mp3_16kbps", "mp3_8kbps", "opus_8kbps"])
def test_classical_codecs_round_trip_a_second(system):
    wave = make_wave(1.0, SR)
    out = build("codec", system, {"sample_rate": SR})([wave])[0]
    _check(wave, out, max_db=25.0)


def test_mp3_delay_is_compensated():
    wave = make_wave(1.0, SR, seed=1)
    out = build("codec", "mp3_32kbps", {"sample_rate": SR})([wave])[0]
    corr = np.correlate(out[2000:14000], wave[2000:14000], mode="full")
    assert abs(int(np.argmax(corr)) - (12000 - 1)) <= 2


def test_mp3_and_opus_bit_rates_are_near_their_names():
    wave = make_wave(2.0, SR, noise=0.05)
    for system, kbps in (("mp3_16kbps", 16), ("opus_12kbps", 12)):
        r = build("codec", system, {"sample_rate": SR})
        _, size = r.roundtrip(wave)
        measured = size * 8 / 2.0 / 1000
        assert 0.5 * kbps < measured < 1.6 * kbps, (system, measured)


def test_align_to_removes_a_known_delay():
    wave = make_wave(0.5, SR, seed=2)
    delayed = np.concatenate([np.zeros(37, dtype=np.float32), wave])
    np.testing.assert_allclose(align_to(delayed, wave, 100)[: len(wave)], wave, atol=1e-6)


def _with_codebooks(model: torch.nn.Module) -> torch.nn.Module:
    """One training-mode quantizer pass: the package initialises its codebooks by k-means on it."""
    x = torch.from_numpy(np.stack([make_wave(1.0, SR, seed=s) for s in range(4)])).unsqueeze(1)
    model.train()
    model.quantizer(model.encoder(x), model.frame_rate, max(model.target_bandwidths))
    return model.eval()


def test_fitted_encodec_directory_round_trips_at_each_bandwidth(tmp_path):
    torch.manual_seed(0)
    model = _with_codebooks(codec.make_encodec(TINY))
    codec.save_codec(model, TINY, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["source"] == "fitted"
    wave = make_wave(1.0, SR)
    n_codebooks = {}
    for system in ("encodec_1.5kbps", "encodec_6kbps"):
        r = build("codec", system, {"sample_rate": SR, "generator": str(tmp_path)})
        out = r([wave, wave[:5000]])
        np.testing.assert_array_equal(r([wave[:5000]])[0], out[1])  # alone = in a batch with a longer clip
        assert len(out[1]) == 5000 and np.isfinite(out[0]).all() and out[0].shape == wave.shape
        with torch.inference_mode():
            codes, _ = r.model.encode(torch.from_numpy(wave).reshape(1, 1, -1))[0]
        n_codebooks[system] = codes.shape[1]
    assert n_codebooks == {"encodec_1.5kbps": 3, "encodec_6kbps": 12}  # 0.5 kbps per codebook at 50 frames/s


def test_pretrained_encodec_24khz_loads_from_a_local_checkpoint(tmp_path):
    from encodec.model import EncodecModel

    torch.manual_seed(0)
    model = EncodecModel.encodec_model_24khz(pretrained=False)
    torch.save(model.state_dict(), tmp_path / codec.ENCODEC_24K_FILE)
    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / "config.json").write_text(json.dumps({"source": "pretrained", "path": str(tmp_path)}))
    r = build("codec", "encodec_6kbps", {"sample_rate": SR, "generator": str(gen)})
    assert r.model.sample_rate == 24000
    wave = make_wave(0.5, SR)
    out = r([wave])[0]
    assert out.shape == wave.shape and np.isfinite(out).all()


def test_encodec_bandwidth_the_model_lacks_is_refused(tmp_path):
    codec.save_codec(codec.make_encodec(TINY), TINY, tmp_path)
    with pytest.raises(ValueError, match="bandwidths"):
        build("codec", "encodec_12kbps", {"sample_rate": SR, "generator": str(tmp_path)})


def test_encodec_without_a_generator_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="generator"):
        build("codec", "encodec_6kbps", {"sample_rate": SR})
    with pytest.raises(FileNotFoundError, match="fit_codec"):
        build("codec", "encodec_6kbps", {"sample_rate": SR, "generator": str(tmp_path)})


def test_bad_codec_names_and_rates_raise():
    with pytest.raises(ValueError, match="unknown codec system"):
        build("codec", "aac_32kbps", {})
    with pytest.raises(ValueError, match="Codec2 mode"):
        build("codec", "codec2_999", {})
    with pytest.raises(ValueError, match="Opus"):
        build("codec", "opus_2kbps", {"sample_rate": SR})
    with pytest.raises(ValueError, match="MP3"):
        build("codec", "mp3_500kbps", {"sample_rate": SR})


def test_codec2_output_does_not_depend_on_the_clips_decoded_before():
    # codec2's decoder keeps a process-global random state: without isolation the second call differs
    wave = make_wave(1.0, SR, seed=3)
    other = make_wave(1.5, SR, seed=4)
    codec = build("codec", "codec2_1300", {"sample_rate": SR})
    alone = codec([wave])[0]
    after_others = codec([other, other, wave])[2]
    np.testing.assert_array_equal(alone, after_others)
