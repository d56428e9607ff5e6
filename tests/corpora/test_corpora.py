"""Each corpus adapter on a tiny fixture in its real layout, written by the test."""

import numpy as np

from pipeline.corpora import load_asvspoof2019_la, load_asvspoof2021, load_demo, load_folder, load_itw
from tests.conftest import make_wave, write_wave


def _flac(path, seed=0):
    return write_wave(path, make_wave(0.5, 16000, seed=seed))


def test_load_demo_reads_metadata_and_marks_tts_as_eval(tmp_path):
    _flac(tmp_path / "audio/en/a.wav")
    _flac(tmp_path / "audio/tts/b.wav")
    (tmp_path / "metadata.csv").write_text(
        "file,speaker,label,system,paradigm,language,text,source\n"
        "audio/en/a.wav,asterisk_en,bonafide,-,bonafide,en,hello,asterisk\n"
        "audio/tts/b.wav,piper_joe,spoof,piper_joe,tts,en,hello,piper\n"
        "audio/tts/c.wav,piper_joe,fake,piper_joe,tts,en,hello,piper\n")
    res = load_demo(tmp_path)
    assert list(res.sources["split"].fillna("none")) == ["none", "eval:tts"]
    assert res.sources["clip_id"].tolist() == ["demo_audio_en_a", "demo_audio_tts_b"]
    assert "unknown label 'fake'" in res.rejects[0]["reason"]


def _la(tmp_path, lines, part="train"):
    name = "train.trn" if part == "train" else "eval.trl"
    proto = tmp_path / "ASVspoof2019_LA_cm_protocols" / f"ASVspoof2019.LA.cm.{name}.txt"
    proto.parent.mkdir(parents=True, exist_ok=True)
    proto.write_text("\n".join(lines) + "\n")
    return proto


def test_load_asvspoof2019_la_parses_protocol_and_rejects_bad_lines(tmp_path):
    for f in ("LA_T_1", "LA_T_2", "LA_T_3"):
        _flac(tmp_path / "ASVspoof2019_LA_train/flac" / f"{f}.flac")
    _la(tmp_path, ["LA_0079 LA_T_1 - - bonafide", "LA_0079 LA_T_2 - A01 spoof", "LA_0080 LA_T_3 - A02",
                   "LA_0080 LA_T_4 - A02 spoof", "LA_0080 LA_T_1 - - bonafide", "LA_0081 LA_T_3 - A03 maybe"])
    res = load_asvspoof2019_la(tmp_path, partitions=("train",))
    assert res.sources[["clip_id", "label", "system", "split"]].values.tolist() == [
        ["asvspoof2019_la_LA_T_1", "bonafide", "-", "train"], ["asvspoof2019_la_LA_T_2", "spoof", "A01", "train"]]
    reasons = " | ".join(r["reason"] for r in res.rejects)
    assert "malformed protocol line" in reasons and "missing file" in reasons
    assert "duplicate clip_id" in reasons and "unknown label 'maybe'" in reasons


def test_load_asvspoof2021_filters_by_codec_and_trim(tmp_path):
    keys = tmp_path / "keys/CM/trial_metadata.txt"
    keys.parent.mkdir(parents=True)
    keys.write_text("LA_0009 LA_E_1 alaw ita_tx A07 spoof notrim eval\n"
                    "LA_0009 LA_E_2 none - bonafide bonafide trim progress\n"
                    "LA_0010 LA_E_3 g722 loc_tx A08 spoof notrim eval\n"
                    "broken line\n")
    for f in ("LA_E_1", "LA_E_2", "LA_E_3"):
        _flac(tmp_path / "flac" / f"{f}.flac")
    res = load_asvspoof2021(tmp_path, track="LA", codecs=("alaw", "none"))
    assert sorted(res.sources["clip_id"]) == ["asvspoof2021_la_LA_E_1", "asvspoof2021_la_LA_E_2"]
    assert set(res.sources["split"]) == {"eval:asvspoof2021_la"}
    assert len(res.rejects) == 1 and "malformed key line 4" in res.rejects[0]["reason"]
    res = load_asvspoof2021(tmp_path, track="LA", trim="notrim")
    assert sorted(res.sources["system"]) == ["A07", "A08"]


def test_load_itw_maps_bona_fide_label(tmp_path):
    _flac(tmp_path / "0.wav")
    _flac(tmp_path / "1.wav", seed=1)
    (tmp_path / "meta.csv").write_text("file,speaker,label\n0.wav,Alec Guinness,spoof\n1.wav,Alec Guinness,bona-fide\n")
    res = load_itw(tmp_path)
    assert res.sources["label"].tolist() == ["spoof", "bonafide"]
    assert res.sources["split"].unique().tolist() == ["eval:itw"]


def test_load_folder_with_optional_columns_and_bad_rows(tmp_path):
    for name in ("a.wav", "b.flac"):
        _flac(tmp_path / name)
    (tmp_path / "labels.csv").write_text(
        "file,speaker,label,system,split\n"
        "a.wav,s1,bonafide,,\nb.flac,s2,spoof,mytts,test\n,s3,spoof,,\nc.wav,s3,spoof,x,holdout\n")
    res = load_folder(tmp_path, corpus="mine")
    assert res.sources["system"].tolist() == ["-", "mytts"]
    assert res.sources["split"].isna().tolist() == [True, False]
    assert sorted(r["reason"].split(" (")[0] for r in res.rejects) == ["empty file name", "unknown split 'holdout'"]
    assert np.all(res.sources["corpus"] == "mine")
