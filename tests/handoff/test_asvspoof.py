"""Export asvspoof: the project's own ASVspoof 2019 LA adapter reads it back to the same clips, labels, systems."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pandas as pd

from pipeline import export
from pipeline.corpora import load_asvspoof2019_la
from pipeline.handoff.files import protocol_token
from pipeline.schema import read_clips


def test_the_asvspoof2019_adapter_reads_the_export_back_to_the_same_clips(handoff_tables, tmp_path):
    out = tmp_path / "la"
    assert export.main(["--manifest", str(handoff_tables["train"]), "--dev", str(handoff_tables["dev"]), "--eval",
                        str(handoff_tables["eval"]), "--format", "asvspoof", "--out", str(out)]) == 0
    back = load_asvspoof2019_la(out)
    assert back.rejects == []
    back = back.sources.assign(file_id=[Path(p).stem for p in back.sources["source_path"]])
    mapping = pd.read_csv(out / "clip_map.csv", keep_default_na=False)
    merged = mapping.merge(back, on="file_id", suffixes=("", "_back"), validate="one_to_one")
    assert len(merged) == len(mapping) == len(back) == 12 + 6 + 6
    assert list(merged["label"]) == list(merged["label_back"])
    assert list(merged["system"].map(protocol_token)) == list(merged["system_back"])
    assert list(merged["speaker"].map(protocol_token)) == list(merged["speaker_back"])
    split_back = {"train": "train", "dev": "dev", "eval": "eval:asvspoof2019_la"}
    assert list(merged["partition"].map(split_back)) == list(merged["split_back"])
    originals = pd.concat([read_clips(p) for p in handoff_tables.values()]).drop_duplicates("clip_id")
    originals = originals.set_index("clip_id")
    for row in merged.itertuples():  # the same audio, byte for byte
        assert filecmp.cmp(originals.at[row.clip_id, "path"], row.source_path, shallow=False)


def test_protocol_lines_have_five_single_space_fields_as_the_authors_loader_splits_them(handoff_tables, tmp_path):
    out = tmp_path / "la"
    assert export.main(["--manifest", str(handoff_tables["train"]), "--format", "asvspoof", "--out", str(out)]) == 0
    lines = (out / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.train.trn.txt").read_text().splitlines()
    assert len(lines) == 12
    for line in lines:  # clovaai/aasist data_utils.genSpoof_list: `_, key, _, _, label = line.strip().split(" ")`
        speaker, key, dash, system, label = line.strip().split(" ")
        assert dash == "-" and label in ("bonafide", "spoof") and (system == "-") == (label == "bonafide")
        assert (out / "ASVspoof2019_LA_train" / "flac" / f"{key}.flac").is_file()
    assert not (out / "ASVspoof2019_LA_dev").exists()  # no dev table, no dev partition


def test_hostile_clip_ids_speakers_and_systems_stay_inside_and_round_trip_through_the_map(tmp_path):
    from pipeline.schema import validate_clips, write_clips
    from tests.conftest import tiny_clip_table

    clips = tiny_clip_table(tmp_path / "c", n_speakers=1, clips_per_speaker=3)
    hostile = ["../../etc/passwd", "a b\tc\nd", "=cmd()|x", "日本語 clip", "x;touch pwned", "-rf"]
    clips["clip_id"] = hostile
    clips["speaker"] = "spk with space\tand tab"
    clips.loc[clips["label"] == "spoof", "system"] = "sys/../../x y"
    write_clips(validate_clips(clips), tmp_path / "t.parquet")
    out = tmp_path / "la"
    assert export.main(["--manifest", str(tmp_path / "t.parquet"), "--format", "asvspoof", "--out", str(out)]) == 0
    files = [p for p in out.rglob("*") if p.is_file()]
    assert all(out in p.resolve().parents for p in files) and not (tmp_path / "pwned").exists()
    lines = (out / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.train.trn.txt").read_text().splitlines()
    assert len(lines) == 6 and all(len(line.split(" ")) == 5 and line.isascii() for line in lines)
    mapping = pd.read_csv(out / "clip_map.csv", keep_default_na=False)
    assert sorted(mapping["clip_id"]) == sorted(hostile)
    back = load_asvspoof2019_la(out, partitions=("train",))  # only a train table was given
    assert back.rejects == [] and len(back.sources) == 6
