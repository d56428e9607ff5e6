"""The benchmarks build their own clip tables: those must stay valid clip tables as the schema grows."""

from __future__ import annotations

from pipeline.schema import read_clips, write_clips


def test_bench_engine_clips_are_a_valid_clip_table(tmp_path):
    from benchmarks.bench_engine import make_clips

    clips = make_clips(tmp_path / "audio", 3, 0.2)
    write_clips(clips, tmp_path / "clips.parquet")  # checks the schema: a missing column is an error
    assert list(read_clips(tmp_path / "clips.parquet")["clip_id"]) == list(clips["clip_id"])
