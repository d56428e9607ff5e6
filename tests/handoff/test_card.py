"""The model card: train writes it with dev facts; the model export fills its test EERs from evaluate's
metrics.json, number for number; licences per corpus."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline import evaluate, export, train
from pipeline.handoff.card import NOT_EVALUATED, render_card
from pipeline.handoff.licences import LICENCES, data_licences, read_sources_record
from pipeline.schema import validate_clips, write_clips
from tests.conftest import tiny_clip_table

PARAMS = {"seed": 1, "audio": {"sample_rate": 16000}, "runtime": {"device": "cpu", "threads": 1},
          "prepare": {"corpora": [], "vad_trim": False},
          "train": {"arch": "resnet", "width": 4, "embedding_dim": 8, "epochs": 2, "steps_per_epoch": 2,
                    "batch_size": 8, "crop_s": 0.5, "eval_s": 0.5},
          "evaluate": {"batch_size": 8, "eval_s": 0.5, "sets": ["seen_attacks", "paradigm"], "bootstrap": 50,
                       "conditions": ["g711_mulaw"]}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A trained detector (train.main) and evaluate's reports (evaluate.main) on a tiny table."""
    root = tmp_path_factory.mktemp("card")
    clips = validate_clips(tiny_clip_table(root / "clips", n_speakers=4, clips_per_speaker=3))
    write_clips(clips, root / "clips.parquet")
    for split in ("train", "dev"):
        rows = clips[clips["split"] == split].assign(teacher="t", distance=0.0, cluster=0, sampler="full")
        write_clips(rows, root / f"{split}.parquet", groups=("manifest",))
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    params = ["--params", str(root / "params.yaml")]
    assert train.main([*params, "--manifest", str(root / "train.parquet"), "--dev", str(root / "dev.parquet"),
                       "--out", str(root / "detector")]) == 0
    assert evaluate.main([*params, "--model", str(root / "detector"), "--clips", str(root / "clips.parquet"),
                          "--out", str(root / "reports")]) == 0
    return root


def test_the_exported_cards_numbers_equal_metrics_json(trained, tmp_path):
    out = tmp_path / "handoff"
    assert export.main(["--model", str(trained / "detector"), "--metrics", str(trained / "reports" / "metrics.json"),
                        "--out", str(out)]) == 0
    metrics = json.loads((trained / "reports" / "metrics.json").read_text())
    train_metrics = json.loads((trained / "detector" / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    test = config["card"]["test"]
    assert test["status"] == "evaluated" and set(test["sets"]) == set(metrics["eer"])
    for name, facts in test["sets"].items():
        assert facts == {"eer": metrics["eer"][name], "lo": metrics["eer_ci"][name]["lo"],
                         "hi": metrics["eer_ci"][name]["hi"], "n_clips": metrics["n_clips"][name]}
    assert test["conditions"] == metrics["eer_condition"] and test["ci"] == metrics["ci"]
    assert config["dev"]["eer"] == train_metrics["dev_eer"] and config["dev"]["threshold"] == train_metrics[
        "dev_threshold"]
    text = (out / "MODEL_CARD.md").read_text()
    assert text == render_card(config)
    for name, eer in metrics["eer"].items():
        assert f"| {name} | {100 * eer:.2f}% |" in text
    assert (out / "test_metrics.json").read_bytes() == (trained / "reports" / "metrics.json").read_bytes()
    assert os.path.samefile(out / "model.pt", trained / "detector" / "model.pt")       # hard-linked, not changed
    # train's own folder keeps its card: evaluate and the export never write into it
    original = json.loads((trained / "detector" / "config.json").read_text())
    assert original["card"]["test"] == NOT_EVALUATED and "not evaluated yet" in (
        trained / "detector" / "MODEL_CARD.md").read_text()


def test_a_model_export_without_metrics_keeps_not_evaluated_and_a_folder_without_a_card_is_refused(trained, tmp_path,
                                                                                                     capsys):
    assert export.main(["--model", str(trained / "detector"), "--link", "copy", "--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["card"]["test"] == NOT_EVALUATED
    old = tmp_path / "old"
    old.mkdir()
    (old / "model.pt").write_bytes((trained / "detector" / "model.pt").read_bytes())
    (old / "config.json").write_text(json.dumps({"model": {"arch": "resnet"}}))
    assert export.main(["--model", str(old), "--out", str(tmp_path / "b")]) == 2
    assert "no model card" in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_every_adapter_has_a_licence_and_unknown_corpora_say_so():
    from pipeline.corpora import ADAPTERS

    named = set(LICENCES) | {"demo", "asvspoof2021"}  # demo: its SOURCES; asvspoof2021: one entry per track
    assert set(ADAPTERS) - {"folder"} <= named
    assert {"asvspoof2021_la", "asvspoof2021_df"} <= set(LICENCES)
    rows = pd.DataFrame({"corpus": ["mlaad", "mine", "mine"], "source": ["a", "b", "c"]})
    got = {e["corpus"]: e for e in data_licences(rows)}
    assert got["mlaad"]["non_commercial"] and got["mine"]["clips"] == 2 and "not known" in got["mine"]["licence"]


def test_demo_licences_come_from_its_sources_record(tmp_path):
    root = tmp_path / "raw" / "demo"
    root.mkdir(parents=True)
    (root / "SOURCES").write_text("# head\n\npackage: pkg-a\nversion: 1\nlicence: CC-BY-SA-3.0\norigin: x\nclips: 2\n"
                                  "\npackage: pkg-b\nversion: 2\nlicence: CC-BY-NC-4.0\norigin: y\nclips: 1\n")
    (root / "metadata.csv").write_text("file,source\na.wav,pkg-a\nb.wav,pkg-a\nc.wav,pkg-b\n")
    assert read_sources_record(root / "SOURCES") == {"pkg-a": "CC-BY-SA-3.0", "pkg-b": "CC-BY-NC-4.0"}
    rows = pd.DataFrame({"corpus": ["demo"] * 3, "source": [str(root / f) for f in ("a.wav", "b.wav", "c.wav")]})
    got = data_licences(rows)
    assert [(e["corpus"], e["clips"], e["licence"], e["non_commercial"]) for e in got] == [
        ("demo/pkg-a", 2, "CC-BY-SA-3.0", False), ("demo/pkg-b", 1, "CC-BY-NC-4.0", True)]
