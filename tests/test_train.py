"""train stage: a tiny separable fixture reaches a low dev EER with every objective; outputs and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline import train
from pipeline.models import load_checkpoint
from pipeline.schema import validate_clips, write_clips
from tests.conftest import tiny_clip_table

TINY = {"arch": "resnet", "width": 4, "embedding_dim": 16, "epochs": 4, "steps_per_epoch": 4, "batch_size": 8,
        "crop_s": 0.5, "eval_s": 1.0, "patience": 4, "racl": {"layers": ["layer1", "penultimate"]},
        "supcon": {"queue_size": 16, "warmup_steps": 2, "head_epochs": 2, "temperature": 0.1}}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> pd.DataFrame:
    return validate_clips(tiny_clip_table(tmp_path_factory.mktemp("clips"), n_speakers=4, clips_per_speaker=4))


class LiveRecorder:
    """Stands in for dvclive.Live: one dict of logged metrics per step (epoch)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = [{}]

    def log_metric(self, name: str, value: float) -> None:
        self.rows[-1][name] = value

    def next_step(self) -> None:
        self.rows.append({})


@pytest.mark.parametrize("objective", ["ce", "bce", "supcon", "racl"])
def test_every_objective_reaches_a_low_dev_eer(clips, objective):
    torch.manual_seed(0)
    p = train.TrainParams.from_params({**TINY, "objective": objective})
    live = LiveRecorder()
    model, summary = train.run(clips[clips["split"] == "train"], clips[clips["split"] == "dev"], p,
                               sample_rate=16000, seed=0, device=torch.device("cpu"), live=live)
    assert summary["dev_eer"] <= 0.25, summary
    assert summary["steps"] >= p.steps_per_epoch
    assert not model.training
    rows = live.rows[:-1]
    assert len(rows) == summary["epochs"] and summary["steps"] == summary["epochs"] * p.steps_per_epoch
    encoder = [r["dev/eer"] for r in rows if "train/loss" in r]
    assert 1 <= len(encoder) <= p.epochs
    if objective == "supcon":  # two stages: encoder epochs, then head epochs; the best is the head's
        head = [r["dev/eer"] for r in rows if "head/loss" in r]
        assert len(encoder) + len(head) == len(rows) and 1 <= len(head) <= TINY["supcon"]["head_epochs"]
        assert summary["best_epoch"] == len(encoder) + int(np.argmin(head))
        assert summary["dev_eer"] == min(head)
        assert summary["dev_eer_encoder_ncm"] == min(encoder)
    else:
        assert len(encoder) == len(rows)
        assert summary["best_epoch"] == int(np.argmin(encoder)) and summary["dev_eer"] == min(encoder)


def _manifest(clips: pd.DataFrame) -> pd.DataFrame:
    return clips.assign(teacher="t", distance=0.0, cluster=0, sampler="full")


