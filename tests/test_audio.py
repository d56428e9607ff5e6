import numpy as np
import pytest
import soundfile as sf

from pipeline.audio import (
    AudioError,
    bandwidth_hz,
    check_audio,
    leading_silence_s,
    measure,
    read_audio,
    resample,
    rms_dbfs,
    write_audio,
)
from pipeline.matching import match_to_parent
from tests.conftest import make_wave, write_wave


def test_read_audio_makes_mono_and_resamples(tmp_path):
    stereo = np.stack([make_wave(1.0, 8000), make_wave(1.0, 8000)], axis=1)
    path = tmp_path / "s.wav"
    sf.write(path, stereo, 8000)
    wave, sr = read_audio(path, 16000)
    assert sr == 16000 and wave.ndim == 1 and abs(len(wave) - 16000) <= 1


def test_read_audio_of_a_text_file_raises_audio_error(tmp_path):
    path = tmp_path / "x.wav"
    path.write_text("not audio")
    with pytest.raises(AudioError, match="unreadable"):
        read_audio(path)


@pytest.mark.parametrize("wave,reason", [
    (np.zeros(0, np.float32), "empty"),
    (np.zeros(16000, np.float32), "silent"),
    (np.full(16000, np.nan, np.float32), "NaN"),
    (np.ones(100, np.float32) * 0.1, "shorter"),
])
def test_check_audio_rejects_bad_audio(wave, reason):
    with pytest.raises(AudioError, match=reason):
        check_audio(wave, 16000)


def test_write_audio_is_16bit_flac_with_sample_hash(tmp_path):
    wave = make_wave(0.5)
    sha = write_audio(tmp_path / "a.flac", wave, 16000)
    info = sf.info(tmp_path / "a.flac")
    assert info.subtype == "PCM_16" and info.format == "FLAC" and info.channels == 1
    assert len(sha) == 64 and sha == write_audio(tmp_path / "b.flac", wave, 16000)


def test_measure_finds_bandwidth_of_upsampled_narrowband_audio():
    wide = make_wave(2.0, 16000, noise=0.05)
    narrow = resample(resample(wide, 16000, 8000), 8000, 16000)
    assert bandwidth_hz(narrow, 16000) < 4500
    assert bandwidth_hz(wide, 16000) > 6000


def test_leading_silence_and_rms_are_measured():
    wave = np.concatenate([np.zeros(8000, np.float32), make_wave(1.0)])
    assert leading_silence_s(wave, 16000) == pytest.approx(0.5, abs=0.05)
    m = measure(wave, 16000)
    assert m["duration_s"] == pytest.approx(1.5) and -40 < m["rms_dbfs"] < -5


def test_shortcut_guards_match_length_rms_and_bandwidth():
    parent = resample(make_wave(1.0, 8000), 8000, 16000)
    fake = np.random.default_rng(0).standard_normal(17000).astype(np.float32) * 0.5
    out, matched = match_to_parent(fake, parent, 16000, gate="none")
    assert matched == "length,band,level"
    assert len(out) == len(parent)
    assert rms_dbfs(out) == pytest.approx(rms_dbfs(parent), abs=0.5)
    assert bandwidth_hz(out, 16000) < 4600


def test_write_wave_helper_roundtrip(tmp_path):
    p = write_wave(tmp_path / "w.wav", make_wave(0.2))
    assert read_audio(p)[0].shape == (3200,)


def test_a_truncated_wav_is_an_audio_error_naming_both_frame_counts(tmp_path):
    full = write_wave(tmp_path / "full.wav", make_wave(1.0))
    data = full.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: 44 + (len(data) - 44) // 3])   # a third of the samples, header unchanged
    assert len(read_audio(full)[0]) == 16000
    with pytest.raises(AudioError, match=r"truncated audio .*declares 16000 frames, the file holds 5333"):
        read_audio(cut)


def test_streamed_and_odd_wav_headers_are_not_flagged(tmp_path):
    path = write_wave(tmp_path / "s.wav", make_wave(0.5))
    data = bytearray(path.read_bytes())
    data[40:44] = (0xFFFFFFFF).to_bytes(4, "little")   # a streaming writer's unknown data size
    path.write_bytes(bytes(data))
    assert len(read_audio(path)[0]) == 8000
    extensible = write_wave(tmp_path / "f.wav", make_wave(0.5), subtype="FLOAT")
    assert len(read_audio(extensible)[0]) == 8000
