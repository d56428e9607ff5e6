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


def test_bench_embed_runs_a_pretrained_architecture_and_merges_its_row(tmp_path, monkeypatch):
    """bench_embed on AASIST-L at toy sizes: the row carries the device, precision and rates it measured."""
    import json

    import benchmarks.common as common
    from benchmarks import bench_embed

    monkeypatch.setattr(common, "BENCH_JSON", tmp_path / "bench.json")
    monkeypatch.setattr(bench_embed, "merge_bench", lambda key, rows: common.merge_bench(key, rows,
                                                                                         path=tmp_path / "bench.json"))
    bench_embed.main(["--archs", "aasist-l", "--threads", "1", "--seconds", "0.5", "--heavy-clips", "2",
                      "--heavy-batch", "2", "--heavy-train-batch", "2", "--heavy-steps", "1", "--repeats", "1",
                      "--crop", "0.5"])
    (row,) = json.loads((tmp_path / "bench.json").read_text())["embed"]["rows"]
    assert row["arch"] == "aasist-l" and row["device"] == "cpu" and row["precision"] == "fp32"
    assert row["params_k"] == 85.3 and row["clips"] == 2
    assert row["model_clips_per_s"] > 0 and row["e2e_clips_per_s"] > 0 and row["train_step_s"] > 0


def test_bench_sampling_times_every_method_against_nc_in_one_run(tmp_path):
    import json

    from benchmarks import bench_sampling

    assert bench_sampling.main(["--sizes", "3000", "--dim", "16", "--threads", "1", "--n-clusters", "4",
                                "--methods", "all", "--repeats", "2", "--out", str(tmp_path / "bench.json")]) == 0
    rows = json.loads((tmp_path / "bench.json").read_text())["sampling_methods"]["rows"]
    assert [r["method"] for r in rows] == list(bench_sampling.METHODS)
    assert all(r["n"] == 3000 and 0 < r["seconds"] <= r["seconds_median"] and r["repeats"] == 2 for r in rows)
    # equal budgets: every method keeps round(0.25 x 1500) rows of each class
    assert {r["selected"] for r in rows} == {750}
    assert next(r for r in rows if r["method"] == "nc")["seconds_over_nc"] == 1.0


def test_bench_score_rule_scores_both_rules_from_one_pass(tmp_path, monkeypatch):
    import json

    import torch

    from benchmarks import bench_score_rule
    from pipeline.models import build_model, save_checkpoint
    from tests.conftest import tiny_clip_table

    clips = tiny_clip_table(tmp_path / "audio", n_speakers=4, clips_per_speaker=2)
    clips.loc[(clips["split"] == "dev") & (clips["label"] == "spoof"), "split"] = "eval:tts"
    write_clips(clips, tmp_path / "clips.parquet")
    torch.manual_seed(0)
    save_checkpoint(build_model({"arch": "resnet", "width": 4, "embedding_dim": 8, "sample_rate": 16000}),
                    {"eval_s": 0.5}, tmp_path / "m" / "model.pt")
    monkeypatch.chdir(tmp_path)
    assert bench_score_rule.main(["--model", "m", "--clips", "clips.parquet", "--threads", "1"]) == 0
    rows = json.loads((tmp_path / "reports" / "bench.json").read_text())["score_rule"]["rows"]
    assert len(rows) == 6 and {r["set"] for r in rows} == {"test_spoofs", "eval_spoofs", "pooled"}
    assert all(r["n_bonafide"] == 2 for r in rows) and {r["n_spoof"] for r in rows} == {2, 4}
    assert all(0 <= r["lo_pct"] <= r["hi_pct"] <= 100 for r in rows)
