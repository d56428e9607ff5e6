"""The benchmarks build their own clip tables: those must stay valid clip tables as the schema grows."""

from __future__ import annotations

from pipeline.schema import read_clips, write_clips


def test_bench_engine_clips_are_a_valid_clip_table(tmp_path):
    from benchmarks.bench_engine import make_clips

    clips = make_clips(tmp_path / "audio", 3, 0.2)
    write_clips(clips, tmp_path / "clips.parquet")  # checks the schema: a missing column is an error
    assert list(read_clips(tmp_path / "clips.parquet")["clip_id"]) == list(clips["clip_id"])


def test_bench_sampling_stream_stage_runs_the_streamed_sample_stage(tmp_path):
    from benchmarks.bench_sampling_stream import generate, stage_child, write_clip_table

    generate(tmp_path / "embeddings" / "t0", 4000, 8, shard_rows=1500)
    write_clip_table(tmp_path, 4000)
    row = stage_child(str(tmp_path), threads=1, ratio=0.25, n_clusters=2)
    assert row["rows"] == 4000 and row["shards"] == 3 and row["train_rows"] == 3600     # speakers 0-1799 train
    assert row["nc_rows"] == 900 and row["full_rows"] == 3600 and row["skipped"] == ["kcenter"]
    nc = read_clips(tmp_path / "manifests" / "nc.parquet", groups=("manifest",))
    assert nc["distance"].notna().all() and (nc["split"] == "train").all()
