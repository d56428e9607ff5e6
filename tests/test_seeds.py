"""Seeds per stage: `train.seed` / `sample.seed` / `evaluate.seed` apart from the global seed, and dvc.yaml
wired so that `dvc exp run -S train.seed=N` re-runs only train and what follows it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.params import ConfigError, common_params, stage_seed

ROOT = Path(__file__).resolve().parents[1]


def _stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _paths(items) -> list[str]:
    return [str(next(iter(i)) if isinstance(i, dict) else i) for i in items or []]


def rerun_by_param(key: str) -> set[str]:
    """Stages `dvc repro` re-runs when params key `key` changes: those listing it (or its section), then every
    stage depending on an output of a re-run stage (outputs named literally; foreach stages by their name)."""
    stages = _stages()
    section = key.split(".")[0]
    todo = {n for n, s in stages.items() if {key, section} & set(map(str, s.get("do", s).get("params") or []))}
    done: set[str] = set()
    while todo:
        name = todo.pop()
        done.add(name)
        body = stages[name].get("do", stages[name])
        outs = _paths(body.get("outs")) + _paths(body.get("metrics")) + _paths(body.get("plots"))
        for other, stage in stages.items():
            deps = _paths(stage.get("do", stage).get("deps"))
            hit = any(d == o or d.startswith(o.rstrip("/") + "/") or o.startswith(d.rstrip("/") + "/")
                      for d in deps for o in outs if "${" not in o)
            if hit and other not in done:
                todo.add(other)
    return done


def test_a_train_seed_reruns_only_train_evaluate_report_and_export():
    # export (off by default: then it only writes a note) follows the manifests, the detector and its metrics
    assert rerun_by_param("train.seed") == {"train", "evaluate", "report", "export"}
    assert rerun_by_param("sample.seed") == {"sample", "train", "evaluate", "report", "export"}
    assert rerun_by_param("evaluate.seed") == {"evaluate", "report", "export"}
    assert rerun_by_param("export.formats") == {"export"}


def test_the_seeded_stages_do_not_track_the_global_seed_and_params_set_their_own():
    stages = _stages()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name in ("sample", "train", "evaluate"):
        tracked = set(map(str, stages[name]["params"]))
        assert name in tracked and "seed" not in tracked, name
        # the fallback (null = global seed) would be untracked by dvc: params.yaml keeps the seed explicit,
        # equal to the global one, so today's outputs are unchanged
        assert params[name]["seed"] == params["seed"], name
    assert "seed" in set(map(str, stages["pretrain"]["do"]["params"]))   # the teachers keep the global seed


def test_stage_seed_falls_back_to_the_global_seed():
    common = common_params({"seed": 7})
    assert stage_seed("train.seed", None, common) == 7
    assert stage_seed("train.seed", 3, common) == 3
    with pytest.raises(ConfigError, match="train.seed: expected an integer"):
        stage_seed("train.seed", "x", common)


def test_bad_stage_seeds_are_config_errors():
    from pipeline.evaluate import EvaluateParams
    from pipeline.sample import SampleParams
    from pipeline.train import TrainParams

    for cls, name in ((SampleParams, "sample"), (TrainParams, "train"), (EvaluateParams, "evaluate")):
        assert cls.from_params({"seed": None}).seed is None
        with pytest.raises(ConfigError, match=f"{name}.seed"):
            cls.from_params({"seed": 1.5})
    with pytest.raises(ConfigError, match="evaluate.bootstrap"):
        EvaluateParams.from_params({"bootstrap": -1})
