"""Tests for the pretrain stage: a tiny teacher learns, writes its files, adopts checkpoints, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from pipeline import pretrain
from pipeline.handoff.card import file_sha256
from pipeline.logs import StageError
from pipeline.models import CheckpointError, build_model, load_checkpoint, save_checkpoint
from pipeline.params import ConfigError, TeacherParams
from pipeline.pretrain import PretrainParams
from pipeline.schema import write_clips
from tests.conftest import tiny_clip_table

TEACHER_KEYS = {"arch": "resnet", "frontend": "logmel", "width": 4, "embedding_dim": 8, "n_bins": 32,
                "pool": {"paradigms": ["bonafide", "vocoder"]}, "checkpoint": None}


def teacher(**over) -> TeacherParams:
    """The test teacher's params `teachers.t` (with keys replaced), parsed as the stage parses them."""
    return TeacherParams.from_params({**TEACHER_KEYS, **over}, where="teachers.t", name="t")


TEACHER = teacher()
FAST = PretrainParams(epochs=6, batch_size=4, crop_s=0.5, eval_s=0.5, lr=0.01, patience=0, live=False)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return tiny_clip_table(tmp_path_factory.mktemp("audio"), n_speakers=4, clips_per_speaker=4, seconds=1.0)


def test_a_tiny_teacher_lowers_its_loss_and_separates_the_classes(tmp_path, clips):
    torch.manual_seed(0)
    m = pretrain.run("t", clips, TEACHER, FAST, 16000, 0, tmp_path / "t", torch.device("cpu"))
    assert m["final_epoch_loss"] < m["first_epoch_loss"]
    assert m["dev_eer"] is not None and m["dev_eer"] <= 0.25
    assert m["n_train"] == 16 and m["n_dev"] == 8 and m["source"] == "trained"
    assert m["epochs_run"] == 6
    saved = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert not {"seconds", "step_s"} & set(saved)    # timings are logged: the output is the same on every re-run
    assert saved["dev_eer"] == m["dev_eer"]
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    assert config["model"]["arch"] == "resnet" and config["pool"] == TEACHER.pool
    model, cfg = load_checkpoint(tmp_path / "t", expected_arch="resnet")
    assert cfg["teacher"] == "t" and cfg["width"] == 4
    # the card's numbers are metrics.json's (config.json `dev`, in the checkpoint too, for score --threshold dev)
    assert config["dev"] == cfg["dev"] == {"eer": saved["dev_eer"], "threshold": saved["dev_threshold"],
                                           "n_clips": saved["n_dev"]}
    assert config["card"]["kind"] == "teacher" and config["card"]["data"]["clips"]["train_spoof"] == 8
    assert f"{100 * saved['dev_eer']:.2f}%" in (tmp_path / "t" / "MODEL_CARD.md").read_text()


def test_a_train_split_that_is_not_a_multiple_of_the_batch_trains(tmp_path, clips):
    p = PretrainParams(epochs=1, batch_size=5, crop_s=0.25, eval_s=0.25, live=False)  # 16 = 3 x 5 + 1
    m = pretrain.run("t", clips, TEACHER, p, 16000, 0, tmp_path, torch.device("cpu"))
    assert m["steps"] == 3


def test_training_is_reproducible_for_a_seed(tmp_path, clips):
    p = PretrainParams(epochs=1, batch_size=4, crop_s=0.25, eval_s=0.25, live=False, max_steps_per_epoch=2)
    outs = []
    for k in range(2):
        torch.manual_seed(5)
        pretrain.run("t", clips, TEACHER, p, 16000, 5, tmp_path / str(k), torch.device("cpu"))
        outs.append(load_checkpoint(tmp_path / str(k))[0].state_dict())
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])


def test_class_weighted_loss_and_early_stopping(tmp_path, clips, monkeypatch):
    dev_values = iter([0.3, 0.2, 0.25, 0.4, 0.1])
    monkeypatch.setattr(pretrain, "dev_eer", lambda *a, **k: {"dev_eer": next(dev_values), "dev_threshold": 0.0,
                                                               "dev_loss": 1.0})
    p = PretrainParams(epochs=5, batch_size=4, crop_s=0.25, eval_s=0.25, balance="weight", patience=2,
                       live=False, max_steps_per_epoch=1)
    m = pretrain.run("t", clips, TEACHER, p, 16000, 0, tmp_path, torch.device("cpu"))
    assert m["epochs_run"] == 4 and m["best_epoch"] == 2 and m["dev_eer"] == 0.2


