"""The reconstruct stage on a tiny clip table: rows, guards, quality JSON, rejects, resumability, planning."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline import reconstruct
from pipeline.audio import measure, read_audio, rms_dbfs, to_pcm16
from pipeline.logs import StageError
from pipeline.resynth import plan
from pipeline.schema import read_clips, write_clips
from tests.conftest import make_wave, tiny_clip_table, write_wave

SR = 16000


def _setup(tmp_path: Path, monkeypatch, vocoder: dict | None = None, **rec) -> pd.DataFrame:
    monkeypatch.chdir(tmp_path)
    clips = tiny_clip_table(Path("clips"), n_speakers=4, clips_per_speaker=2)
    write_clips(clips, "clips.parquet")
    params = {"seed": 3, "audio": {"sample_rate": SR}, "runtime": {"device": "cpu", "threads": 1},
              "reconstruct": {"splits": ["train", "dev", "test"], "batch_size": 3, **rec,
                              "vocoder": vocoder or {"systems": ["world", "griffinlim"], "griffinlim_iters": 4}}}
    Path("params.yaml").write_text(yaml.safe_dump(params))
    return clips


ARGS = ["vocoder", "--clips", "clips.parquet", "--generator", "gen.py", "--out", "recon/vocoder.parquet",
        "--audio-dir", "recon/vocoder", "--quality", "reports/vocoder.json"]


def _run() -> tuple[pd.DataFrame, dict]:
    assert reconstruct.main(ARGS) == 0
    return read_clips("recon/vocoder.parquet"), json.loads(Path("reports/vocoder.json").read_text())


def test_every_bonafide_clip_gets_each_system_with_guards(tmp_path, monkeypatch):
    clips = _setup(tmp_path, monkeypatch)
    Path("gen.py").write_text("# stands in for the vocoder module\n")
    fakes, quality = _run()
    bona = clips[clips["label"] == "bonafide"].set_index("clip_id")
    assert len(fakes) == 2 * len(bona)
    assert set(fakes["label"]) == {"spoof"} and set(fakes["paradigm"]) == {"vocoder"}
    assert (fakes["clip_id"] == fakes["parent_id"] + "__" + fakes["system"]).all()
    assert (fakes["split"].to_numpy() == bona.loc[fakes["parent_id"], "split"].to_numpy()).all()
    # provenance: a reconstruction keeps its parent's source file
    assert (fakes["source"].to_numpy() == bona.loc[fakes["parent_id"], "source"].to_numpy()).all()
    for row in fakes.head(4).itertuples():
        fake, _ = read_audio(row.path)
        parent, _ = read_audio(bona.loc[row.parent_id, "path"])
        assert len(fake) == len(parent)
        assert abs(rms_dbfs(fake) - rms_dbfs(parent)) < 0.5
        assert not np.allclose(fake, parent, atol=1e-3)
    assert quality["paradigm"] == "vocoder" and set(quality["systems"]) == {"world", "griffinlim"}
    for stats in quality["systems"].values():
        assert stats["n"] == len(bona) and stats["status"] == "ok"
        assert 0.5 < stats["logmel_distance"] < stats["noise_logmel_distance"]
        assert stats["rtf"] > 0


def test_rerun_reuses_finished_files_and_redoes_only_missing_ones(tmp_path, monkeypatch):
    _setup(tmp_path, monkeypatch)
    Path("gen.py").write_text("# v1\n")
    first, _ = _run()
    files = sorted(Path("recon/vocoder").glob("*/*.flac"))
    stamps = {f: f.stat().st_mtime_ns for f in files}
    original, _ = read_audio(files[0])
    files[0].unlink()
    debris = files[1].parent / f".{files[1].name}.tmpXYZ.flac"  # what a killed writer could leave
    debris.write_bytes(b"half")
    second, quality = _run()
    assert not debris.exists()
    # The redone clip now runs in another batch: its output must not change (sha256 and all measures).
    pd.testing.assert_frame_equal(first.sort_values("clip_id").reset_index(drop=True),
                                  second.sort_values("clip_id").reset_index(drop=True))
    redone, _ = read_audio(files[0])
    np.testing.assert_array_equal(redone, original)
    assert all(f.stat().st_mtime_ns == stamps[f] for f in files[1:])
    assert sum(s["n"] for s in quality["systems"].values()) == len(second)


def test_changed_generator_invalidates_old_files(tmp_path, monkeypatch):
    _setup(tmp_path, monkeypatch)
    Path("gen.py").write_text("# v1\n")
    _run()
    f = next(Path("recon/vocoder").glob("world/*.flac"))
    before = f.stat().st_mtime_ns
    Path("gen.py").write_text("# v2\n")
    _run()
    assert f.stat().st_mtime_ns != before


def test_plan_limits_systems_and_parents_and_prunes_the_rest(tmp_path, monkeypatch):
    clips = _setup(tmp_path, monkeypatch)
    Path("gen.py").write_text("# v1\n")
    _run()
    _setup(tmp_path, monkeypatch, vocoder={"systems": ["world", "griffinlim"], "griffinlim_iters": 4,
                                           "systems_per_parent": 1})
    fakes, _ = _run()
    n_bona = int((clips["label"] == "bonafide").sum())
    assert len(fakes) == n_bona and fakes["parent_id"].is_unique
    assert len(list(Path("recon/vocoder").glob("*/*.flac"))) == n_bona  # the other system's files are pruned


def test_unreadable_parent_is_a_reject_not_a_crash(tmp_path, monkeypatch):
    clips = _setup(tmp_path, monkeypatch, max_reject_fraction=0.5)
    Path("gen.py").write_text("# v1\n")
    bad = clips[clips["label"] == "bonafide"].iloc[0]
    Path(bad["path"]).write_bytes(b"not audio")
    fakes, quality = _run()
    assert bad["clip_id"] not in set(fakes["parent_id"])
    assert quality["n_rejected"] == 2 and "unreadable" in quality["rejects"][0]["reason"]


def test_too_many_rejects_fail_the_stage(tmp_path, monkeypatch):
    clips = _setup(tmp_path, monkeypatch, max_reject_fraction=0.0)
    Path("gen.py").write_text("# v1\n")
    Path(clips[clips["label"] == "bonafide"].iloc[0]["path"]).write_bytes(b"not audio")
    with pytest.raises(StageError, match="rejected"):   # one line, exit code 2 (python -m pipeline)
        reconstruct.main(ARGS)
    assert not Path("recon/vocoder.parquet").exists()


def test_unknown_paradigm_is_a_usage_error(tmp_path, monkeypatch):
    _setup(tmp_path, monkeypatch)
    with pytest.raises(SystemExit):
        reconstruct.main(["gan"] + ARGS[1:])


def test_plan_jobs_is_deterministic_and_balanced():
    parents = pd.DataFrame({"clip_id": [f"c{i}" for i in range(300)]})
    systems = ["a", "b", "c"]
    one = plan.plan_jobs(parents, systems, seed=1, systems_per_parent=1)
    assert one.equals(plan.plan_jobs(parents, systems, seed=1, systems_per_parent=1))
    counts = one["system"].value_counts()
    assert len(one) == 300 and counts.min() > 70
    half = plan.plan_jobs(parents, systems, seed=1, parent_fraction=0.5)
    assert 120 < half["clip_id"].nunique() < 180 and len(half) == 3 * half["clip_id"].nunique()
    # a parent's systems do not depend on the other parents
    sub = plan.plan_jobs(parents.iloc[:10], systems, seed=1, systems_per_parent=1)
    assert sub.equals(one.iloc[:10])
    with pytest.raises(ValueError, match="systems_per_parent"):
        plan.plan_jobs(parents, systems, seed=1, systems_per_parent=4)
    with pytest.raises(ValueError, match="parent_fraction"):
        plan.plan_jobs(parents, systems, seed=1, parent_fraction=0.0)


def test_safe_name_keeps_files_inside_their_directory():
    assert os.sep not in reconstruct.safe_name("a/b/../c")


def test_prune_leaves_directories_it_did_not_make(tmp_path):
    ours, theirs = tmp_path / "world", tmp_path / "other"
    for d in (ours, theirs):
        d.mkdir()
        (d / "a.flac").write_bytes(b"x")
        (d / "b.flac").write_bytes(b"x")
    (ours / ".fingerprint.json").write_text("{}")
    assert reconstruct.prune(tmp_path, {ours / "a.flac"}) == 1
    assert (ours / "a.flac").exists() and not (ours / "b.flac").exists()
    assert (theirs / "a.flac").exists() and (theirs / "b.flac").exists()


def test_a_foreign_system_directory_is_never_overwritten(tmp_path):
    foreign = tmp_path / "world"
    foreign.mkdir()
    (foreign / "mine.flac").write_bytes(b"x")
    with pytest.raises(RuntimeError, match="refusing"):
        reconstruct.prepare_system_dir(foreign, {"system": "world"})
    assert (foreign / "mine.flac").exists()


def _replace_parent(clips: pd.DataFrame, clip_id: str, seed: int) -> pd.DataFrame:
    """Give one bona fide clip new audio (another sha256), as a re-run of prepare would."""
    row = clips.index[clips["clip_id"] == clip_id][0]
    wave = make_wave(1.0, SR, f0=230.0, seed=seed)
    write_wave(Path(clips.at[row, "path"]), wave, SR)
    clips = clips.copy()
    for key, value in {**measure(wave, SR), "sha256": hashlib.sha256(to_pcm16(wave).tobytes()).hexdigest()}.items():
        clips.at[row, key] = value
    write_clips(clips, "clips.parquet")
    return clips


def _flacs() -> dict[str, bytes]:
    return {str(f): f.read_bytes() for f in sorted(Path("recon/vocoder").glob("*/*.flac"))}


def test_a_changed_parent_redoes_only_its_fakes_and_matches_a_clean_run(tmp_path, monkeypatch):
    (tmp_path / "resumed").mkdir()
    (tmp_path / "clean").mkdir()
    clips = _setup(tmp_path / "resumed", monkeypatch)  # world and griffinlim, batches of 3
    Path("gen.py").write_text("# v1\n")
    _run()
    stamps = {f: f.stat().st_mtime_ns for f in Path("recon/vocoder").glob("*/*.flac")}
    changed = "tiny_s1_c0"
    _replace_parent(clips, changed, seed=99)
    table, _ = _run()
    redone = {f for f in stamps if f.stat().st_mtime_ns != stamps[f]}
    assert {f.stem for f in redone} == {changed} and len(redone) == 2
    resumed_files, resumed_table = _flacs(), table.sort_values("clip_id").reset_index(drop=True)
    journals = [p.read_text() for p in sorted(Path("recon/vocoder").glob("*/.entries.jsonl"))]
    # a clean run on the changed inputs gives the same files, table and records
    _setup(tmp_path / "clean", monkeypatch)
    Path("gen.py").write_text("# v1\n")
    _replace_parent(clips, changed, seed=99)
    clean, _ = _run()
    assert _flacs() == resumed_files
    pd.testing.assert_frame_equal(clean.sort_values("clip_id").reset_index(drop=True), resumed_table)
    assert [p.read_text() for p in sorted(Path("recon/vocoder").glob("*/.entries.jsonl"))] == journals


def test_changing_one_systems_setting_redoes_only_that_system(tmp_path, monkeypatch):
    _setup(tmp_path, monkeypatch)
    Path("gen.py").write_text("# v1\n")
    _run()
    stamps = {f: f.stat().st_mtime_ns for f in Path("recon/vocoder").glob("*/*.flac")}
    _setup(tmp_path, monkeypatch, vocoder={"systems": ["world", "griffinlim"], "griffinlim_iters": 6})
    _run()
    redone = {f.parent.name for f in stamps if f.stat().st_mtime_ns != stamps[f]}
    assert redone == {"griffinlim"}


def test_system_settings_split_shared_and_own_keys():
    settings = {"systems": ["world", "griffinlim"], "griffinlim_iters": 8, "hifigan_jit": True,
                "world_frame_period_ms": 5.0, "systems_per_parent": 1, "ddim_steps": 10}
    known = ["hifigan_universal", "world", "griffinlim"]
    assert plan.system_settings("world", settings, known) == {"ddim_steps": 10, "world_frame_period_ms": 5.0}
    assert plan.system_settings("griffinlim", settings, known) == {"ddim_steps": 10, "griffinlim_iters": 8}


def test_another_cpu_kernel_path_invalidates_old_files(tmp_path, monkeypatch):
    """A FLAC made under other torch CPU kernels (HARDSET_CPU_ISA / the library variables) may differ in its
    last bits: it is not reused."""
    _setup(tmp_path, monkeypatch)
    Path("gen.py").write_text("# v1\n")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    _run()
    f = next(Path("recon/vocoder").glob("world/*.flac"))
    before = f.stat().st_mtime_ns
    _run()
    assert f.stat().st_mtime_ns == before           # same kernels: reused
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    _run()
    assert f.stat().st_mtime_ns != before


def test_bf16_precision_reconstructs_and_redoes_fp32_files_and_a_bad_precision_is_an_error(tmp_path, monkeypatch):
    """reconstruct.precision: Griffin-Lim under bf16 autocast still gives valid fakes; files made at fp32 are not
    reused at bf16 (another precision rounds differently); an unknown precision is a ConfigError."""
    _setup(tmp_path, monkeypatch)
    Path("gen.py").write_text("# v1\n")
    fp32, _ = _run()
    f = next(Path("recon/vocoder").glob("griffinlim/*.flac"))
    before = f.stat().st_mtime_ns
    _setup(tmp_path, monkeypatch, precision="bf16")
    bf16, _ = _run()
    assert f.stat().st_mtime_ns != before
    assert sorted(bf16["clip_id"]) == sorted(fp32["clip_id"])
    _setup(tmp_path, monkeypatch, precision="fp8")
    with pytest.raises(ValueError, match="reconstruct.precision"):
        reconstruct.main(ARGS)
