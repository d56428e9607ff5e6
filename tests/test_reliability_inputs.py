"""Inputs that hung a stage, crashed it or were read wrong without a word (issue 27, cases 7, 8, 17, 18, 19, 21,
28): sample rates no audio has, headers that declare less than the file holds, FIFOs, devices and unreadable files
in a corpus root, labels.csv files that are not UTF-8, have a giant field or no row, out-of-phase stereo, and ten
thousand missing files. Each is a reject or a one-line error naming the file and the cause."""

from __future__ import annotations

import builtins
import json
import logging
import os
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from pipeline import __main__ as cli
from pipeline import prepare
from pipeline.audio import AudioError, audio_header, read_audio, read_pcm16, write_audio
from pipeline.corpora.common import CorpusError
from pipeline.corpora.folder import load_folder
from pipeline.logs import log_some
from tests.conftest import make_wave, write_wave

MiB = 1 << 20


def _wav_with_rate(path: Path, rate: int, seconds: float = 1.0) -> Path:
    """A 16 kHz PCM WAV whose header then claims `rate` Hz (sample rate and byte rate)."""
    write_wave(path, np.tile(make_wave(1.0), int(np.ceil(seconds)))[: int(seconds * 16000)])
    data = bytearray(path.read_bytes())
    data[24:28] = rate.to_bytes(4, "little")
    data[28:32] = (2 * rate).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


# ----------------------------------------------------------------------------- case 7, 18: sample-rate bounds


@pytest.mark.parametrize("rate", [1, 3999, 384001, 10**6])
def test_an_implausible_header_rate_is_a_reject_in_words(tmp_path, rate):
    """Before: a WAV claiming 1 Hz was read as a 16000-second clip (and resampled 16000x in prepare)."""
    path = _wav_with_rate(tmp_path / "x.wav", rate)
    with pytest.raises(AudioError, match=rf"implausible sample rate {rate} Hz in the header of .*x.wav \(a damaged "
                                         r"header: audio is 4000-384000 Hz\)"):
        read_audio(path)


@pytest.mark.parametrize("rate", [4000, 8000, 384000])
def test_the_bounds_themselves_are_audio(tmp_path, rate):
    wave, sr = read_audio(_wav_with_rate(tmp_path / "x.wav", rate))
    assert sr == rate and len(wave) == 16000


def test_prepare_rejects_a_400_kb_wav_claiming_1_hz_before_decoding_it(tmp_path):
    """Case 18. Before: the header's 1 Hz made the chain resample 200,000 samples to 16 kHz: 3.2 billion samples
    (about 24 GiB of float64 in resample_poly), and prepare aborted. Now it is refused before anything is decoded."""
    root = tmp_path / "corpus"
    _wav_with_rate(root / "liar.wav", 1, seconds=12.5)
    assert (root / "liar.wav").stat().st_size > 400_000
    for i in range(4):
        write_wave(root / f"ok{i}.wav", make_wave(1.0, seed=i))
    (root / "labels.csv").write_text("file,speaker,label\n" + "".join(
        f"{n}.wav,s{i},bonafide\n" for i, n in enumerate(["liar", "ok0", "ok1", "ok2", "ok3"])))
    p = prepare.PrepareParams(corpora=({"name": "folder", "root": str(root)},), max_reject_fraction=0.5)
    tracemalloc.start()
    try:
        clips, rejects, _ = prepare.run(p, tmp_path / "clips")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(clips) == 4 and peak < 64 * MiB
    assert rejects["reason"].str.contains("implausible sample rate 1 Hz").tolist() == [True]


# ----------------------------------------------------------------------------- case 8: read to the true end


def test_a_wav_whose_data_size_is_too_small_is_read_to_the_true_end(tmp_path):
    """Before: libsndfile stopped at the declared size: 1 s of a 2 s recording, without a word."""
    wave = make_wave(2.0)
    path = write_wave(tmp_path / "x.wav", wave)
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 4
    data[at:at + 4] = (16000 * 2).to_bytes(4, "little")   # one second of 16-bit mono declared
    path.write_bytes(bytes(data))
    assert sf.info(str(path)).frames == 16000 and audio_header(path).declared == 32000
    np.testing.assert_array_equal(read_audio(path)[0], read_audio(write_wave(tmp_path / "ok.wav", wave))[0])


def test_chunks_after_the_data_are_not_read_as_audio(tmp_path):
    path = write_wave(tmp_path / "x.wav", make_wave(1.0))
    (tmp_path / "x.wav").write_bytes(path.read_bytes() + b"LIST" + (12).to_bytes(4, "little") + b"INFOISFT\0\0\0\0")
    assert audio_header(path) == (16000, {})
    assert len(read_audio(path)[0]) == 16000


