"""prepare on a tiny demo-layout corpus with one bad input of each kind."""

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

from pipeline import prepare
from pipeline.schema import read_clips, read_rejects
from tests.conftest import make_wave, write_wave

HEADER = "file,speaker,label,system,paradigm,language,text,source\n"


def _corpus(root, n_speakers=5, per_speaker=3, bad=True):
    lines = []
    for s in range(n_speakers):
        for c in range(per_speaker):
            sr = 8000 if s % 2 else 22050
            write_wave(root / f"audio/s{s}/{c}.wav", make_wave(1.0, sr, f0=100 + 20 * s, seed=c), sr)
            lines.append(f"audio/s{s}/{c}.wav,spk{s},bonafide,-,bonafide,en,hi,test")
    write_wave(root / "audio/tts/t0.wav", make_wave(1.0, 16000, seed=9))
    lines.append("audio/tts/t0.wav,tts_voice,spoof,piper_joe,tts,en,hi,test")
    if bad:
        (root / "audio/bad").mkdir(parents=True)
        (root / "audio/bad/text.wav").write_text("this is not audio")  # unreadable
        good = (root / "audio/s0/0.wav").read_bytes()
        (root / "audio/bad/corrupt.wav").write_bytes(good[:60])  # truncated header+data
        sf.write(root / "audio/bad/empty.wav", np.zeros(0, np.float32), 16000)
        sf.write(root / "audio/bad/silent.wav", np.zeros(16000, np.float32), 16000)
        nan = make_wave(1.0)
        nan[100:200] = np.nan
        sf.write(root / "audio/bad/nan.wav", nan, 16000, subtype="FLOAT")
        lines += [f"audio/bad/{n}.wav,spk0,bonafide,-,bonafide,en,hi,test"
                  for n in ("text", "corrupt", "empty", "silent", "nan")]
        lines.append("audio/bad/missing.wav,spk0,bonafide,-,bonafide,en,hi,test")
        lines.append("audio/s0/0.wav,spk0,unknown,-,bonafide,en,hi,test")
        lines.append("audio/s0/0.wav,spk0,bonafide,-,bonafide,en,hi,test")  # duplicate id
    (root / "metadata.csv").write_text(HEADER + "\n".join(lines) + "\n")


