"""Codecfake (Xie et al.: label/*.txt) and CodecFake (Wu et al.: <codec>+<vctk_utt>.wav) fixtures."""

import pytest

from pipeline.corpora import load_codecfake_wu, load_codecfake_xie
from tests.conftest import make_wave, write_wave


def _xie(tmp_path):
    root = tmp_path / "Codecfake"
    parts = {"train": ["SSB13650058.wav real 0", "F01_SSB13650058.wav fake 1", "p225_001.wav real 0",
                       "F02_p225_001.wav fake 2"],
             "dev": ["p226_002.wav real 0", "F03_p226_002.wav fake 3"],
             "C1": ["p227_003.wav real 0", "F01_p227_003.wav fake 1"]}
    for part, lines in parts.items():
        folder = root / ("test/C1" if part == "C1" else part)
        for i, line in enumerate(lines):
            write_wave(folder / line.split()[0], make_wave(0.3, seed=i))
        (root / "label").mkdir(parents=True, exist_ok=True)
        (root / "label" / f"{part}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_codecfake_xie_reads_label_files_with_parents_speakers_and_splits(tmp_path):
    res = load_codecfake_xie(_xie(tmp_path))
    assert res.rejects == []
    src = res.sources.set_index("clip_id")
    fake = src.loc["codecfake_xie_train_F01_SSB13650058"]
    assert (fake["label"], fake["system"], fake["parent_id"], fake["speaker"], fake["split"]) == (
        "spoof", "F01", "codecfake_xie_train_SSB13650058", "SSB1365", "train")
    assert src.loc["codecfake_xie_train_p225_001", "label"] == "bonafide"
    assert src.loc["codecfake_xie_train_F02_p225_001", "speaker"] == "p225"
    assert src.loc["codecfake_xie_dev_F03_p226_002", "split"] == "dev"
    c1 = src.loc["codecfake_xie_C1_F01_p227_003"]
    assert (c1["split"], c1["system"], c1["parent_id"]) == ("eval:codecfake_xie_c1", "C1", "codecfake_xie_C1_p227_003")
    assert load_codecfake_xie(tmp_path / "Codecfake", official_split=False).sources.query(
        "split == 'train' or split == 'dev'").empty


def test_codecfake_xie_bad_lines_and_missing_label_files(tmp_path):
    root = _xie(tmp_path)
    with (root / "label/dev.txt").open("a") as fh:
        fh.write("p226_009.wav\np226_010.wav spoofed 1\np226_011.wav fake 1\n../../p226_012.wav real 0\n")
    res = load_codecfake_xie(root, partitions=["dev"])
    reasons = [r["reason"] for r in res.rejects]
    assert any("malformed label line dev.txt:3" in r for r in reasons)
    assert any("unknown label 'spoofed'" in r for r in reasons) and "missing file" in reasons
    assert any("dev.txt:6" in r and "leaves" in r for r in reasons)
    assert len(res.sources) == 2
    with pytest.raises(FileNotFoundError, match="label file for C7"):
        load_codecfake_xie(root, partitions=["C7"])
    with pytest.raises(FileNotFoundError, match="label folder"):
        load_codecfake_xie(root / "train")


def _wu(tmp_path):
    root = tmp_path / "CodecFake"
    names = ["genuine+p225_001.wav", "encodec_24k+p225_001.wav", "academicodec_hifi_16k_320d+p225_001.wav",
             "genuine+p226_002.wav", "encodec_24k+p226_002.wav", "genuine+p227_003.wav", "encodec_24k+p227_003.wav",
             "speechtokenizer/p228_004.wav", "genuine/p228_004.wav"]
    for i, name in enumerate(names):
        write_wave(root / name, make_wave(0.3, seed=i))
    return root


def test_codecfake_wu_codec_is_system_vctk_utterance_is_parent(tmp_path):
    res = load_codecfake_wu(_wu(tmp_path))
    assert res.rejects == []
    src = res.sources.set_index("clip_id")
    fake = src.loc["codecfake_wu_p225_001__encodec_24k"]
    assert (fake["system"], fake["parent_id"], fake["speaker"], fake["split"]) == (
        "encodec_24k", "codecfake_wu_p225_001", "p225", "train")
    assert src.loc["codecfake_wu_p225_001", "label"] == "bonafide"
    assert src.loc["codecfake_wu_p226_002__encodec_24k", "split"] == "dev"
    assert src.loc["codecfake_wu_p227_003", "split"] == "eval:codecfake_wu"
    assert src.loc["codecfake_wu_p228_004__speechtokenizer", "parent_id"] == "codecfake_wu_p228_004"
    only = load_codecfake_wu(tmp_path / "CodecFake", codecs=["speechtokenizer"]).sources
    assert sorted(only["system"]) == ["-", "-", "-", "-", "speechtokenizer"]  # genuine always kept


def test_codecfake_wu_unparseable_names_are_rejects_and_empty_root_an_error(tmp_path):
    root = _wu(tmp_path)
    write_wave(root / "stray.wav", make_wave(0.3))
    res = load_codecfake_wu(root)
    assert len(res.rejects) == 1 and "cannot tell codec" in res.rejects[0]["reason"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no audio"):
        load_codecfake_wu(tmp_path / "empty")
