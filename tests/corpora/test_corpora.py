"""Each corpus adapter on a tiny fixture in its real layout, written by the test."""

import os

import numpy as np
import pytest

from pipeline.corpora import load_asvspoof2019_la, load_asvspoof2021, load_demo, load_folder, load_itw
from pipeline.corpora.common import CorpusError, make_clip_id
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


def test_load_demo_v2_split_column_and_parent(tmp_path):
    for name in ("a", "b", "c", "d", "e"):
        _flac(tmp_path / f"audio/x/{name}.wav")
    (tmp_path / "metadata.csv").write_text(
        "file,speaker,label,system,paradigm,language,text,source,split,parent\n"
        "audio/x/a.wav,spk1,bonafide,-,bonafide,en,hello,asterisk,,\n"
        "audio/x/b.wav,spk1,spoof,espeak_m3,tts,en,hello,espeakng-loader,,audio/x/a.wav\n"
        "audio/x/c.wav,spk1,spoof,piper_joe,tts,en,hello,piper-tts,eval:unseen_tts,audio/x/a.wav\n"
        "audio/x/d.wav,spk1,spoof,espeak_m3,tts,en,hello,espeakng-loader,train,audio/x/a.wav\n"
        "audio/x/e.wav,spk1,spoof,espeak_m3,tts,en,hello,espeakng-loader,eval:,audio/x/a.wav\n")
    res = load_demo(tmp_path)
    src = res.sources.set_index("clip_id")
    assert src["split"].fillna("none").to_dict() == {"demo_audio_x_a": "none", "demo_audio_x_b": "none",
                                                     "demo_audio_x_c": "eval:unseen_tts"}
    assert src["parent_id"].fillna("none").to_dict() == {"demo_audio_x_a": "none", "demo_audio_x_b": "demo_audio_x_a",
                                                         "demo_audio_x_c": "demo_audio_x_a"}
    # train/dev/test are prepare's to decide (speaker-disjoint), and `eval:` names no set
    assert sorted(r["clip_id"] for r in res.rejects) == ["demo_audio_x_d", "demo_audio_x_e"]
    assert all("not empty or eval:<set>" in r["reason"] for r in res.rejects)


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
    assert "duplicate row" in reasons and "unknown label 'maybe'" in reasons


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


def _labels(root, rows, header="file,speaker,label", encoding="utf-8"):
    (root / "labels.csv").write_text(header + "\n" + "\n".join(rows) + "\n", encoding=encoding)


def test_clip_ids_keep_unicode_and_hash_only_what_cleaning_changed():
    # the demo's names (word characters, '-', '.', '/') keep their old ids
    assert make_clip_id("demo", "audio/asterisk-core-sounds-en-wav/vm-intro") == \
        "demo_audio_asterisk-core-sounds-en-wav_vm-intro"
    assert make_clip_id("c", "日本語") == "c_日本語" and make_clip_id("c", "中文") == "c_中文"
    spaced, plain = make_clip_id("c", "a b"), make_clip_id("c", "a_b")
    assert plain == "c_a_b" and spaced.startswith("c_a_b_") and spaced != plain
    assert make_clip_id("c", "!!") != make_clip_id("c", "??")


def test_folder_keeps_every_file_whose_names_clean_alike(tmp_path):
    names = ["日本語.wav", "中文.wav", "x.wav", "x.flac", "a b.wav", "a_b.wav"]
    for k, name in enumerate(names):
        _flac(tmp_path / name, seed=k)
    _labels(tmp_path, [f"{n},s{k},bonafide" for k, n in enumerate(names)] + ["x.wav,s9,bonafide"])
    res = load_folder(tmp_path, corpus="mine")
    assert len(res.sources) == 6 and res.sources["clip_id"].is_unique
    assert {"mine_日本語", "mine_中文", "mine_a_b"} <= set(res.sources["clip_id"])
    x_ids = res.sources.loc[res.sources["source_path"].str.contains("/x\\."), "clip_id"]
    assert len(x_ids) == 2 and all(i.startswith("mine_x_") for i in x_ids)
    # the file listed twice is a true duplicate, reported as such (not as a collision)
    assert [r["reason"] for r in res.rejects] == ["duplicate row: the same file is listed again"]
    again = load_folder(tmp_path, corpus="mine")
    assert again.sources["clip_id"].tolist() == res.sources["clip_id"].tolist()