def _params(tmp_path, corpus_root, **over):
    params = {"seed": 7, "audio": {"sample_rate": 16000},
              "prepare": {"corpora": [{"name": "demo", "root": str(corpus_root)}], "dev_fraction": 0.2,
                          "test_fraction": 0.2, "min_duration_s": 0.3, "max_duration_s": 10.0,
                          "vad_trim": False, "max_reject_fraction": 0.5, **over}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _run(tmp_path, params):
    args = ["--params", str(params), "--clips", str(tmp_path / "out/clips.parquet"),
            "--rejects", str(tmp_path / "out/rejects.parquet"), "--audio-dir", str(tmp_path / "out/clips"),
            "--metrics", str(tmp_path / "out/prepare.json")]
    return prepare.main(args)


def test_prepare_writes_valid_clips_and_a_reject_row_per_bad_input(tmp_path):
    _corpus(tmp_path / "raw")
    assert _run(tmp_path, _params(tmp_path, tmp_path / "raw")) == 0
    clips = read_clips(tmp_path / "out/clips.parquet")
    rejects = read_rejects(tmp_path / "out/rejects.parquet")
    assert len(clips) == 16 and set(clips["sample_rate"]) == {16000}
    reasons = dict(zip(rejects["clip_id"].fillna("?"), rejects["reason"]))
    assert "unreadable" in reasons["demo_audio_bad_text"]
    assert any(w in reasons["demo_audio_bad_corrupt"] for w in ("unreadable", "empty", "shorter", "truncated"))
    assert "empty" in reasons["demo_audio_bad_empty"]
    assert "silent" in reasons["demo_audio_bad_silent"]
    assert "NaN" in reasons["demo_audio_bad_nan"]
    assert reasons["demo_audio_bad_missing"] == "missing file"
    assert any("unknown label" in r for r in rejects["reason"])
    assert any(r == "duplicate row: the same file is listed again" for r in rejects["reason"])
    # bandwidth is measured, not assumed: the 8 kHz speakers report about 4 kHz
    narrow = clips[clips["speaker"].isin(["spk1", "spk3"])]
    assert (narrow["bandwidth_hz"] < 4500).all()
    # every written file is 16-bit mono FLAC at 16 kHz
    info = sf.info(clips["path"].iloc[0])
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")


def test_prepare_splits_are_speaker_disjoint_and_deterministic(tmp_path):
    _corpus(tmp_path / "raw", n_speakers=8, bad=False)
    params = _params(tmp_path, tmp_path / "raw")
    assert _run(tmp_path, params) == 0
    first = read_clips(tmp_path / "out/clips.parquet")
    assert set(first["split"]) == {"train", "dev", "test", "eval:tts"}
    per_speaker = first[first["split"] != "eval:tts"].groupby("speaker")["split"].nunique()
    assert (per_speaker == 1).all()
    assert _run(tmp_path, params) == 0
    again = read_clips(tmp_path / "out/clips.parquet")
    pd.testing.assert_frame_equal(first, again)


def test_prepare_fails_with_a_summary_past_max_reject_fraction(tmp_path, capsys):
    _corpus(tmp_path / "raw", n_speakers=1, per_speaker=2)
    assert _run(tmp_path, _params(tmp_path, tmp_path / "raw", max_reject_fraction=0.1)) == 1
    err = capsys.readouterr().err
    assert "prepare failed" in err and "max_reject_fraction" in err and "missing file" in err
    assert not (tmp_path / "out/clips.parquet").exists(), "no clip table when the stage fails"
    assert len(read_rejects(tmp_path / "out/rejects.parquet")) >= 8


def test_prepare_params_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match=r"params prepare: unknown keys \['bogus'\]"):
        prepare.PrepareParams.from_params({"corpora": [{"name": "demo", "root": "x"}], "bogus": 1}, sample_rate=16000)
    with pytest.raises(ValueError, match="prepare.corpora is empty"):
        prepare.PrepareParams.from_params({"corpora": []}, sample_rate=16000)
    with pytest.raises(ValueError, match="unknown corpus"):
        prepare.load_sources(({"name": "nope", "root": "x"},))


def test_prepare_vad_trim_cuts_leading_silence(tmp_path):
    root = tmp_path / "raw"
    wave = np.concatenate([np.zeros(16000, np.float32), make_wave(1.0)])
    lines = []
    for s in range(3):
        write_wave(root / f"a{s}.wav", wave)
        lines.append(f"a{s}.wav,spk{s},bonafide,-,bonafide,en,hi,test")
    (root / "metadata.csv").write_text(HEADER + "\n".join(lines) + "\n")
    assert _run(tmp_path, _params(tmp_path, root, vad_trim=True)) == 0
    clips = read_clips(tmp_path / "out/clips.parquet")
    assert (clips["leading_silence_s"] < 0.1).all() and (clips["duration_s"] < 1.2).all()


def test_prepare_lowpass_band_limits_every_clip_alike(tmp_path):
    _corpus(tmp_path / "raw", n_speakers=4, bad=False)
    assert _run(tmp_path, _params(tmp_path, tmp_path / "raw", lowpass_hz=3000)) == 0
    clips = read_clips(tmp_path / "out/clips.parquet")
    assert (clips["bandwidth_hz"] <= 3100).all()


def _run_cli(tmp_path, params, capsys):
    """prepare.main as the CLI runs it: (exit code, stderr); an exception would fail the test."""
    capsys.readouterr()
    rc = _run(tmp_path, params)
    return subprocess.CompletedProcess([], rc, "", capsys.readouterr().err)


