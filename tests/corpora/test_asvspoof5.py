"""ASVspoof 5 on a fixture in its exact format: header-less, space-separated 10-column protocols."""

import pytest

from pipeline.corpora import ADAPTERS, load_asvspoof5
from tests.conftest import make_wave, write_wave

PROTOCOLS = {
    "ASVspoof5.train.tsv": ("flac_T", ["T_4850 T_0000000000 F - - - AC3 A05 spoof -",
                                       "T_1138 T_0000000001 M - - - - bonafide bonafide -"]),
    "ASVspoof5.dev.track_1.tsv": ("flac_D", ["D_4461 D_0000000169 F - - - AC1 A14 spoof -",
                                             "D_0461 D_0000000190 M - - - - bonafide bonafide -"]),
    # eval: a coded trial names its uncoded original in CODEC_SEED, as the released protocol does
    "ASVspoof5.eval.track_1.tsv": ("flac_E_eval", ["E_1607 E_0000000001 M C05 2 E_0009486171 AC1 A26 spoof -",
                                                   "E_0002 E_0000000002 M - 0 - - bonafide bonafide -",
                                                   "E_0003 E_0000000003 M C01 1 7 - bonafide bonafide -"]),
}


def _corpus(root, extra_train=(), proto_dir="ASVspoof5_protocols"):
    for name, (audio, lines) in PROTOCOLS.items():
        proto = root / proto_dir / name
        proto.parent.mkdir(parents=True, exist_ok=True)
        lines = list(lines) + (list(extra_train) if name == "ASVspoof5.train.tsv" else [])
        proto.write_text("\n".join(lines) + "\n")
        for i, line in enumerate(lines):
            parts = line.split()
            if len(parts) == 10 and parts[1] != "FLAC_FILE_NAME" and "missing" not in line:
                write_wave(root / audio / f"{parts[1]}.flac", make_wave(0.3, seed=i))
    return root


def test_asvspoof5_keeps_every_line_including_the_first_trial(tmp_path):
    res = load_asvspoof5(_corpus(tmp_path))
    assert res.rejects == []
    assert len(res.sources) == sum(len(lines) for _, lines in PROTOCOLS.values())
    first = res.sources.iloc[0]
    assert (first["clip_id"], first["speaker"], first["label"], first["system"], first["split"]) == (
        "asvspoof5_T_0000000000", "T_4850", "spoof", "A05", "train")
    by_split = res.sources.groupby("split").size().to_dict()
    assert by_split == {"train": 2, "dev": 2, "eval:asvspoof5": 3}
    bona = res.sources[res.sources["label"] == "bonafide"]
    assert set(bona["system"]) == {"-"} and set(bona["paradigm"]) == {"bonafide"}
    assert ADAPTERS["asvspoof5"] is load_asvspoof5


def test_asvspoof5_protocols_at_the_root_work_too(tmp_path):
    res = load_asvspoof5(_corpus(tmp_path, proto_dir="."), partitions=("dev",))
    assert res.sources["clip_id"].tolist() == ["asvspoof5_D_0000000169", "asvspoof5_D_0000000190"]


def test_asvspoof5_filters_attack_tag_and_codec(tmp_path):
    root = _corpus(tmp_path)
    res = load_asvspoof5(root, attacks=["A14"])
    assert sorted(res.sources["system"]) == ["-", "-", "-", "-", "A14"]  # bona fide rows stay
    res = load_asvspoof5(root, attack_tags="AC3")
    assert res.sources[res.sources["label"] == "spoof"]["system"].tolist() == ["A05"]
    res = load_asvspoof5(root, partitions=("eval",), codecs=["C5", "-"])
    assert res.sources["clip_id"].tolist() == ["asvspoof5_E_0000000001", "asvspoof5_E_0000000002"]
    with pytest.raises(FileNotFoundError, match="codec.config.csv"):
        load_asvspoof5(root, partitions=("eval",), codecs=["mp3_wb"])
    (root / "ASVspoof5_protocols/ASVspoof5.codec.config.csv").write_bytes(  # the released format: CRLF, C1 ids
        b"ID,CODEC,CODEC_Q,Bitrate(kbps)\r\nC1,opus_wb,1,6\r\nC1,opus_wb,2,12\r\nC5,mp3_wb,1,45\r\n")
    res = load_asvspoof5(root, partitions=("eval",), codecs=["mp3_wb", "opus_wb"])
    assert res.sources["clip_id"].tolist() == ["asvspoof5_E_0000000001", "asvspoof5_E_0000000003"]
    with pytest.raises(ValueError, match="unknown codec 'flac_hd'"):
        load_asvspoof5(root, partitions=("eval",), codecs=["flac_hd"])


def test_asvspoof5_bad_lines_and_missing_files_become_rejects(tmp_path):
    extra = ["SPEAKER_ID FLAC_FILE_NAME SPEAKER_GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY TMP",
             "T_1 T_0000000009 F - - - AC1 A01 spoof",           # 9 fields
             "T_2 T_0000000010 F - - - AC1 A01 maybe -",
             "T_3 T_missing F - - - AC1 A01 spoof -",
             "T_4 ../../etc/T_0000000011 F - - - AC1 A01 spoof -"]
    res = load_asvspoof5(_corpus(tmp_path, extra_train=extra), partitions=("train",))
    assert res.sources["clip_id"].tolist() == ["asvspoof5_T_0000000000", "asvspoof5_T_0000000001"]
    reasons = [r["reason"] for r in res.rejects]
    assert any("ASVspoof5.train.tsv:3" in r and "header" in r for r in reasons)
    assert any("ASVspoof5.train.tsv:4" in r and "10 space-separated fields" in r for r in reasons)
    assert any("unknown label 'maybe'" in r for r in reasons) and "missing file" in reasons
    assert any("not a bare ASVspoof 5 file id" in r for r in reasons)
    assert len(res.rejects) == 5


def test_asvspoof5_wrong_root_or_missing_protocol_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="root"):
        load_asvspoof5(tmp_path / "nowhere")
    root = _corpus(tmp_path)
    (root / "ASVspoof5_protocols/ASVspoof5.eval.track_1.tsv").unlink()
    with pytest.raises(FileNotFoundError, match="ASVspoof5.eval.track_1.tsv"):
        load_asvspoof5(root)
    with pytest.raises(ValueError, match="unknown partition"):
        load_asvspoof5(root, partitions=("progress",))
