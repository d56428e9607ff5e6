"""Audio that used to crash a stage, pass as a clip, or change when prepared twice (issue 27, cases 7, 8, 9, 16, 18,
20, 21): headers that declare more than the file holds or than memory can hold, GSM 6.10 WAVs and streamed FLACs,
DC-only and constant signals, bandwidth of a DC offset, and the chain applied twice."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from pipeline import prepare, score
from pipeline.audio import (
    BLOCK_SAMPLES,
    AudioError,
    bandwidth_hz,
    check_audio,
    read_audio,
    read_pcm16,
    resample,
    vad_trim,
    write_audio,
)
from pipeline.chain import Chain, apply_chain, chain_from_params, has_power_above
from pipeline.models import build_model, save_checkpoint
from pipeline.params import load_params
from tests.conftest import make_wave, write_wave

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20


def _peak_bytes(fn, *args, **kwargs):
    """(result, peak bytes allocated by Python and numpy while fn ran)."""
    tracemalloc.start()
    try:
        result = fn(*args, **kwargs)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _flac_claiming(path: Path, wave: np.ndarray, total_samples: int) -> Path:
    """A 16 kHz FLAC of `wave` whose STREAMINFO declares `total_samples` (0 = unknown: a streaming encoder)."""
    write_audio(path, wave, 16000)
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first: its 34 bytes start at offset 8
    field = int.from_bytes(data[18:26], "big") & ~((1 << 36) - 1)
    data[18:26] = (field | total_samples).to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


# ----------------------------------------------------------------------------- cases 7, 8: bounded allocation


def test_a_flac_header_claiming_34_billion_frames_is_a_truncation_reject_without_the_allocation(tmp_path):
    """Before: read_audio allocated header frames x 4 bytes (128 GiB here) before decoding: MemoryError or OOM."""
    path = _flac_claiming(tmp_path / "liar.flac", make_wave(1.0), 1 << 35)
    (_, peak) = _peak_bytes(lambda: pytest.raises(AudioError, read_audio, path))
    with pytest.raises(AudioError, match=r"truncated audio .*declares 34359738368 frames, the file holds 16000"):
        read_audio(path)
    with pytest.raises(AudioError, match="the file holds 16000"):
        read_audio(path, max_duration_s=10.0)
    assert peak < 3 * BLOCK_SAMPLES * 4


def test_a_file_of_many_channels_is_decoded_a_block_at_a_time(tmp_path):
    """256 channels x 2 s: the whole file as float32 is 32 MiB; decoding holds one 4 MiB block and the mono result."""
    rng = np.random.default_rng(0)
    frames = rng.uniform(-0.5, 0.5, size=(32000, 256)).astype(np.float32)
    sf.write(tmp_path / "many.wav", frames, 16000, subtype="PCM_16")
    (wave, sr), peak = _peak_bytes(read_audio, tmp_path / "many.wav")
    assert sr == 16000 and wave.shape == (32000,)
    np.testing.assert_allclose(wave, sf.read(tmp_path / "many.wav", dtype="float32")[0].mean(axis=1), atol=1e-7)
    assert peak < 12 * MiB < 32000 * 256 * 4


def test_max_duration_reads_only_the_start_of_a_long_file(tmp_path):
    path = write_wave(tmp_path / "long.wav", make_wave(60.0, 16000), 16000)
    (wave, _), peak = _peak_bytes(read_audio, path, max_duration_s=2.5)
    assert len(wave) == 40000 and peak < 8 * MiB   # the full file would be 3.7 MiB float32, plus its copies
    np.testing.assert_array_equal(wave, read_audio(path)[0][:40000])


@pytest.mark.parametrize("vad", [False, True])
def test_the_bounded_read_gives_the_clip_the_whole_file_gives(tmp_path, vad):
    """A 30 s file at 44.1 kHz, the chain capped at 2 s: reading read_limit_s() seconds gives the same clip."""
    wave = np.concatenate([np.zeros(int(0.7 * 44100), np.float32), make_wave(30.0, 44100, seed=3)])
    path = write_wave(tmp_path / "long.wav", wave, 44100)
    chain = Chain.from_params({"vad_trim": vad, "max_duration_s": 2.0}, sample_rate=16000)
    bounded = apply_chain(*read_audio(path, max_duration_s=chain.read_limit_s()), chain)
    np.testing.assert_array_equal(bounded, apply_chain(*read_audio(path), chain))
    assert len(bounded) == 32000
    assert chain.read_limit_s() == (5.0 if vad else 3.0)
    assert Chain.resample_only(16000).read_limit_s() is None and Chain.resample_only(16000).read_limit_s(4.0) == 5.0


# ----------------------------------------------------------------------------- cases 9, 18, 21: DC and constants


@pytest.mark.parametrize("wave, reason", [
    (np.full(16000, 0.5, np.float32), r"constant audio \(every sample is 0.5\)"),
    (np.full(16000, -1.0, np.float32), r"constant audio \(every sample is -1\)"),
    ((0.3 + 1e-5 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32), r"DC offset only"),
])
def test_dc_only_and_constant_audio_are_rejects(wave, reason):
    """Before: their peak (0.3 to 1.0) passed the -60 dBFS silence check and they became clips."""
    with pytest.raises(AudioError, match=reason):
        check_audio(wave, 16000)


def test_speech_on_a_dc_offset_is_still_audio():
    check_audio(make_wave(1.0) + np.float32(0.4), 16000)


def test_prepare_rejects_dc_only_and_constant_files_with_their_reason(tmp_path):
    root = tmp_path / "corpus"
    write_wave(root / "dc.wav", (0.25 + 1e-6 * np.random.default_rng(1).standard_normal(16000)).astype(np.float32))
    write_wave(root / "flat.wav", np.full(16000, -0.5, np.float32))
    for i in range(4):
        write_wave(root / f"ok{i}.wav", make_wave(1.0, seed=i))
    (root / "labels.csv").write_text("file,speaker,label\n" + "".join(
        f"{name}.wav,s{i},bonafide\n" for i, name in enumerate(["dc", "flat", "ok0", "ok1", "ok2", "ok3"])))
    p = prepare.PrepareParams(corpora=({"name": "folder", "root": str(root)},), max_reject_fraction=0.5)
    clips, rejects, _ = prepare.run(p, tmp_path / "clips")
    assert sorted(clips["clip_id"]) == [f"folder_ok{i}" for i in range(4)]
    reasons = dict(zip(rejects["clip_id"], rejects["reason"]))
    assert "DC offset only" in reasons["folder_dc"] and "constant audio" in reasons["folder_flat"]


def test_bandwidth_ignores_dc():
    """Before: a constant measured 8000 Hz (the Nyquist frequency of a flat floor of zeros)."""
    assert bandwidth_hz(np.full(16000, 0.5, np.float32), 16000) == 0.0
    assert bandwidth_hz(np.zeros(16000, np.float32), 16000) == 0.0
    narrow = resample(resample(make_wave(2.0, noise=0.05), 16000, 8000), 8000, 16000)
    assert bandwidth_hz(narrow + np.float32(0.3), 16000) == bandwidth_hz(narrow, 16000) < 4500


# ----------------------------------------------------------------------------- case 20: GSM 6.10 and streamed FLAC


def _gsm_wav(path: Path, seconds: float = 1.0) -> Path:
    sf.write(path, resample(make_wave(seconds), 16000, 8000), 8000, subtype="GSM610", format="WAV")
    return path


def test_a_gsm_610_wav_is_read(tmp_path):
    """Before: `frames must be specified for non-seekable files` (a ValueError: a traceback in score)."""
    wave, sr = read_audio(_gsm_wav(tmp_path / "gsm.wav"), 16000)
    assert sr == 16000 and 16000 <= len(wave) <= 16000 + 640   # padded to whole GSM blocks of 320 samples
    reference = make_wave(1.0)
    assert np.corrcoef(wave[800:15200], reference[800:15200])[0, 1] > 0.8   # a lossy codec: the same speech


def test_a_streamed_flac_without_a_sample_count_reads_as_the_plain_flac(tmp_path):
    """Before: libsndfile reported 2**63 - 1 frames, and reading all of them raised `array is too big`."""
    wave = make_wave(1.3)
    plain = tmp_path / "plain.flac"
    write_audio(plain, wave, 16000)
    streamed = _flac_claiming(tmp_path / "streamed.flac", wave, 0)
    assert sf.info(str(streamed)).frames > 1 << 62
    np.testing.assert_array_equal(read_audio(streamed)[0], read_audio(plain)[0])
    assert len(read_audio(streamed, max_duration_s=0.5)[0]) == 8000


def _model_dir(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model({"arch": "resnet", "width": 4, "embedding_dim": 8, "sample_rate": 16000}).eval()
    save_checkpoint(model, {"chain": Chain.from_params({}, sample_rate=16000).to_dict()}, tmp_path / "m" / "model.pt")
    return tmp_path / "m"


def test_score_reads_gsm_and_streamed_flac_in_a_folder_and_rejects_only_undecodable_files(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    _gsm_wav(folder / "gsm.wav")
    _flac_claiming(folder / "streamed.flac", make_wave(1.0, seed=2), 0)
    write_wave(folder / "plain.wav", make_wave(1.0, seed=3))
    odd = write_wave(folder / "odd_codec.wav", make_wave(1.0, seed=4))
    data = bytearray(odd.read_bytes())
    data[20:22] = (0x1234).to_bytes(2, "little")   # a WAVE format tag no decoder knows
    odd.write_bytes(bytes(data))
    out = tmp_path / "scores.tsv"
    code = score.main(["--model", str(_model_dir(tmp_path)), str(folder), "--out", str(out), "--eval-s", "0.5",
                       "--device", "cpu", "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 0
    assert sorted(Path(k).name for k in score.read_scores(out)) == ["gsm.wav", "plain.wav", "streamed.flac"]
    assert f"reject {folder / 'odd_codec.wav'}: unreadable audio" in err


# ----------------------------------------------------------------------------- case 16: the chain is idempotent


def _inputs() -> list[tuple[np.ndarray, int]]:
    """Test-made speech at several rates: silence around it, a loud tone at the low-pass edge, a long file, a
    float file above full scale, a pause right where a 2 s cap cuts."""
    rng = np.random.default_rng(7)
    out = []
    for k, sr in enumerate((16000, 22050, 44100, 8000, 48000)):
        speech = make_wave(3.0 + k, sr, f0=100 + 20 * k, seed=k, noise=0.02)
        t = np.arange(len(speech)) / sr
        speech = speech + (0.05 * np.sin(2 * np.pi * 3900 * t) * (speech != 0)).astype(np.float32)
        lead = (1e-3 * rng.standard_normal(int((0.3 + 0.1 * k) * sr))).astype(np.float32)
        out.append((np.concatenate([lead, speech, lead[: sr // 5]]), sr))
    paused = np.concatenate([make_wave(1.9, 16000), np.zeros(8000, np.float32), make_wave(1.0, 16000, seed=9)])
    out += [(paused, 16000), (1.7 * make_wave(2.0, 24000, seed=5), 24000), (make_wave(14.0, 16000, seed=6), 16000)]
    return out


CHAINS = {
    "default": Chain.from_params({}, sample_rate=16000),
    "demo": chain_from_params(load_params(ROOT / "params.yaml"), 16000),
    "telephone": Chain.from_params({"vad_trim": True, "max_duration_s": 10.0, "lowpass_hz": 4000}, sample_rate=16000),
    "tiny": chain_from_params({"prepare": load_params(ROOT / "params.tiny.yaml")["prepare"]}, 16000),
    "trim_and_short_cap": Chain.from_params({"vad_trim": True, "max_duration_s": 2.0, "lowpass_hz": 3000},
                                            sample_rate=16000),
}


@pytest.mark.parametrize("name", list(CHAINS))
def test_the_chain_applied_twice_is_the_chain_applied_once(name):
    """Before: the default chain moved loud samples by one 16-bit step per pass (the 32767 scale), the demo's
    re-trimmed its own pads and low-passed its own output again (hundreds of steps)."""
    chain = CHAINS[name]
    assert name != "telephone" or (chain.vad_trim and chain.lowpass_hz == 4000)
    for wave, sr in _inputs():
        once = apply_chain(wave, sr, chain)
        twice = apply_chain(once, chain.sample_rate, chain)
        assert once.dtype == np.float32 and len(once) > 0
        np.testing.assert_array_equal(twice, once)


def test_a_prepared_clip_written_and_read_back_is_unchanged_by_the_chain(tmp_path):
    chain = CHAINS["demo"]
    for i, (wave, sr) in enumerate(_inputs()):
        clip = tmp_path / f"{i}.flac"
        write_audio(clip, apply_chain(wave, sr, chain), 16000)
        pcm, _ = read_pcm16(clip)
        again = apply_chain(*read_audio(clip), chain)
        np.testing.assert_array_equal(again, pcm.astype(np.float32) / 32768)
        assert write_audio(tmp_path / "again.flac", again, 16000) == write_audio(clip, again, 16000)


def test_vad_trim_cuts_on_the_frame_grid_and_keeps_the_pad():
    """Cuts on the input's 20 ms grid (3 quiet frames of pad kept), so the trimmed wave trims to itself."""
    wave = np.concatenate([np.zeros(7000, np.float32), make_wave(1.0), np.zeros(5000, np.float32)])
    out = vad_trim(wave, 16000)
    starts = [s for s in range(0, len(wave) - len(out) + 1, 320) if np.array_equal(wave[s:s + len(out)], out)]
    assert len(starts) == 1 and 0 < starts[0] < 7000 and len(out) < len(wave) - 4000
    frames_db = 10 * np.log10(np.mean(np.square(out[: len(out) // 320 * 320].reshape(-1, 320),
                                                 dtype=np.float64), axis=1) + 1e-12)
    loud = np.nonzero(frames_db > max(-45.0, frames_db.max() - 40.0))[0]
    assert loud[0] == 3 and len(out) // 320 - 1 - loud[-1] == 3
    np.testing.assert_array_equal(vad_trim(out, 16000), out)


def test_the_low_pass_leaves_a_band_limited_16_bit_clip_alone_and_filters_real_content():
    chain = CHAINS["telephone"]
    made = apply_chain(make_wave(2.0, 22050, noise=0.05), 22050, chain)
    assert not has_power_above(made, 16000, 4000) and not has_power_above(made[4321:20000], 16000, 4000)
    hiss = made + np.float32(10 ** (-80 / 20)) * np.random.default_rng(0).standard_normal(len(made)).astype(np.float32)
    assert has_power_above(hiss, 16000, 4000)
    assert has_power_above(make_wave(1.0, noise=0.05), 16000, 4000)


def test_score_on_prepared_clips_with_and_without_prepared_gives_the_same_scores(tmp_path):
    """A user who forgets --prepared on data/clips gets the same numbers: the chain leaves its own clips alone."""
    chain = CHAINS["demo"]
    folder = tmp_path / "clips"
    for i, (wave, sr) in enumerate(_inputs()):
        write_audio(folder / f"{i}.flac", apply_chain(wave, sr, chain), 16000)
    torch.manual_seed(0)
    model = build_model({"arch": "resnet", "width": 4, "embedding_dim": 8, "sample_rate": 16000}).eval()
    save_checkpoint(model, {"chain": chain.to_dict()}, tmp_path / "m" / "model.pt")
    common = ["--model", str(tmp_path / "m"), str(folder), "--eval-s", "1.0", "--device", "cpu", "--threads", "1"]
    assert score.main([*common, "--out", str(tmp_path / "raw.tsv")]) == 0
    assert score.main([*common, "--prepared", "--out", str(tmp_path / "prepared.tsv")]) == 0
    raw, prepared = score.read_scores(tmp_path / "raw.tsv"), score.read_scores(tmp_path / "prepared.tsv")
    assert len(raw) == len(_inputs()) and raw == prepared
    assert pd.Series(raw).nunique() > 1