def test_prepare_rejects_a_truncated_wav_instead_of_keeping_a_short_clip(tmp_path):
    _corpus(tmp_path / "raw", n_speakers=4, bad=False)
    wav = tmp_path / "raw/audio/s0/1.wav"
    data = wav.read_bytes()
    wav.write_bytes(data[: 44 + (len(data) - 44) // 3])
    assert _run(tmp_path, _params(tmp_path, tmp_path / "raw")) == 0
    rejects = read_rejects(tmp_path / "out/rejects.parquet")
    assert rejects["clip_id"].tolist() == ["demo_audio_s0_1"] and "truncated audio" in rejects["reason"].iloc[0]
    assert "demo_audio_s0_1" not in set(read_clips(tmp_path / "out/clips.parquet")["clip_id"])


def _folder(root, rows, name="labels.csv"):
    for k, row in enumerate(rows):
        if not row.startswith(".."):
            write_wave(root / row.split(",")[0], make_wave(1.0, seed=k))
    (root / name).write_text("file,speaker,label\n" + "\n".join(rows) + "\n", encoding="utf-8")


@pytest.mark.parametrize("corpus_entry, message", [
    ({"name": "folder", "corpus": "../../x"}, "corpus name '../../x' is not allowed"),
    ({"name": "folder", "csv_name": "nope.csv"}, "nope.csv not found"),
    ({"name": "itw"}, "meta.csv not found"),
    ({"name": "asvspoof2019_la"}, "root must be the LA folder"),
    ({"name": "asvspoof2019_la", "partitions": ["test"]}, "unknown partitions ['test']"),
    ({"name": "asvspoof2021", "track": "xx"}, "track must be one of"),
])
def test_prepare_corpus_errors_exit_2_with_one_clear_line_and_write_nothing(tmp_path, corpus_entry, message,
                                                                             capsys):
    _folder(tmp_path / "raw", ["a.wav,s1,bonafide"])
    params = _params(tmp_path, tmp_path / "raw")
    cfg = yaml.safe_load(params.read_text())
    cfg["prepare"]["corpora"] = [{"root": str(tmp_path / "raw"), **corpus_entry}]
    params.write_text(yaml.safe_dump(cfg))
    proc = _run_cli(tmp_path, params, capsys)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "x").exists()


def test_prepare_empty_meta_csv_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw/meta.csv").write_text("")
    params = _params(tmp_path, tmp_path / "raw")
    cfg = yaml.safe_load(params.read_text())
    cfg["prepare"]["corpora"] = [{"name": "itw", "root": str(tmp_path / "raw")}]
    params.write_text(yaml.safe_dump(cfg))
    proc = _run_cli(tmp_path, params, capsys)
    assert proc.returncode == 2 and "is empty; expected a header line" in proc.stderr


def test_prepare_keeps_files_whose_names_clean_alike_and_rejects_outside_rows(tmp_path):
    root = tmp_path / "raw"
    names = ["日本語.wav", "中文.wav", "x.wav", "x.flac", "a b.wav", "a_b.wav"]
    _folder(root, [f"{n},s{k},bonafide" for k, n in enumerate(names)] + ["../outside.wav,s1,spoof"])
    write_wave(tmp_path / "outside.wav", make_wave(1.0))
    params = _params(tmp_path, root)
    cfg = yaml.safe_load(params.read_text())
    cfg["prepare"]["corpora"] = [{"name": "folder", "root": str(root), "corpus": "mine"}]
    params.write_text(yaml.safe_dump(cfg))
    assert _run(tmp_path, params) == 0
    clips = read_clips(tmp_path / "out/clips.parquet")
    assert len(clips) == 6 and {"mine_日本語", "mine_中文", "mine_a_b"} <= set(clips["clip_id"])
    assert all(Path(p).parent == tmp_path / "out/clips/mine" for p in clips["path"])
    rejects = read_rejects(tmp_path / "out/rejects.parquet")
    assert len(rejects) == 1 and "outside the corpus root" in rejects["reason"].iloc[0]


def test_prepare_tells_a_cross_corpus_collision_from_a_duplicate(tmp_path):
    # corpus `a` file `b_c` and corpus `a_b` file `c` both clean to `a_b_c`
    _folder(tmp_path / "one", ["b_c.wav,s1,bonafide", "d.wav,s2,bonafide"])
    _folder(tmp_path / "two", ["c.wav,s3,bonafide", "e.wav,s4,bonafide"])
    sources, rejects = prepare.load_sources((
        {"name": "folder", "root": str(tmp_path / "one"), "corpus": "a"},
        {"name": "folder", "root": str(tmp_path / "two"), "corpus": "a_b"},
    ))
    assert len(sources) == 3
    assert len(rejects) == 1 and rejects[0]["reason"].startswith("clip_id collision across corpora")
    with pytest.raises(ValueError, match="both make corpus 'a'"):
        prepare.load_sources(({"name": "folder", "root": str(tmp_path / "one"), "corpus": "a"},
                              {"name": "folder", "root": str(tmp_path / "two"), "corpus": "a"}))


def test_prepare_reads_a_utf8_bom_metadata_csv(tmp_path):
    _corpus(tmp_path / "raw", n_speakers=3, bad=False)
    meta = tmp_path / "raw/metadata.csv"
    meta.write_text(meta.read_text(), encoding="utf-8-sig")
    assert _run(tmp_path, _params(tmp_path, tmp_path / "raw")) == 0
    assert len(read_clips(tmp_path / "out/clips.parquet")) == 10


def test_prepare_rejects_a_clip_id_with_a_path_from_a_careless_adapter(tmp_path, monkeypatch):
    from pipeline.corpora import AdapterResult

    write_wave(tmp_path / "a.wav", make_wave(1.0))
    rows = [{"clip_id": cid, "source_path": str(tmp_path / "a.wav"), "corpus": "x", "speaker": "s",
             "label": "bonafide", "system": "-", "paradigm": "bonafide", "split": None}
            for cid in ("x_ok", "x_../../evil", "..")]
    monkeypatch.setitem(prepare.ADAPTERS, "careless", lambda root: AdapterResult(pd.DataFrame(rows)))
    sources, rejects = prepare.load_sources(({"name": "careless", "root": str(tmp_path)},))
    assert sources["clip_id"].tolist() == ["x_ok"]
    assert [r["clip_id"] for r in rejects] == ["x_../../evil", ".."]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_run_killed_midway_or_failing_leaves_the_previous_clips_and_table_together(tmp_path, monkeypatch):
    _corpus(tmp_path / "raw")
    params = _params(tmp_path, tmp_path / "raw")
    assert _run(tmp_path, params) == 0
    before_audio, before_table = _snapshot(tmp_path / "out/clips"), (tmp_path / "out/clips.parquet").read_bytes()
    # the corpus changes, then the next run dies after a few files (a kill, a full disk, ...)
    _corpus(tmp_path / "raw2", per_speaker=4, bad=False)
    params2 = _params(tmp_path, tmp_path / "raw2")
    real, calls = prepare.write_audio, {"n": 0}

    def dies_after_five(*a, **k):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(prepare, "write_audio", dies_after_five)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, params2)
    monkeypatch.setattr(prepare, "write_audio", real)
    assert calls["n"] == 6
    assert _snapshot(tmp_path / "out/clips") == before_audio
    assert (tmp_path / "out/clips.parquet").read_bytes() == before_table
    # a run that fails on its rejects replaces nothing either
    assert _run(tmp_path, _params(tmp_path, tmp_path / "raw", max_reject_fraction=0.01)) == 1
    assert _snapshot(tmp_path / "out/clips") == before_audio
    # the table and the audio on disk agree: every row's file exists with the recorded sha256
    table = read_clips(tmp_path / "out/clips.parquet")
    assert all(Path(p).exists() for p in table["path"])
    # and a clean run after the kill gives what a first run gives
    params2 = _params(tmp_path, tmp_path / "raw2")  # (_params rewrites the one params file)
    assert _run(tmp_path, params2) == 0
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert _run(fresh, params2) == 0
    a, b = read_clips(tmp_path / "out/clips.parquet"), read_clips(fresh / "out/clips.parquet")
    assert list(a["sha256"]) == list(b["sha256"]) and list(a["clip_id"]) == list(b["clip_id"])
    assert not list((tmp_path / "out").glob(".clips.build-*"))


