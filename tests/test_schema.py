import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.schema import (
    SchemaError,
    check_split_speakers,
    clip_schema,
    empty_clips,
    fix_clips,
    read_clip_tables,
    read_clips,
    read_rejects,
    validate_clips,
    write_clips,
    write_rejects,
)
from tests.conftest import tiny_clip_table


@pytest.fixture
def clips(tmp_path):
    return tiny_clip_table(tmp_path / "audio", n_speakers=2, clips_per_speaker=1)


def test_validate_clips_passes_on_a_valid_table(clips):
    out = validate_clips(clips, stage="test")
    assert list(out.columns)[:3] == ["clip_id", "path", "corpus"]
    assert len(out) == len(clips)


def test_validate_clips_missing_column_raises(clips):
    with pytest.raises(SchemaError, match="lacks columns.*sha256"):
        validate_clips(clips.drop(columns=["sha256"]))


def test_validate_clips_unknown_label_raises_naming_the_row(clips):
    clips.loc[1, "label"] = "fake"
    with pytest.raises(SchemaError, match=r"row 1 .*label"):
        validate_clips(clips)


def test_validate_clips_duplicate_id_raises(clips):
    clips.loc[1, "clip_id"] = clips.loc[0, "clip_id"]
    with pytest.raises(SchemaError, match="duplicate clip_id"):
        validate_clips(clips)


def test_validate_clips_bad_split_and_bonafide_system_raise(clips):
    bad = clips.copy()
    bad.loc[0, "split"] = "eval:"
    with pytest.raises(SchemaError, match="split"):
        validate_clips(bad)
    bad = clips.copy()
    bad.loc[0, "system"] = "A07"
    with pytest.raises(SchemaError, match="bonafide"):
        validate_clips(bad)


def test_write_then_read_roundtrips(tmp_path, clips):
    path = tmp_path / "clips.parquet"
    write_clips(clips, path)
    back = read_clips(path)
    pd.testing.assert_series_equal(back["clip_id"], validate_clips(clips)["clip_id"])
    assert not list(tmp_path.glob(".clips.parquet*")), "no temp file left behind"
    both = read_clip_tables([path, path.with_name("b.parquet")]) if False else read_clip_tables([path])
    assert len(both) == len(clips)


def test_read_clips_of_another_schema_raises_not_casts(tmp_path, clips):
    path = tmp_path / "clips.parquet"
    table = pa.Table.from_pandas(clips.assign(duration_s=clips["duration_s"].astype(str)), preserve_index=False)
    pq.write_table(table, path)
    with pytest.raises(SchemaError, match="duration_s.*no silent cast"):
        read_clips(path)


def test_read_clips_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the stage"):
        read_clips(tmp_path / "nope.parquet")


def test_manifest_group_needs_its_columns(clips):
    with pytest.raises(SchemaError, match="teacher"):
        validate_clips(clips, groups=("manifest",))
    ok = clips.assign(teacher="t", distance=0.1, cluster=1, sampler="nc")
    assert "sampler" in validate_clips(ok, groups=("manifest",)).columns


def test_fix_clips_drops_duplicates_and_unknown_labels(clips):
    bad = pd.concat([clips, clips.iloc[[0]]], ignore_index=True)
    bad.loc[1, "label"] = "real"
    kept, dropped = fix_clips(bad)
    assert sorted(dropped["reason"]) == ["duplicate clip_id", "unknown label real"]
    assert len(kept) == len(clips) - 1


def test_check_split_speakers_raises_when_a_speaker_crosses(clips):
    check_split_speakers(clips)
    clips.loc[0, "split"] = "dev" if clips.loc[1, "split"] != "dev" else "test"
    clips.loc[1, "speaker"] = clips.loc[0, "speaker"]
    with pytest.raises(SchemaError, match="crosses"):
        check_split_speakers(clips)


def test_rejects_roundtrip_even_when_empty(tmp_path):
    write_rejects(None, tmp_path / "r.parquet")
    assert read_rejects(tmp_path / "r.parquet").empty
    assert empty_clips().empty


@pytest.mark.parametrize("column, value", [
    ("label", "fake"), ("paradigm", "magic"), ("split", "eval:"), ("split", "eval:../x"), ("duration_s", 0.0),
    ("duration_s", float("nan")), ("sample_rate", 0), ("system", "A07"), ("sha256", None), ("clip_id", "dup"),
])
def test_validate_arrow_refuses_what_validate_clips_refuses_with_the_same_message(clips, column, value):
    """The vectorised check of the large sample stage: same rule, same words, rows counted from the offset."""
    from pipeline.schema import validate_arrow

    good = validate_clips(clips)
    table = pa.Table.from_pandas(good, preserve_index=False)
    checked = validate_arrow(table)                      # pandas 3 hands Arrow large strings: cast to the schema's
    assert checked.schema.equals(clip_schema(), check_metadata=False)
    pd.testing.assert_frame_equal(checked.to_pandas(), good)
    bad, row = good.copy(), 0 if column == "system" else 1          # row 0 is bona fide, row 1 a fake
    if column == "clip_id":
        bad.loc[:, "clip_id"] = "dup"
    else:
        bad.loc[row, column] = value
    with pytest.raises(SchemaError) as expected:
        validate_clips(bad, stage="s")
    with pytest.raises(SchemaError) as got:
        validate_arrow(pa.Table.from_pandas(bad, preserve_index=False), stage="s")
    assert str(got.value) == str(expected.value)
    if column not in ("clip_id", "sha256"):
        with pytest.raises(SchemaError, match=f"row {100 + row} "):
            validate_arrow(pa.Table.from_pandas(bad, preserve_index=False), offset=100)
    with pytest.raises(SchemaError, match="lacks columns"):
        validate_arrow(table.drop_columns(["speaker"]))