def test_a_flac_whose_streaminfo_count_is_too_small_is_read_to_its_last_frame(tmp_path):
    """Before: 1 s of a 2 s FLAC whose STREAMINFO said 16000 samples."""
    wave = make_wave(2.0, seed=4)
    plain = tmp_path / "plain.flac"
    write_audio(plain, wave, 16000)
    short = tmp_path / "short.flac"
    data = bytearray(plain.read_bytes())
    field = int.from_bytes(data[18:26], "big") & ~((1 << 36) - 1)
    data[18:26] = (field | 16000).to_bytes(8, "big")
    short.write_bytes(bytes(data))
    assert sf.info(str(short)).frames == 16000
    np.testing.assert_array_equal(read_audio(short)[0], read_audio(plain)[0])
    assert len(read_audio(short, max_duration_s=1.5)[0]) == 24000


def test_a_wav_holding_less_than_its_header_is_still_a_truncation_reject(tmp_path):
    path = write_wave(tmp_path / "x.wav", make_wave(2.0))
    path.write_bytes(path.read_bytes()[:-16000])
    with pytest.raises(AudioError, match="truncated audio .*declares 32000 frames, the file holds 24000"):
        read_audio(path)


# ----------------------------------------------------------------------------- case 17: FIFOs, devices, permissions


def _corpus_root(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "corpus"
    write_wave(root / "ok.wav", make_wave(1.0))
    (root / "labels.csv").write_text("file,speaker,label\nok.wav,s1,bonafide\n")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"seed": 1, "prepare": {"corpora": [{"name": "folder", "root": str(root)}]}}))
    return root, params


def _index(tmp_path: Path, params: Path) -> tuple[int, dict]:
    """Run corpus_index in a thread with a deadline (a hang fails the test instead of blocking it)."""
    out: dict = {}
    argv = ["corpus_index", "--params", str(params), "--out", str(tmp_path / "index.json"), "--cache",
            str(tmp_path / "cache.json")]
    worker = threading.Thread(target=lambda: out.setdefault("code", cli.main(argv)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "corpus_index hung"
    return out["code"], json.loads((tmp_path / "index.json").read_text())["corpora"][0]


def test_corpus_index_lists_a_fifo_and_a_device_link_without_reading_them(tmp_path):
    """Before: a FIFO blocked the stage forever, a symlink to /dev/zero was hashed forever (on every dvc repro)."""
    root, params = _corpus_root(tmp_path)
    os.mkfifo(root / "pipe")
    os.symlink("/dev/zero", root / "zero.wav")
    code, entry = _index(tmp_path, params)
    assert code == 0 and entry["files"] == 2 and entry["special"] == {"pipe": "FIFO", "zero.wav": "device"}
    os.unlink(root / "pipe")
    assert _index(tmp_path, params)[1]["digest"] != entry["digest"]   # the special files count in the digest


def test_corpus_index_lists_an_unreadable_file_and_goes_on(tmp_path, monkeypatch, capsys):
    """Before: a mode-000 file raised PermissionError (a traceback). Tests run as root too, where mode 000 still
    reads, so opening that one file is refused here as the kernel refuses it to a user."""
    root, params = _corpus_root(tmp_path)
    secret = root / "secret.wav"
    secret.write_bytes(b"x" * 100)
    secret.chmod(0)
    real_open = builtins.open

    def open_as_a_user(file, *args, **kwargs):
        if str(file) == str(secret):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_as_a_user)
    code, entry = _index(tmp_path, params)
    assert code == 0 and entry["unreadable"] == {"secret.wav": "Permission denied"} and entry["files"] == 2
    assert "secret.wav: unreadable: Permission denied" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["fifo", "device", "folder", "missing"])
def test_read_audio_refuses_what_is_not_a_regular_file_without_opening_it(tmp_path, kind):
    path = tmp_path / "x.wav"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        os.symlink("/dev/zero", path)
    elif kind == "folder":
        path.mkdir()
    reason = {"fifo": "is a FIFO", "device": "is a device", "folder": "is a folder", "missing": "missing file"}[kind]
    for reader in (read_audio, read_pcm16):
        with pytest.raises(AudioError, match=reason):
            reader(path)


def test_prepare_rejects_a_listed_fifo_with_its_kind(tmp_path):
    root = tmp_path / "corpus"
    for i in range(4):
        write_wave(root / f"ok{i}.wav", make_wave(1.0, seed=i))
    os.mkfifo(root / "pipe.wav")
    (root / "labels.csv").write_text("file,speaker,label\n" + "".join(
        f"{n}.wav,s{i},bonafide\n" for i, n in enumerate(["pipe", "ok0", "ok1", "ok2", "ok3"])))
    result = load_folder(root)
    assert [r["reason"] for r in result.rejects] == ["not a regular file (a folder, FIFO or device)"]