def test_prepare_matches_a_tts_fake_to_the_parent_it_respeaks(tmp_path):
    """The demo's TTS rows name a parent: with match_fakes they get its band, level and silences (not its length)."""
    root = tmp_path / "raw"
    rng = np.random.default_rng(0)
    head = "file,speaker,label,system,paradigm,language,text,source,split,parent\n"
    lines = []
    for s in range(4):
        room = 0.002 * rng.standard_normal(8000 * 2).astype(np.float32)
        rec = np.concatenate([np.zeros(2400, np.float32), make_wave(1.0, 8000, seed=s), np.zeros(4000, np.float32)])
        write_wave(root / f"rec{s}.wav", rec + room[: len(rec)], 8000)  # telephone band, room noise
        lines.append(f"rec{s}.wav,spk{s},bonafide,-,bonafide,en,hello,test,,")
        word = 0.3 * make_wave(0.6, 22050, seed=10 + s, noise=0.0)
        tts = np.concatenate([np.zeros(100, np.float32), word, np.zeros(9000, np.float32), word])
        write_wave(root / f"tts{s}.wav", tts, 22050)  # full band, digital silence, its own level
        lines.append(f"tts{s}.wav,spk{s},spoof,espeak_m3,tts,en,hello,test,,rec{s}.wav")
    lines.append("tts_orphan.wav,spk0,spoof,espeak_m3,tts,en,hello,test,,missing.wav")
    write_wave(root / "tts_orphan.wav", make_wave(1.0, 16000), 16000)
    (root / "metadata.csv").write_text(head + "\n".join(lines) + "\n")
    assert _run(tmp_path, _params(tmp_path, root, match_fakes=["demo"])) == 0
    clips = read_clips(tmp_path / "out/clips.parquet").set_index("clip_id")
    bona, tts = clips[clips["label"] == "bonafide"], clips[clips["label"] == "spoof"]
    assert len(tts) == 4 and (tts["matched"] == "band,level,silence,gate:noise").all()
    assert bona["matched"].isna().all()
    for cid, row in tts.iterrows():
        parent = clips.loc[row["parent_id"]]
        assert abs(row["rms_dbfs"] - parent["rms_dbfs"]) < 0.2, cid
        assert row["bandwidth_hz"] < parent["bandwidth_hz"] + 300, cid
        assert abs(row["leading_silence_s"] - parent["leading_silence_s"]) < 0.05, cid
        assert abs(row["noise_floor_dbfs"] - parent["noise_floor_dbfs"]) < 4.0, cid
    rejects = read_rejects(tmp_path / "out/rejects.parquet")
    assert rejects["reason"].str.contains("cannot be matched").any()
    # without match_fakes the TTS keeps its own digital silence: a noise-floor shortcut the matching removes
    assert _run(tmp_path, _params(tmp_path, root)) == 0
    plain = read_clips(tmp_path / "out/clips.parquet")
    spoof = (plain["label"] == "spoof") & plain["parent_id"].isin(plain["clip_id"])
    assert plain.loc[spoof, "matched"].isna().all()
    assert plain.loc[spoof, "noise_floor_dbfs"].max() < plain.loc[~spoof, "noise_floor_dbfs"].min() - 20