def test_folder_rejects_rows_outside_the_root(tmp_path):
    root = tmp_path / "corpus"
    _flac(root / "in.wav")
    _flac(tmp_path / "outside.wav", seed=1)
    os.symlink(tmp_path / "outside.wav", root / "link.wav")
    os.symlink(root / "in.wav", root / "inner_link.wav")
    _labels(root, ["in.wav,s1,bonafide", "../outside.wav,s2,spoof", f"{tmp_path / 'outside.wav'},s2,spoof",
                   "link.wav,s3,spoof", "inner_link.wav,s4,spoof"])
    res = load_folder(root, corpus="mine")
    assert res.sources["source_path"].tolist() == [str(root / "in.wav")]
    outside = [r for r in res.rejects if "outside the corpus root" in r["reason"]]
    assert len(outside) == 3
    assert any("duplicate row" in r["reason"] for r in res.rejects)  # inner_link.wav is in.wav again


def test_protocol_ids_with_paths_are_rejected(tmp_path):
    _flac(tmp_path / "ASVspoof2019_LA_train/flac/LA_T_1.flac")
    _flac(tmp_path / "outside.flac")
    _la(tmp_path, ["LA_0079 LA_T_1 - - bonafide", "LA_0079 ../../outside - A01 spoof"])
    res = load_asvspoof2019_la(tmp_path, partitions=("train",))
    assert len(res.sources) == 1 and "not a plain file name" in res.rejects[0]["reason"]
    keys = tmp_path / "keys/CM/trial_metadata.txt"
    keys.parent.mkdir(parents=True)
    keys.write_text("LA_0009 ../outside alaw ita_tx A07 spoof notrim eval\n")
    res = load_asvspoof2021(tmp_path, track="LA")
    assert res.sources.empty and "not a plain file name" in res.rejects[0]["reason"]


@pytest.mark.parametrize("corpus", ["../../x", "a/b", "", ".hidden", "x" * 65, "sp ace"])
def test_unsafe_corpus_names_are_a_clear_error(tmp_path, corpus):
    _flac(tmp_path / "a.wav")
    _labels(tmp_path, ["a.wav,s1,bonafide"])
    with pytest.raises(CorpusError, match="corpus name"):
        load_folder(tmp_path, corpus=corpus)


def test_a_utf8_bom_csv_is_read(tmp_path):
    _flac(tmp_path / "a.wav")
    _labels(tmp_path, ["a.wav,s1,bonafide"], encoding="utf-8-sig")
    assert load_folder(tmp_path).sources["clip_id"].tolist() == ["folder_a"]
    (tmp_path / "meta.csv").write_text("file,speaker,label\na.wav,x,bona-fide\n", encoding="utf-8-sig")
    assert len(load_itw(tmp_path).sources) == 1


def test_corpus_layout_errors_name_what_was_expected(tmp_path):
    _flac(tmp_path / "a.wav")
    _labels(tmp_path, ["a.wav,bonafide"], header="file,label")
    with pytest.raises(CorpusError, match=r"lacks columns \['speaker'\]"):
        load_folder(tmp_path)
    (tmp_path / "meta.csv").write_text("")
    with pytest.raises(CorpusError, match="is empty; expected a header"):
        load_itw(tmp_path)
    with pytest.raises(CorpusError, match="root must be the LA folder"):
        load_asvspoof2019_la(tmp_path)
    with pytest.raises(CorpusError, match=r"unknown partitions \['test'\]"):
        load_asvspoof2019_la(tmp_path, partitions=("train", "test"))
    with pytest.raises(CorpusError, match="keys/CM/trial_metadata.txt"):
        load_asvspoof2021(tmp_path, track="DF")
    with pytest.raises(CorpusError, match="track must be one of"):
        load_asvspoof2021(tmp_path, track="PA")
    with pytest.raises(CorpusError, match="not found"):
        load_folder(tmp_path / "nowhere")


def test_asvspoof2021_track_is_case_insensitive(tmp_path):
    keys = tmp_path / "keys/CM/trial_metadata.txt"
    keys.parent.mkdir(parents=True)
    keys.write_text("LA_0009 LA_E_1 alaw ita_tx A07 spoof notrim eval\n")
    _flac(tmp_path / "flac/LA_E_1.flac")
    res = load_asvspoof2021(tmp_path, track="la")
    assert res.sources["corpus"].tolist() == ["asvspoof2021_la"]