def test_main_writes_checkpoint_config_metrics_and_dvclive(clips, tmp_path):
    write_clips(_manifest(clips[clips["split"] == "train"]), tmp_path / "train.parquet", groups=("manifest",))
    write_clips(_manifest(clips[clips["split"] == "dev"]), tmp_path / "dev.parquet", groups=("manifest",))
    params = {"seed": 3, "audio": {"sample_rate": 16000}, "runtime": {"device": "cpu", "threads": 1},
              "prepare": {"corpora": [], "vad_trim": True, "lowpass_hz": 4000},
              "train": {**TINY, "epochs": 2, "seed": 5, "augment": {"enabled": True, "rawboost_prob": 0.5}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "detector"
    rc = train.main(["--params", str(tmp_path / "params.yaml"), "--manifest", str(tmp_path / "train.parquet"),
                     "--dev", str(tmp_path / "dev.parquet"), "--out", str(out)])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"dev_eer", "epochs", "steps"} and 0.0 <= metrics["dev_eer"] <= 1.0
    assert "seconds" not in metrics     # the run time is logged: a DVC output must not change on every re-run
    config = json.loads((out / "config.json").read_text())
    # train.seed wins over the global seed, recorded once at the top level
    assert config["train"]["width"] == 4 and config["seed"] == 5 and "seed" not in config["train"]
    assert config["train_paradigms"] == ["vocoder"]
    model, ckpt_config = load_checkpoint(out)
    assert ckpt_config["arch"] == "resnet" and ckpt_config["train"]["objective"] == "ce"
    # the preprocessing chain that `score` applies to raw inputs, recorded in both places
    chain = {"version": 2, "sample_rate": 16000, "vad_trim": True, "max_duration_s": 10.0, "lowpass_hz": 4000}
    assert config["chain"] == chain and ckpt_config["chain"] == chain
    assert config["train"]["augment"]["enabled"] is True and ckpt_config["train"]["augment"]["rawboost_prob"] == 0.5
    assert model(torch.zeros(2, 16000)).shape == (2, 2)
    assert any((out / "dvclive").rglob("dev/eer.tsv"))
    _check_card(out, metrics, config, ckpt_config, clips, tmp_path)


def _check_card(out: Path, metrics: dict, config: dict, ckpt_config: dict, clips: pd.DataFrame, tmp_path: Path):
    """The card's numbers are metrics.json's; the dev threshold is the EER point of the dev clips' scores."""
    from pipeline.detector.inference import score_clips
    from pipeline.handoff.card import file_sha256
    from pipeline.handoff.licences import UNKNOWN
    from pipeline.metrics import compute_eer

    assert config["dev"] == ckpt_config["dev"] == {"eer": metrics["dev_eer"], "threshold": metrics["dev_threshold"],
                                                   "n_clips": metrics["n_dev"]}
    model, _ = load_checkpoint(out)
    dev = clips[clips["split"] == "dev"]
    s = score_clips(model, dev, 8, 16000, TINY["eval_s"], stage="test")
    assert compute_eer(s.scores[s.labels == 1], s.scores[s.labels == 0]) == (metrics["dev_eer"],
                                                                             metrics["dev_threshold"])
    card = config["card"]
    assert card["data"]["files"]["manifest"]["sha256"] == file_sha256(tmp_path / "train.parquet")
    assert card["data"]["clips"] == {"dev_bonafide": 4, "dev_spoof": 4, "train_bonafide": 8, "train_spoof": 8}
    assert card["test"]["status"] == "not evaluated yet" and card["params"]["train"]["width"] == 4
    assert card["licences"] == [{"corpus": "tiny", "clips": 24, "licence": UNKNOWN, "url": "", "non_commercial": False}]
    assert card["preprocessing"] == config["chain"] and card["init"] is None
    text = (out / "MODEL_CARD.md").read_text()
    assert f"{100 * metrics['dev_eer']:.2f}%" in text and repr(metrics["dev_threshold"]) in text
    assert card["data"]["files"]["manifest"]["sha256"] in text and "not evaluated yet" in text


def test_exclude_paradigms_drops_spoofs_and_refuses_an_empty_class(clips):
    vocoder = clips[clips["split"] == "train"]
    codec = vocoder[vocoder["label"] == "spoof"].assign(clip_id=lambda d: d["clip_id"] + "_codec", paradigm="codec",
                                                        system="encodec_6kbps")
    train_rows = pd.concat([vocoder, codec], ignore_index=True)
    kept = train.select_training_rows(train_rows, ())
    assert len(kept) == len(train_rows)
    left = train.select_training_rows(train_rows, ("vocoder",))
    spoofs = left[left["label"] == "spoof"]
    assert set(spoofs["paradigm"]) == {"codec"} and sorted(spoofs["clip_id"]) == sorted(codec["clip_id"])
    assert (left["label"] == "bonafide").sum() == (train_rows["label"] == "bonafide").sum()
    with pytest.raises(ValueError, match="no spoof rows"):
        train.select_training_rows(train_rows, ("vocoder", "codec"))
    with pytest.raises(ValueError, match="no spoof rows"):
        train.select_training_rows(vocoder, ("vocoder",))


def test_dev_subset_is_stratified_and_fixed(clips):
    a = train.select_dev_rows(clips, 10, seed=1)
    b = train.select_dev_rows(clips, 10, seed=1)
    assert len(a) == 10 and a["clip_id"].tolist() == b["clip_id"].tolist()
    assert set(a["label"]) == {"bonafide", "spoof"}


def test_bad_params_give_clear_errors():
    with pytest.raises(ValueError, match="unknown keys"):
        train.TrainParams.from_params({"epoch": 3})
    with pytest.raises(ValueError, match="objective"):
        train.TrainParams.from_params({"objective": "hinge"})
    with pytest.raises(ValueError, match="head_epochs"):
        train.TrainParams.from_params({"objective": "supcon", "supcon": {"head_epochs": 0}})


def test_dev_without_both_classes_is_refused(clips):
    p = train.TrainParams.from_params(TINY)
    dev = clips[(clips["split"] == "dev") & (clips["label"] == "bonafide")]
    with pytest.raises(ValueError, match="dev set"):
        train.run(clips[clips["split"] == "train"], dev, p, sample_rate=16000, seed=0, device=torch.device("cpu"))


def test_missing_manifest_is_a_clear_error(tmp_path: Path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"audio": {"sample_rate": 16000}, "train": TINY}))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train.main(["--params", str(tmp_path / "params.yaml"), "--manifest", str(tmp_path / "nope.parquet"),
                    "--dev", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "out")])


def test_same_seed_gives_the_same_model(clips):
    p = train.TrainParams.from_params({**TINY, "epochs": 1, "steps_per_epoch": 2})
    results = []
    for _ in range(2):
        torch.manual_seed(5)  # what configure_torch does in main
        model, summary = train.run(clips[clips["split"] == "train"], clips[clips["split"] == "dev"], p,
                                   sample_rate=16000, seed=5, device=torch.device("cpu"))
        results.append((model.classifier.weight.detach().clone(), summary["dev_eer"]))
    assert torch.equal(results[0][0], results[1][0]) and results[0][1] == results[1][1]
