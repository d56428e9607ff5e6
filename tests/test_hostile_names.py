"""Names that become paths, shell words or spreadsheet cells: a hostile corpus or params file must not write outside
the project, run a command, or plant a formula (issue 27, security cases 1-3)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline import evaluate
from pipeline.corpora.demo import load_demo
from pipeline.corpora.folder import load_folder
from pipeline.io import csv_safe, neutralise_formula
from pipeline.params import ConfigError, teacher_names, teacher_params
from pipeline.schema import SchemaError, check_name, split_ok, validate_clips
from pipeline.score import escape_field, format_scores, read_scores
from tests.conftest import make_wave, tiny_clip_table, write_wave

ROOT = Path(__file__).resolve().parents[1]
HOSTILE_SETS = ["eval:../../../../x", "eval:/tmp/x", "eval:a/b", "eval:..", "eval:.hidden", "eval:-rf", "eval:a b",
                "eval:x;touch y", "eval:"]
HOSTILE_TEACHERS = ["t1; touch pwned; echo", "t1'; touch pwned; echo '", "../../victim", "a.b", "-x", "", "a b"]


@pytest.mark.parametrize("split", HOSTILE_SETS)
def test_an_eval_split_that_is_a_path_is_not_a_split(split):
    assert not split_ok(split)


@pytest.mark.parametrize("split", ["train", "dev", "test", "eval:unseen_tts", "eval:itw", "eval:codecfake_xie_c1",
                                   "eval:asvspoof2021_LA", "eval:v1.2"])
def test_ordinary_splits_pass(split):
    assert split_ok(split)


def test_a_clip_table_with_a_path_split_is_refused_naming_the_row(tmp_path):
    clips = tiny_clip_table(tmp_path, n_speakers=2, clips_per_speaker=1)
    clips.loc[0, "split"] = "eval:../../../../x"
    with pytest.raises(SchemaError, match=r"row 0 .* split"):
        validate_clips(clips)


def test_folder_corpus_rows_with_a_path_split_become_rejects(tmp_path):
    write_wave(tmp_path / "a.wav", make_wave(0.5))
    write_wave(tmp_path / "b.wav", make_wave(0.5, seed=1))
    outside = tmp_path.parent / "outside"
    (tmp_path / "labels.csv").write_text(
        "file,speaker,label,system,split\n"
        f"a.wav,s1,bonafide,,eval:{outside}/x\n"
        "b.wav,s1,bonafide,,eval:../../../../x\n")
    result = load_folder(tmp_path)
    assert result.sources.empty
    assert len(result.rejects) == 2 and all("unknown split" in r["reason"] for r in result.rejects)


def test_demo_metadata_rows_with_a_path_split_become_rejects(tmp_path):
    write_wave(tmp_path / "a.wav", make_wave(0.5))
    (tmp_path / "metadata.csv").write_text(
        "file,speaker,label,system,paradigm,split,text,language\n"
        "a.wav,s1,spoof,espeak,tts,eval:../../x,hello,en\n")
    result = load_demo(tmp_path)
    assert result.sources.empty and "split" in result.rejects[0]["reason"]


def test_score_files_are_never_written_under_an_unsafe_set_name(tmp_path):
    scored = {"../../escaped": pd.DataFrame({"clip_id": ["a"], "score": [0.5]})}
    with pytest.raises(SchemaError, match="eval set name"):
        evaluate.write_scores(scored, tmp_path / "scores")
    assert not any(tmp_path.rglob("*.txt")) and not (tmp_path.parent / "escaped.txt").exists()
    assert check_name("eval set", "unseen_tts") == "unseen_tts"


@pytest.mark.parametrize("name", HOSTILE_TEACHERS)
def test_a_teacher_name_that_is_not_a_plain_word_is_a_config_error(name):
    params = {"teachers": {name: {"arch": "resnet"}, "ok_teacher": {"arch": "resnet"}}}
    with pytest.raises(ConfigError, match="teacher name"):
        teacher_names(params)
    with pytest.raises(ConfigError, match="teacher name"):
        teacher_params(params, "ok_teacher")


def test_corpus_index_which_runs_first_on_every_repro_refuses_a_hostile_teacher(tmp_path, capsys):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["teachers"]["t1; touch pwned; echo"] = params["teachers"].pop("convnext_codec")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    from pipeline.__main__ import main

    code = main(["corpus_index", "--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "index.json"),
                 "--cache", str(tmp_path / "cache.json")])
    assert code == 2 and "teacher name" in capsys.readouterr().err
    assert not (tmp_path / "index.json").exists()


def _foreach_stages() -> dict:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: s for name, s in stages.items() if "foreach" in s}


def test_no_stage_command_pastes_a_params_key_into_the_shell():
    """`${key}` of a foreach over params (teachers) would be shell text; DVC_STAGE, expanded in quotes, is not."""
    checked = 0
    for name, stage in _foreach_stages().items():
        if not isinstance(stage["foreach"], str):  # keys written in dvc.yaml itself (reconstruct's paradigms)
            continue
        cmd = stage["do"]["cmd"]
        assert "${key}" not in cmd and "${item" not in cmd, name
        assert '"\\${DVC_STAGE#*@}"' in cmd, name
        checked += 1
    assert checked >= 2  # pretrain and embed


@pytest.mark.slow
def test_dvc_repro_with_a_hostile_teacher_key_runs_no_injected_command(tmp_path):
    """The real pretrain command of dvc.yaml, run by DVC with two hostile keys: no file is created."""
    dvc = shutil.which("dvc") or str(Path(sys.executable).parent / "dvc")
    cmd = _foreach_stages()["pretrain"]["do"]["cmd"]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(
        {"stages": {"pretrain": {"foreach": "${teachers}", "do": {"cmd": cmd}}}}))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seed": 1, "audio": {"sample_rate": 16000}, "teachers": {
        "t1; touch pwned; echo": {"arch": "resnet"}, "t2'; touch pwned2; echo '": {"arch": "resnet"}}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DVC_NO_ANALYTICS": "1"}
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=tmp_path, env=env, check=True)
    out = subprocess.run([dvc, "repro", "--keep-going"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert not list(tmp_path.glob("pwned*"))
    assert "teacher name" in out.stdout + out.stderr


@pytest.mark.parametrize("text,expected", [
    ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"), ("+1+cmd", "'+1+cmd"), ("@SUM(A1)", "'@SUM(A1)"),
    ("-x", "'-x"), ("\t=x", "'\t=x"), ("-", "-"), ("-0.25", "-0.25"), ("+3e-4", "+3e-4"), ("hifigan", "hifigan"),
    ("a=b", "a=b"), ("", "")])
def test_formula_cells_are_neutralised_and_numbers_kept(text, expected):
    assert neutralise_formula(text) == expected


def test_eer_csv_carries_no_formula_from_a_system_name(tmp_path):
    clips = tiny_clip_table(tmp_path / "audio", n_speakers=4, clips_per_speaker=2)
    clips.loc[clips["label"] == "spoof", "system"] = "=cmd|' /C calc'!A0"
    clips = validate_clips(clips)
    sets = evaluate.build_eval_sets(clips, ("seen_attacks",))
    rng = np.random.default_rng(0)
    scores = pd.Series(rng.standard_normal(len(clips)), index=clips["clip_id"])
    metrics, table, scored = evaluate.run(sets, scores)
    evaluate.write_outputs(metrics, table, scored, tmp_path / "reports")
    text = (tmp_path / "reports" / "eer.csv").read_text()
    assert ",'=cmd|" in text and ",=cmd" not in text
    assert csv_safe(pd.DataFrame({"s": ["=x"], "n": [1]}))["s"].tolist() == ["'=x"]


def test_score_tsv_escapes_a_leading_formula_character_and_reads_it_back(tmp_path):
    ids = ["=cmd|' /C calc'!A0", "+x", "-y", "@z", "plain", "a=b"]
    lines = format_scores(ids, [0.1] * len(ids))
    assert all(not line.startswith(("=", "+", "-", "@")) for line in lines)
    assert escape_field("=x") == "\\=x" and escape_field("a=b") == "a=b"
    (tmp_path / "s.tsv").write_text("\n".join(lines) + "\n")
    assert list(read_scores(tmp_path / "s.tsv")) == ids


def test_corpus_index_always_runs_upstream_of_the_teacher_stages():
    """The guard above protects `dvc repro` because corpus_index always runs, and before pretrain and embed."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert stages["corpus_index"].get("always_changed") is True
    index_out = "data/corpus_index.json"
    assert index_out in str(stages["corpus_index"]["outs"]) and index_out in stages["prepare"]["deps"]
    prepare_outs = str(stages["prepare"]["outs"])
    for name in ("pretrain", "embed"):
        assert any(dep in prepare_outs for dep in stages[name]["do"]["deps"] if dep.startswith("data/")), name
