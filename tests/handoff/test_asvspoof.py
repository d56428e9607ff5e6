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