# ----------------------------------------------------------------------------- case 19: labels.csv


def _folder(tmp_path: Path, labels: bytes) -> Path:
    root = tmp_path / "corpus"
    write_wave(root / "a.wav", make_wave(1.0))
    (root / "labels.csv").write_bytes(labels)
    return root


@pytest.mark.parametrize("labels, message", [
    ("file,speaker,label\na.wav,s1,bonafide\nb.wav,Jos\xe9,bonafide\n".encode("latin-1"),
     r"labels.csv is not UTF-8 \(line 3, byte 0xe9\): save it as UTF-8"),
    (b"file,speaker,label\na.wav," + b"x" * 140_000 + b",bonafide\n",
     r"labels.csv line 2: field larger than field limit \(131072\)"),
    (b"file,speaker,label\n", r"labels.csv has a header but no rows"),
])
def test_a_labels_csv_that_cannot_be_read_is_one_corpus_error(tmp_path, labels, message):
    """Before: UnicodeDecodeError and _csv.Error tracebacks, and `0 of 0 source rows rejected (0.0% > 20%)`."""
    with pytest.raises(CorpusError, match=message):
        load_folder(_folder(tmp_path, labels))


def test_prepare_stops_on_a_latin1_labels_csv_with_one_line(tmp_path, capsys):
    root = _folder(tmp_path, "file,speaker,label\na.wav,Jos\xe9,bonafide\n".encode("latin-1"))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"seed": 1, "audio": {"sample_rate": 16000},
                                      "prepare": {"corpora": [{"name": "folder", "root": str(root)}]}}))
    out = tmp_path / "out"
    code = cli.main(["prepare", "--params", str(params), "--clips", str(out / "clips.parquet"), "--rejects",
                     str(out / "rejects.parquet"), "--audio-dir", str(out / "clips"), "--metrics", str(out / "m.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is not UTF-8 (line 2, byte 0xe9)" in err
    assert not out.exists()


# ----------------------------------------------------------------------------- case 21: channels that cancel


def test_stereo_channels_that_cancel_are_named_not_called_silent(tmp_path):
    """Before: `silent audio (peak below -60 dBFS)`, though each channel is speech at -11 dBFS."""
    wave = make_wave(1.0)
    path = tmp_path / "x.wav"
    sf.write(path, np.stack([wave, -wave], axis=1), 16000, subtype="PCM_16")
    with pytest.raises(AudioError, match=r"the 2 channels of .*x.wav cancel in the mono mix-down \(out of phase: the "
                                         r"mix is silent, a channel peaks at -\d+\.\d dBFS\); keep one channel"):
        read_audio(path)
    sf.write(path, np.stack([wave, 0.5 * wave], axis=1), 16000, subtype="PCM_16")
    assert np.max(np.abs(read_audio(path)[0])) > 0.05                 # ordinary stereo still mixes down
    sf.write(path, np.zeros((16000, 2)), 16000, subtype="PCM_16")
    assert not read_audio(path)[0].any()                               # true silence stays check_audio's to judge


# ----------------------------------------------------------------------------- case 28: ten thousand missing files


def test_ten_thousand_missing_files_log_five_lines_and_a_count(tmp_path, caplog):
    """Before: 10,000 `missing file` warnings, one per row."""
    root = tmp_path / "corpus"
    write_wave(root / "ok.wav", make_wave(1.0))
    rows = ["ok.wav,s0,bonafide"] + [f"gone{i}.wav,s{i % 7},bonafide" for i in range(10_000)]
    (root / "labels.csv").write_text("file,speaker,label\n" + "\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING):
        result = load_folder(root)
    assert len(result.rejects) == 10_000 and len(result.sources) == 1
    missing = [r.getMessage() for r in caplog.records if "gone" in r.getMessage() or "more" in r.getMessage()]
    assert len(missing) == 6 and missing[-1] == "folder: ... and 9995 more (9995 x missing file)"


def test_log_some_counts_the_rest_by_reason(caplog):
    log = logging.getLogger("test.log_some")
    items = [(f"c{i}", "missing file" if i % 3 else "silent audio") for i in range(12)]
    with caplog.at_level(logging.WARNING):
        log_some(log, items, "rejected", shown=2)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["rejected: c0: silent audio", "rejected: c1: missing file",
                     "rejected: ... and 10 more (7 x missing file; 3 x silent audio)"]
    caplog.clear()
    log_some(log, [], "rejected")
    assert not caplog.records
