"""File ids (stable, unique, never the parent's name), partitions, audio placement and the output guard."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf

from pipeline.handoff.files import ExportError, check_out, file_id, partition_table, place_audio
from tests.conftest import colliding_tables, make_wave, write_wave


def test_file_ids_are_unique_on_a_manifest_whose_file_names_collide(tmp_path):
    tables = colliding_tables(tmp_path)
    table = partition_table(tables)
    names = table["path"].map(lambda p: Path(p).name)
    assert names.nunique() < len(table)                     # the collision the export must not inherit
    assert table["file_id"].str.casefold().is_unique and len(table) == 12 + 6 + 6
    parents = set(table.loc[table["parent_id"].isna(), "file_id"])
    fakes = table[table["parent_id"].notna()]
    assert not set(fakes["file_id"]) & parents              # never the parent's name
    assert list(fakes["parent_file_id"]) == [file_id(p) for p in fakes["parent_id"]]
    assert set(fakes["parent_file_id"]) <= parents


def test_a_file_id_is_a_safe_stable_function_of_the_clip_id():
    assert file_id("demo_a__encodec_1.5kbps") == file_id("demo_a__encodec_1.5kbps")
    assert file_id("demo_a__encodec_1.5kbps").startswith("demo_a__encodec_1_5kbps_")
    hostile = file_id("x/../a b\tc\u00e9")
    assert hostile.replace("_", "").replace("-", "").isalnum() and hostile.isascii()
    assert file_id("a.b") != file_id("a_b")                 # the same cleaned text, different clips
    assert len(file_id("x" * 500)) == 80 + 9


def test_partitions_keep_their_own_splits_and_refuse_a_clip_in_two(tmp_path):
    tables = colliding_tables(tmp_path)
    table = partition_table(tables)
    assert set(table.loc[table["partition"] == "eval", "split"]) == {"test"}   # eval's train rows are left out
    with pytest.raises(ExportError, match="in two partitions"):
        partition_table({"train": tables["train"], "eval": tables["train"].assign(split="test")})
    with pytest.raises(ExportError, match="nothing to export"):
        partition_table({"dev": tables["train"]})


def test_audio_is_hard_linked_symlinked_copied_or_transcoded(tmp_path):
    src = write_wave(tmp_path / "a.flac", make_wave(0.3))
    assert place_audio(src, tmp_path / "h" / "x.flac", "hard") == "hard" and os.stat(src).st_nlink == 2
    assert place_audio(src, tmp_path / "s" / "x.flac", "symlink") == "symlink"
    assert (tmp_path / "s" / "x.flac").is_symlink() and Path(os.readlink(tmp_path / "s" / "x.flac")).is_absolute()
    assert place_audio(src, tmp_path / "c" / "x.flac", "copy") == "copy" and os.stat(src).st_nlink == 2
    wav = write_wave(tmp_path / "b.wav", make_wave(0.3))
    assert place_audio(wav, tmp_path / "t" / "x.flac", "hard") == "transcoded"
    assert (sf.read(str(wav), dtype="int16")[0] == sf.read(str(tmp_path / "t" / "x.flac"), dtype="int16")[0]).all()


def test_the_output_guard_refuses_data_a_file_a_foreign_folder_and_a_folder_holding_an_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with pytest.raises(ExportError, match="inside data/"):
        check_out("data/exports", [])
    with pytest.raises(ExportError, match="inside data/"):
        check_out(tmp_path / "data", [])
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        check_out("f.txt", [])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.md").write_text("keep me")
    with pytest.raises(ExportError, match="not an export"):
        check_out("mine", [])
    with pytest.raises(ExportError, match="holds an input"):
        check_out("corpus", ["corpus/clips/a.flac"])
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "EXPORT.json").write_text("{}")
    assert check_out("old", ["table.parquet"]) == Path("old") and check_out("new", []) == Path("new")


def test_a_missing_audio_file_is_an_export_error_naming_the_clip(tmp_path):
    from pipeline.handoff.files import place_all

    table = pd.DataFrame([{"clip_id": "c1", "path": str(tmp_path / "gone.flac"), "partition": "train",
                           "file_id": "c1_x"}])
    with pytest.raises(ExportError, match="clip c1: cannot place"):
        place_all(table, {"train": tmp_path / "out"}, "hard")
