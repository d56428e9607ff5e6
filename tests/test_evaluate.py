"""evaluate stage: eval-set construction, EER tables, and the files it writes from a tiny detector."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline import evaluate
from pipeline.logs import StageError
from pipeline.models import build_model, save_checkpoint
from pipeline.schema import validate_clips, write_clips
from tests.conftest import tiny_clip_table


def _with_extra_sets(clips: pd.DataFrame) -> pd.DataFrame:
    """The tiny table plus codec test spoofs, eval:tts spoofs and an eval:itw corpus set (sharing audio files)."""
    test_spoof = clips[(clips["split"] == "test") & (clips["label"] == "spoof")]
    codec = test_spoof.assign(clip_id=test_spoof["clip_id"] + "_codec", paradigm="codec", system="encodec_6kbps")
    tts = test_spoof.assign(clip_id=test_spoof["clip_id"] + "_tts", paradigm="tts", system="piper_joe",
                            split="eval:tts", parent_id=None)
    dev = clips[clips["split"] == "dev"]
    itw = dev.assign(clip_id=dev["clip_id"] + "_itw", split="eval:itw", corpus="itw",
                     system=np.where(dev["label"] == "spoof", "itw", "-"), paradigm=np.where(
                         dev["label"] == "spoof", "corpus", "bonafide"), parent_id=None)
    return validate_clips(pd.concat([clips, codec, tts, itw], ignore_index=True))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> pd.DataFrame:
    return _with_extra_sets(validate_clips(tiny_clip_table(tmp_path_factory.mktemp("clips"))))


def test_build_eval_sets_makes_every_kind(clips):
    sets = evaluate.build_eval_sets(clips, ("test", "tts", "leave_out", "corpus"))
    assert set(sets) == {"test", "tts", "paradigm_vocoder", "paradigm_codec", "itw"}   # nothing known: all seen
    test = sets["test"]
    assert set(test["split"]) == {"test"} and set(test.loc[test["label"] == "spoof", "paradigm"]) == {"vocoder",
                                                                                                      "codec"}
    tts = sets["tts"]
    assert set(tts.loc[tts["label"] == "spoof", "split"]) == {"eval:tts"}
    assert set(tts.loc[tts["label"] == "bonafide", "split"]) == {"test"}
    # itw has its own bona fide rows, so the test bona fide are not used there
    assert set(sets["itw"]["split"]) == {"eval:itw"}
    assert set(sets["paradigm_codec"].loc[lambda d: d["label"] == "spoof", "paradigm"]) == {"codec"}


def test_sets_are_named_for_what_the_detector_saw(clips):
    trained = {"train_systems": ["noise"], "train_paradigms": ["vocoder"]}
    sets = evaluate.build_eval_sets(clips, ("seen_attacks", "unseen_attacks", "paradigm", "corpus"), trained)
    # codec was not in training: its set is a true leave-one-paradigm-out set; vocoder's is a paradigm set
    assert set(sets) == {"seen_attacks", "unseen_attacks", "paradigm_vocoder", "leave_out_codec", "itw"}
    seen = sets["seen_attacks"]
    assert set(seen.loc[seen["label"] == "spoof", "system"]) == {"noise"}
    unseen = sets["unseen_attacks"]                 # attack-only eval splits; itw has its own bona fide
    assert set(unseen.loc[unseen["label"] == "spoof", "split"]) == {"eval:tts"}
    assert set(unseen.loc[unseen["label"] == "bonafide", "split"]) == {"test"}
    # a system the detector trained on is not an unseen attack, even in an eval split
    trained_on_piper = {**trained, "train_systems": ["noise", "piper_joe"]}
    assert "unseen_attacks" not in evaluate.build_eval_sets(clips, ("unseen_attacks",), trained_on_piper)


def test_a_set_without_spoofs_is_skipped_with_a_warning(clips, caplog):
    no_tts = clips[clips["split"] != "eval:tts"]
    sets = evaluate.build_eval_sets(no_tts, ("test", "tts", "nosuch"))
    assert set(sets) == {"test"}
    assert "tts" in caplog.text and "nosuch" in caplog.text


def test_corpus_set_without_own_bonafide_borrows_the_test_bonafide(clips):
    no_bona = clips[~((clips["split"] == "eval:itw") & (clips["label"] == "bonafide"))]
    itw = evaluate.build_eval_sets(no_bona, ("itw",))["itw"]
    assert set(itw.loc[itw["label"] == "bonafide", "split"]) == {"test"}


def test_run_gives_eers_per_set_system_and_pooled(clips):
    sets = evaluate.build_eval_sets(clips, ("test", "tts", "leave_out", "corpus"))
    # Separable except for codec, whose spoofs score like bona fide.
    scores = pd.Series(np.where(clips["label"] == "bonafide", 1.0, -1.0), index=clips["clip_id"].to_numpy())
    scores[clips["paradigm"].eq("codec").to_numpy()] = 5.0
    metrics, table, scored = evaluate.run(sets, scores, seen_paradigms=["vocoder"], n_boot=50, seed=3)
    assert metrics["eer"]["paradigm_vocoder"] == 0.0 and metrics["eer"]["tts"] == 0.0
    assert metrics["eer"]["paradigm_codec"] == 1.0
    assert 0.0 < metrics["eer"]["pooled"] < 1.0
    assert metrics["eer_by_system"]["noise"] == 0.0 and metrics["eer_by_system"]["encodec_6kbps"] == 1.0
    assert metrics["paradigm_seen"] == {"vocoder": True, "codec": False}
    assert metrics["n_clips"]["test"] == len(sets["test"])
    assert list(table.columns) == ["set", "condition", "system", "paradigm", "n_bonafide", "n_spoof", "eer",
                                   "threshold", "eer_lo", "eer_hi", "min_dcf", "act_dcf", "cllr"]
    assert set(table["condition"]) == {"clean"}
    # a 95% bootstrap CI on every row (sets and systems), in eer.csv and metrics.json alike, around the EER
    assert (table["eer_lo"] <= table["eer"] + 1e-9).all() and (table["eer"] <= table["eer_hi"] + 1e-9).all()
    assert table[["eer_lo", "eer_hi", "min_dcf", "act_dcf", "cllr"]].notna().all().all()
    # ASVspoof 5 metrics per set in metrics.json, the same numbers as the set rows of eer.csv
    for key in ("min_dcf", "act_dcf", "cllr"):
        per_set = table[table["system"] == "all"].set_index("set")[key]
        assert metrics[key] == pytest.approx(per_set.to_dict())
    assert metrics["dcf"] == {"p_spoof": 0.05, "c_miss": 1.0, "c_fa": 10.0,
                              "act_threshold": pytest.approx(-np.log(0.95 / 0.5))}
    assert metrics["min_dcf"]["paradigm_vocoder"] == 0.0 and metrics["min_dcf"]["paradigm_codec"] == 1.0
    assert set(metrics["eer_ci"]) == set(metrics["eer"]) and metrics["ci"]["bootstrap"] == 50
    lo, hi = metrics["eer_ci"]["pooled"]["lo"], metrics["eer_ci"]["pooled"]["hi"]
    assert lo < metrics["eer"]["pooled"] < hi or lo <= metrics["eer"]["pooled"] <= hi
    assert evaluate.run(sets, scores, n_boot=50, seed=3)[0]["eer_ci"] == metrics["eer_ci"]   # seeded
    assert "eer_ci" not in evaluate.run(sets, scores)[0]                                       # n_boot 0: none
    assert set(table.loc[table["system"] == "all", "set"]) == set(sets) | {"pooled"}
    assert (table.loc[table["system"] == "all", "paradigm"] == "all").all()
    codec = table[(table["set"] == "test") & (table["system"] == "encodec_6kbps")]
    assert list(codec["paradigm"]) == ["codec"] and float(codec["eer"].iloc[0]) == 1.0
    # metrics.json and eer.csv are the same numbers: the per-set EERs and the non-leave_out per-system ones
    for name, value in metrics["eer"].items():
        assert table.loc[(table["set"] == name) & (table["system"] == "all"), "eer"].item() == value


def test_run_drops_unscored_clips_and_refuses_nothing_left(clips):
    sets = evaluate.build_eval_sets(clips, ("test",))
    only_bona = pd.Series({cid: 0.0 for cid in sets["test"].loc[sets["test"]["label"] == "bonafide", "clip_id"]})
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate.run(sets, only_bona)


def _write_detector(path: Path) -> None:
    torch.manual_seed(0)
    model = build_model({"arch": "resnet", "width": 4, "embedding_dim": 8, "sample_rate": 16000}).eval()
    save_checkpoint(model, {"sample_rate": 16000, "train_paradigms": ["vocoder"]}, path / "model.pt")


def _params(tmp_path: Path, **evaluate_kw) -> Path:
    params = {"seed": 1, "audio": {"sample_rate": 16000}, "runtime": {"device": "cpu", "threads": 1},
              "evaluate": {"batch_size": 8, "eval_s": 0.5, "sets": ["seen_attacks", "unseen_attacks", "paradigm",
                                                                     "corpus"], "bootstrap": 20, **evaluate_kw}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_main_writes_metrics_scores_csv_and_plots(clips, tmp_path):
    _write_detector(tmp_path / "detector")
    write_clips(clips, tmp_path / "clips.parquet")
    out = tmp_path / "reports"
    rc = evaluate.main(["--params", str(_params(tmp_path)), "--model", str(tmp_path / "detector"),
                        "--clips", str(tmp_path / "clips.parquet"), str(tmp_path / "missing_recon.parquet"),
                        "--out", str(out)])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # the detector trained on vocoder only: codec is a true leave-out set
    assert set(metrics["eer"]) == {"seen_attacks", "unseen_attacks", "paradigm_vocoder", "leave_out_codec", "itw",
                                   "pooled"}
    assert all(0.0 <= v <= 1.0 for v in metrics["eer"].values())
    assert metrics["paradigm_seen"] == {"vocoder": True, "codec": False}
    assert set(metrics["eer_ci"]) == set(metrics["eer"])
    assert metrics["n_clips"]["seen_attacks"] == metrics["n_clips"]["paradigm_vocoder"]   # codec is not "seen"
    lines = (out / "scores" / "unseen_attacks.txt").read_text().splitlines()
    assert len(lines) == metrics["n_clips"]["unseen_attacks"]
    clip_id, score = lines[0].split(" ")
    assert clip_id in set(clips["clip_id"]) and np.isfinite(float(score))
    table = pd.read_csv(out / "eer.csv")
    assert {"all", "noise", "piper_joe"} <= set(table["system"])
    det = pd.read_csv(out / "plots" / "det.csv")
    assert list(det.columns) == ["set", "far", "frr"] and det["far"].between(0, 1).all()
    assert (out / "plots" / "det.png").stat().st_size > 1000
    assert (out / "plots" / "score_hist.png").stat().st_size > 1000


def test_unreadable_clips_are_rejects_until_too_many(clips, tmp_path):
    _write_detector(tmp_path / "detector")
    bad_file = tmp_path / "not_audio.flac"
    bad_file.write_text("this is not audio")
    broken = clips.copy()
    broken.loc[broken["split"] == "eval:itw", "path"] = str(bad_file)
    write_clips(broken, tmp_path / "clips.parquet")
    argv = ["--model", str(tmp_path / "detector"), "--clips", str(tmp_path / "clips.parquet"),
            "--out", str(tmp_path / "reports")]
    assert evaluate.main(["--params", str(_params(tmp_path, max_reject_fraction=0.5)), *argv]) == 0
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert "itw" not in metrics["eer"] and metrics["n_rejected"] == 6
    with pytest.raises(StageError, match="could not be read"):
        evaluate.main(["--params", str(_params(tmp_path, max_reject_fraction=0.01)), *argv])


def test_unknown_param_is_an_error():
    with pytest.raises(ValueError, match="unknown keys"):
        evaluate.EvaluateParams.from_params({"set": ["test"]})
    with pytest.raises(ValueError, match="evaluate.precision"):
        evaluate.EvaluateParams.from_params({"precision": "half"})


# ---------------------------------------------------------------- channel conditions


def test_conditions_score_both_classes_through_the_channel_and_add_rows(clips, tmp_path, monkeypatch):
    _write_detector(tmp_path / "detector")
    write_clips(clips, tmp_path / "clips.parquet")
    seen: list[str] = []
    real = evaluate.condition_transform

    def spy(condition, sample_rate):
        fn = real(condition, sample_rate)
        if fn is None:
            return None
        return lambda wave, clip_id: (seen.append(clip_id), fn(wave, clip_id))[1]

    monkeypatch.setattr(evaluate, "condition_transform", spy)
    argv = ["--model", str(tmp_path / "detector"), "--clips", str(tmp_path / "clips.parquet")]
    params = _params(tmp_path, conditions=["g711_mulaw", "gsm_fr"])
    assert evaluate.main(["--params", str(params), *argv, "--out", str(tmp_path / "a")]) == 0
    labels = clips.set_index("clip_id")["label"]
    assert {labels[c] for c in seen} == {"bonafide", "spoof"}  # a channel goes to both classes
    table = pd.read_csv(tmp_path / "a" / "eer.csv")
    assert list(table.columns[:3]) == ["set", "condition", "system"]
    assert set(table["condition"]) == {"clean", "g711_mulaw", "gsm_fr"}
    whole = table[table["system"] == "all"].pivot(index="set", columns="condition", values="eer")
    assert whole.notna().all().all()
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert set(metrics["eer_condition"]) == {"g711_mulaw", "gsm_fr"}
    assert set(metrics["eer_condition"]["gsm_fr"]) == set(metrics["eer"])
    assert (tmp_path / "a" / "scores" / "unseen_attacks.gsm_fr.txt").is_file()
    # deterministic per clip: a second run writes the same bytes
    assert evaluate.main(["--params", str(params), *argv, "--out", str(tmp_path / "b")]) == 0
    for name in ("eer.csv", "metrics.json", "scores/seen_attacks.g711_mulaw.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_a_condition_that_is_no_channel_is_refused(clips, tmp_path):
    _write_detector(tmp_path / "detector")
    write_clips(clips, tmp_path / "clips.parquet")
    path = _params(tmp_path, conditions=["mp3_16kbps"])
    params = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**params, "roles": {"mp3_16kbps": "spoof"}}))
    from pipeline.params import ConfigError

    with pytest.raises(ConfigError, match="mp3_16kbps has role spoof"):
        evaluate.main(["--params", str(path), "--model", str(tmp_path / "detector"), "--clips",
                       str(tmp_path / "clips.parquet"), "--out", str(tmp_path / "r")])


def test_the_dev_set_is_every_dev_clip_and_stays_out_of_pooled(clips):
    sets = evaluate.build_eval_sets(clips, ("test", "dev"))
    dev = sets["dev"]
    assert set(dev["split"]) == {"dev"} and set(dev["label"]) == {"bonafide", "spoof"}
    assert len(dev) == (clips["split"] == "dev").sum()
    scores = pd.Series(np.where(clips["label"] == "bonafide", 1.0, -1.0), index=clips["clip_id"].to_numpy())
    scores[(clips["split"] == "dev").to_numpy()] = 0.0                    # dev: no separation at all
    with_dev, _, _ = evaluate.run(sets, scores, seen_paradigms=["vocoder"])
    without, _, _ = evaluate.run({"test": sets["test"]}, scores, seen_paradigms=["vocoder"])
    assert with_dev["eer"]["dev"] == 0.5 and with_dev["eer"]["test"] == 0.0
    assert with_dev["eer"]["pooled"] == without["eer"]["pooled"] == 0.0
    assert with_dev["n_clips"]["pooled"] == without["n_clips"]["pooled"]
    assert with_dev["eer_by_system"] == without["eer_by_system"]
