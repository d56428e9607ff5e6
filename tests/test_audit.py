"""The audit stage: nuisance-only EER per set (a planted shortcut is caught, none is not) and generator hardness."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import audit
from pipeline.schema import read_clip_tables
from tests.conftest import tiny_clip_table
from tests.report_fakes import make_fake_run


def _clips(tmp_path: Path, shortcut: bool) -> pd.DataFrame:
    make_fake_run(tmp_path, n_speakers=10, clips_per_speaker=8, shortcut=shortcut)
    return read_clip_tables([tmp_path / "data" / "clips.parquet", tmp_path / "data" / "recon" / "vocoder.parquet"])


def test_sets_are_split_and_paradigm_plus_attack_only_eval_splits(tmp_path):
    sets = audit.audit_sets(_clips(tmp_path, shortcut=False))
    assert set(sets) == {"train/vocoder", "test/vocoder", "eval:tts"}
    tts = sets["eval:tts"]
    assert set(tts.loc[tts["label"] == "bonafide", "split"]) == {"test"}


def test_the_audit_is_near_chance_when_the_features_carry_no_class(tmp_path):
    summaries, table = audit.run_audit(_clips(tmp_path, shortcut=False), audit.AuditParams(folds=5))
    for name, s in summaries.items():
        assert s["status"] == "ok", (name, s)
        assert 0.3 < s["eer"] < 0.8 and "speaker-disjoint" in s["folds"]
    assert set(table["kind"]) == {"classifier", "feature"} and set(audit.FEATURES) <= set(table["name"])


def test_a_planted_shortcut_is_caught_and_the_feature_named(tmp_path, caplog):
    clips = _clips(tmp_path, shortcut=True)  # the fakes are 3 s longer and 12 dB quieter
    with caplog.at_level(logging.WARNING):
        summaries, _ = audit.run_audit(clips, audit.AuditParams(folds=5))
    for name in ("train/vocoder", "eval:tts"):
        assert summaries[name]["status"] == "warning" and summaries[name]["eer"] < 0.1
        assert summaries[name]["worst_feature"] in ("duration_s", "rms_dbfs")
    assert "SHORTCUT AUDIT: train/vocoder" in caplog.text


def test_duration_alone_shows_in_the_no_duration_column(tmp_path):
    clips = _clips(tmp_path, shortcut=False)
    spoof = clips["label"] == "spoof"
    clips.loc[spoof, "duration_s"] += 5.0  # a TTS-like length shortcut only: crops hide it from a detector
    summaries, _ = audit.run_audit(clips, audit.AuditParams(folds=5))
    s = summaries["eval:tts"]
    assert s["eer"] < 0.1 and s["worst_feature"] == "duration_s" and s["eer_no_duration"] > 0.3


def test_a_set_with_too_few_clips_of_a_class_is_skipped(tmp_path):
    clips = _clips(tmp_path, shortcut=False)
    summaries, _ = audit.run_audit(clips, audit.AuditParams(folds=3, min_per_class=1000))
    assert all(s["status"].startswith("skipped") for s in summaries.values())


def test_the_audit_falls_back_to_stratified_folds_with_a_single_speaker(tmp_path):
    clips = _clips(tmp_path, shortcut=True).assign(speaker="one")
    summaries, _ = audit.run_audit(clips, audit.AuditParams(folds=3))
    assert all("stratified" in s["folds"] and np.isfinite(s["eer"]) for s in summaries.values())


def test_the_audit_requires_the_feature_columns():
    with pytest.raises(ValueError, match="lacks"):
        audit.run_audit(pd.DataFrame({"clip_id": ["a"], "label": ["spoof"]}), audit.AuditParams())


def test_hardness_is_the_eer_per_system_against_the_test_bona_fide():
    clips = pd.DataFrame({
        "clip_id": ["b1", "b2", "b3", "s1", "s2", "t1", "t2", "x"],
        "label": ["bonafide"] * 3 + ["spoof"] * 5,
        "split": ["test", "test", "test", "test", "test", "eval:tts", "eval:tts", "train"],
        "system": ["-"] * 3 + ["easy", "easy", "hard", "hard", "easy"],
        "paradigm": ["bonafide"] * 3 + ["vocoder", "vocoder", "tts", "tts", "vocoder"]})
    scores = pd.Series({"b1": 1.0, "b2": 2.0, "b3": 3.0, "s1": -5.0, "s2": -4.0, "t1": 1.5, "t2": 2.5, "x": 9.0})
    hard = audit.hardness(clips, scores, "ref").set_index("system")
    assert hard.loc["easy", "eer"] == 0.0 and hard.loc["easy", "n_spoof"] == 2  # the train clip is not counted
    assert hard.loc["hard", "eer"] > 0.3 and hard.loc["hard", "paradigm"] == "tts"


def test_main_writes_the_audit_files_with_teacher_hardness(tmp_path):
    import torch

    from pipeline.models import build_model, save_checkpoint

    clips = tiny_clip_table(tmp_path / "audio", n_speakers=4, clips_per_speaker=3)
    from pipeline.schema import write_clips

    write_clips(clips, tmp_path / "clips.parquet")
    torch.manual_seed(0)
    model = build_model({"arch": "resnet", "width": 4, "embedding_dim": 8, "sample_rate": 16000})
    save_checkpoint(model, {"sample_rate": 16000}, tmp_path / "teachers" / "t0" / "model.pt")
    (tmp_path / "params.yaml").write_text("seed: 3\naudio: {sample_rate: 16000}\nruntime: {threads: 1}\n"
                                          "audit: {folds: 2, eval_s: 0.5, batch_size: 4}\n")
    code = audit.main(["--params", str(tmp_path / "params.yaml"), "--clips", str(tmp_path / "clips.parquet"),
                       "--teachers", str(tmp_path / "teachers"), "--out", str(tmp_path / "reports")])
    assert code == 0
    result = json.loads((tmp_path / "reports" / "audit.json").read_text())
    assert set(result["audit"]) == {"train/vocoder", "test/vocoder"}
    assert result["min_eer"] == 0.35 and result["features"] == list(audit.FEATURES)
    assert set(result["hardness"]) == {"teacher:t0"} and "noise" in result["hardness"]["teacher:t0"]
    hard = pd.read_csv(tmp_path / "reports" / "hardness.csv")
    assert list(hard.columns) == ["model", "system", "paradigm", "n_spoof", "eer"]
    assert np.isfinite(hard["eer"]).all()
    assert (tmp_path / "reports" / "audit.csv").read_text().startswith("set,kind,name,eer")


def test_unknown_or_bad_audit_params_are_config_errors():
    from pipeline.params import ConfigError

    with pytest.raises(ConfigError, match="unknown keys"):
        audit.AuditParams.from_params({"warn_eer": 0.3})
    with pytest.raises(ConfigError, match="audit.reference"):
        audit.AuditParams.from_params({"reference": 3})