def test_a_speaker_an_eval_only_attack_keeps_goes_to_test(tmp_path):
    # a voice conversion of spk3's clip keeps spk3's id and is evaluation-only: spk3 must be a test speaker
    root = tmp_path / "raw"
    lines = []
    for s in range(6):
        for c in range(4 if s != 3 else 2):
            write_wave(root / f"audio/s{s}/{c}.wav", make_wave(1.0, 16000, f0=100 + 20 * s, seed=c))
            lines.append(f"audio/s{s}/{c}.wav,spk{s},bonafide,-,bonafide,en,hi,test,,")
    write_wave(root / "audio/vc/0.wav", make_wave(1.0, 16000, seed=5))
    lines.append("audio/vc/0.wav,spk3,spoof,world_vc_hifigan,vc,en,hi,test,eval:unseen_tts,audio/s3/0.wav")
    (root / "metadata.csv").write_text(HEADER.strip() + ",split,parent\n" + "\n".join(lines) + "\n")
    for seed in (1, 2, 3):
        sources = prepare.load_sources(({"name": "demo", "root": str(root)},))[0]
        out = prepare.assign_splits(sources, 0.2, 0.2, np.random.default_rng(seed))
        bona = out[out["label"] == "bonafide"]
        assert set(bona.loc[bona["speaker"] == "spk3", "split"]) == {"test"}
        assert (bona.groupby("speaker")["split"].nunique() == 1).all()
        assert set(bona["split"]) == {"train", "dev", "test"}  # the others still fill every split
        assert out.loc[out["system"] == "world_vc_hifigan", "split"].tolist() == ["eval:unseen_tts"]
