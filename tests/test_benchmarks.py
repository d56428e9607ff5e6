"""Every benchmark runs end to end at a tiny size and writes what it promises: none can break silently.

Each merges into a temporary bench.json ($HARDSET_BENCH_JSON, children included), never the repository's; the
benchmarks that start Ray or DVC are `slow`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.schema import read_clips, write_clips


@pytest.fixture
def bench_json(tmp_path, monkeypatch):
    path = tmp_path / "bench.json"
    monkeypatch.setenv("HARDSET_BENCH_JSON", str(path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return path


def _rows(path, key: str) -> list[dict]:
    return json.loads(path.read_text())[key]["rows"]


def test_bench_sampling_times_nc_select_per_size(bench_json):
    from benchmarks import bench_sampling

    assert bench_sampling.main(["--sizes", "2000", "4000", "--dim", "16", "--threads", "1"]) == 0
    rows = _rows(bench_json, "sampling")
    assert [r["n"] for r in rows] == [2000, 4000] and [r["selected"] for r in rows] == [500, 1000]
    assert all(r["seconds"] > 0 and r["cpu_s"] > 0 and r["peak_rss_bytes"] > 0 for r in rows)


def test_bench_sampling_times_every_method_against_nc_in_one_run(bench_json):
    from benchmarks import bench_sampling

    assert bench_sampling.main(["--sizes", "3000", "--dim", "16", "--threads", "1", "--n-clusters", "4",
                                "--methods", "all", "--repeats", "2"]) == 0
    rows = _rows(bench_json, "sampling_methods")
    assert [r["method"] for r in rows] == list(bench_sampling.METHODS)
    assert all(r["n"] == 3000 and 0 < r["seconds"] <= r["seconds_median"] and r["repeats"] == 2 for r in rows)
    # equal budgets: every method keeps round(0.25 x 1500) rows of each class
    assert {r["selected"] for r in rows} == {750}
    assert next(r for r in rows if r["method"] == "nc")["seconds_over_nc"] == 1.0


def test_bench_score_rule_scores_both_rules_from_one_pass(bench_json, tmp_path, monkeypatch):
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
    rows = _rows(bench_json, "score_rule")
    assert len(rows) == 6 and {r["set"] for r in rows} == {"test_spoofs", "eval_spoofs", "pooled"}
    assert all(r["n_bonafide"] == 2 for r in rows) and {r["n_spoof"] for r in rows} == {2, 4}
    assert all(0 <= r["lo_pct"] <= r["hi_pct"] <= 100 for r in rows)


def test_bench_sampling_stream_writes_the_in_memory_baseline_beside_the_streamed_time(bench_json, tmp_path):
    from benchmarks import bench_sampling_stream

    argv = ["--rows", "20000", "--shard-rows", "7000", "--dim", "16", "--threads", "1", "--repeats", "2",
            "--dir", str(tmp_path / "shards"), "--check"]
    assert bench_sampling_stream.main(argv) == 0
    (row,) = _rows(bench_json, "sampling_stream")
    assert row["rows"] == 20000 and row["shards"] == 3 and row["selected"] == 5000 and row["equals_nc_select"]
    assert len(row["in_memory_runs_s"]) == 2 and row["in_memory_rows"] == 20000
    assert row["linear_ratio"] == pytest.approx(row["seconds"] / (0.02 * row["in_memory_1m_s"]))
    assert 0 < row["peak_anon_mb"] and not (tmp_path / "shards").exists()        # deleted without --keep


def test_bench_sampling_stream_children_run_the_streamed_sample_stage_inputs(tmp_path):
    from benchmarks.bench_sampling_stream import generate
    from benchmarks.stage_repro import TEACHER, clip_batch, write_clip_table

    generate(tmp_path / "data" / "embeddings" / TEACHER, 4000, 8, shard_rows=1500)
    write_clip_table(tmp_path, 4000)
    clips = read_clips(tmp_path / "data" / "clips.parquet")          # a valid clip table, in generate's order
    assert len(clips) == 4000 and (clips["label"] == np.where(np.arange(4000) % 2 == 0, "bonafide", "spoof")).all()
    assert (clips["split"] == "train").sum() == 3600 and clips["sha256"].is_unique
    assert clip_batch(5, 7).column("clip_id").to_pylist() == ["c000000005", "c000000006"]


def test_bench_engine_clips_are_a_valid_clip_table(tmp_path):
    from benchmarks.bench_engine import make_clips

    clips = make_clips(tmp_path / "audio", 3, 0.2)
    write_clips(clips, tmp_path / "clips.parquet")  # checks the schema: a missing column is an error
    assert list(read_clips(tmp_path / "clips.parquet")["clip_id"]) == list(clips["clip_id"])


def test_bench_embed_runs_a_pretrained_architecture_and_merges_its_row(bench_json):
    """bench_embed on AASIST-L at toy sizes: the row carries the device, precision and rates it measured."""
    from benchmarks import bench_embed

    bench_embed.main(["--archs", "aasist-l", "--threads", "1", "--seconds", "0.5", "--heavy-clips", "2",
                      "--heavy-batch", "2", "--heavy-train-batch", "2", "--heavy-steps", "1", "--repeats", "1",
                      "--crop", "0.5"])
    (row,) = _rows(bench_json, "embed")
    assert row["arch"] == "aasist-l" and row["device"] == "cpu" and row["precision"] == "fp32"
    assert row["params_k"] == 85.3 and row["clips"] == 2
    assert row["model_clips_per_s"] > 0 and row["e2e_clips_per_s"] > 0 and row["train_step_s"] > 0


def test_bench_aasist_runs_the_fast_path_in_a_child(bench_json):
    from benchmarks import bench_aasist

    assert bench_aasist.main(["--archs", "aasist-l", "--threads", "1", "--batch", "2", "--plain-batch", "0",
                              "--isa", "native"]) == 0
    (row,) = _rows(bench_json, "aasist")
    assert row["arch"] == "aasist-l" and row["path"] == "fast" and row["batch"] == 2 and row["clips_per_s"] > 0


def test_bench_resynth_times_a_system_in_a_child(bench_json, tmp_path, monkeypatch):
    from benchmarks import bench_resynth

    monkeypatch.chdir(tmp_path)                    # no data/ here: synthetic tones, untrained generators
    assert bench_resynth.main(["--seconds", "3", "--threads", "1", "--paradigms", "vocoder", "--systems",
                               "griffinlim"]) == 0
    (row,) = _rows(bench_json, "resynth")
    assert row["system"] == "griffinlim" and row["speed_x"] > 0 and row["audio"] == "synthetic"


def test_bench_finetune_prints_seconds_per_step(capsys):
    from benchmarks import bench_finetune

    bench_finetune.main(["--arch", "aasist-l", "--modes", "backend", "--threads", "1", "--batch", "2",
                         "--crop-s", "0.5", "--steps", "1"])
    out = capsys.readouterr().out
    assert "aasist-l fine-tuning" in out and "'mode': 'backend'" in out and "s_per_step" in out


@pytest.mark.slow
def test_bench_cpu_isa_compares_a_setting_with_native(capsys):
    from benchmarks import bench_cpu_isa

    assert bench_cpu_isa.main(["--settings", "aten=avx2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["op", "native", "aten=avx2"] and any(" same" in line for line in out[1:])


@pytest.mark.slow
def test_bench_engine_writes_local_and_ray_rows_and_embeds_break_even(bench_json):
    from benchmarks import bench_engine

    assert bench_engine.main(["--clips", "12", "--embed-sizes", "8", "16", "--seconds", "0.3"]) == 0
    data = json.loads(bench_json.read_text())["engine"]
    rows = data["rows"]
    assert {(r["workload"], r["engine"], r["workers"], r["clips"]) for r in rows} == {
        (w, e, n, c) for w, sizes in (("reconstruct/world", (12,)), ("embed/resnet", (8, 16)))
        for c in sizes for e, n in (("local", 1), ("ray", 1), ("ray", 2))}
    assert all(r["ray_tasks"] >= 1 and r["ray_rows"] == "parquet" for r in rows if r["engine"] == "ray")
    assert data["embed_break_even"]["workers"] == 2 and "break_even_clips" in data["embed_break_even"]


@pytest.mark.slow
def test_bench_sampling_stream_stage_times_dvc_repro_against_the_library_call(bench_json, tmp_path):
    from benchmarks import bench_sampling_stream

    assert bench_sampling_stream.main(["--stage", "--rows", "20000", "--shard-rows", "7000", "--dim", "16",
                                       "--threads", "1", "--dir", str(tmp_path / "proj")]) == 0
    (row,) = _rows(bench_json, "sampling_stream_stage")
    assert row["train_rows"] == 18000 and row["nc_selected"] == 4500
    assert row["manifest_rows"]["nc"] == 4500 and row["manifest_rows"]["full"] == 18000
    assert row["repro_s"] > row["library_s"] > 0 and row["stage_peak_anon_mb"] > 0


@pytest.mark.slow
def test_bench_report_experiments_times_both_routes_on_one_repository(bench_json, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from benchmarks import bench_report_experiments

    repo = tmp_path / "repo"
    (repo / "reports").mkdir(parents=True)
    (repo / "reports" / "metrics.json").write_text(json.dumps({"eer": {"test": 0.1}}))
    (repo / "dvc.yaml").write_text("stages:\n  report:\n    cmd: 'true'\n    metrics:\n"
                                   "      - reports/metrics.json:\n          cache: false\n")
    dvc = str(Path(sys.executable).parent / "dvc")
    for cmd in (["git", "init", "-q"], [dvc, "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one"]):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    assert bench_report_experiments.main(["--repo", str(repo)]) == 0
    (row,) = _rows(bench_json, "report_experiments")
    assert row["commits"] == 1 and row["in_process_s"] > 0 and row["subprocess_s"] > 0
    assert row["subprocess_over_in_process"] == pytest.approx(row["subprocess_s"] / row["in_process_s"])