def test_a_given_checkpoint_is_adopted_without_training(tmp_path, clips):
    src = save_checkpoint(build_model(TEACHER.model_config(16000)), None, tmp_path / "given" / "model.pt")
    m = pretrain.run("t", clips, teacher(checkpoint=str(src)), FAST, 16000, 0, tmp_path / "t",
                     torch.device("cpu"))
    assert m["source"] == "checkpoint" and "steps" not in m and m["dev_eer"] is not None
    assert (tmp_path / "t" / "model.pt").exists() and (tmp_path / "t" / "config.json").exists()
    # its training audio is not ours: the prepare chain is not claimed for it (score then only resamples)
    assert "chain" not in json.loads((tmp_path / "t" / "config.json").read_text())
    assert "chain" not in load_checkpoint(tmp_path / "t")[1]
    card = json.loads((tmp_path / "t" / "config.json").read_text())["card"]
    assert card["kind"] == "adopted teacher" and card["init"]["dir"] == str(tmp_path / "given")


def test_a_checkpoint_of_the_wrong_architecture_is_a_clear_error(tmp_path, clips):
    src = save_checkpoint(build_model({"arch": "convnext", "width": 4}), None, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="'convnext' model, but architecture 'resnet'"):
        pretrain.run("t", clips, teacher(checkpoint=str(src)), FAST, 16000, 0, tmp_path / "t",
                     torch.device("cpu"))


def test_a_checkpoint_with_another_frontend_is_a_clear_error(tmp_path, clips):
    src = save_checkpoint(build_model({**TEACHER.model_config(16000), "frontend": "lfcc"}), None,
                          tmp_path / "model.pt")
    with pytest.raises(ValueError, match="front end 'lfcc'"):
        pretrain.run("t", clips, teacher(checkpoint=str(src)), FAST, 16000, 0, tmp_path / "t",
                     torch.device("cpu"))


def test_a_pool_without_spoofs_in_train_is_a_clear_error(tmp_path, clips):
    with pytest.raises(StageError, match="teacher t: the pool.s train split has no spoof clips"):
        pretrain.run("t", clips, teacher(pool={"paradigms": ["bonafide"]}), FAST, 16000, 0, tmp_path,
                     torch.device("cpu"))


def test_bad_params_are_clear_errors():
    with pytest.raises(ValueError, match="params pretrain: unknown keys"):
        PretrainParams.from_params({"epoch": 3})
    with pytest.raises(ValueError, match="balance"):
        PretrainParams.from_params({"balance": "oversample"})
    with pytest.raises(ValueError, match="params teachers.t: needs an `arch`"):
        TeacherParams.from_params({"frontend": "lfcc"}, where="teachers.t", name="t")


def test_main_runs_the_stage_from_params_with_a_dvclive_log(tmp_path, clips, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_clips(clips, tmp_path / "clips.parquet")
    params = {"seed": 1, "audio": {"sample_rate": 16000}, "runtime": {"device": "cpu", "threads": 1},
              "teachers": {"t1": TEACHER_KEYS},
              "pretrain": {"epochs": 1, "batch_size": 4, "crop_s": 0.25, "eval_s": 0.25, "max_steps_per_epoch": 2,
                           "augment": {"enabled": True, "rawboost_prob": 1.0, "gain_prob": 1.0}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert pretrain.main(["t1", "--clips", "clips.parquet", "--out", "teachers/t1"]) == 0
    assert json.loads((tmp_path / "teachers/t1/metrics.json").read_text())["epochs_run"] == 1
    assert (tmp_path / "teachers/t1/dvclive/metrics.json").exists()
    assert not (tmp_path / "dvc.yaml").exists()
    chain = {"version": 2, "sample_rate": 16000, "vad_trim": False, "max_duration_s": 10.0, "lowpass_hz": None}
    assert json.loads((tmp_path / "teachers/t1/config.json").read_text())["chain"] == chain
    assert load_checkpoint(tmp_path / "teachers/t1")[1]["chain"] == chain
    files = json.loads((tmp_path / "teachers/t1/config.json").read_text())["card"]["data"]["files"]
    assert files == {"clip table 1": {"path": "clips.parquet", "sha256": file_sha256(tmp_path / "clips.parquet")}}
    with pytest.raises(ConfigError, match=r"teacher 'nobody' is not in params `teachers:`; known: \['t1'\]"):
        pretrain.main(["nobody", "--clips", "clips.parquet", "--out", "x"])
