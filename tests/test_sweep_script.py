"""scripts/sweep.sh queues the documented experiments (dry run: nothing is queued, no DVC needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("git") is None or shutil.which("bash") is None,
                                reason="needs git and bash")


def sweep(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """scripts/sweep.sh with DRY_RUN=1 and `env` in a fresh one-commit git repository."""
    root = tmp_path / f"repo{len(list(tmp_path.iterdir()))}"
    root.mkdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    git_env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
               "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "base"]):
        subprocess.run(cmd, cwd=root, env=git_env, check=True, capture_output=True)
    return subprocess.run(["bash", str(REPO / "scripts" / "sweep.sh")], cwd=root, capture_output=True, text=True,
                          env={**git_env, "DRY_RUN": "1", **env}, timeout=60)


def dry_run(tmp_path: Path, **env: str) -> list[str]:
    res = sweep(tmp_path, **env)
    assert res.returncode == 0, res.stderr
    return [line for line in res.stdout.splitlines() if line.startswith("queue: ")]


def test_default_sweep_is_fifty_runs_and_the_ablation_twenty_more(tmp_path):
    runs = dry_run(tmp_path)
    assert len(runs) == 50 and not any("sample.nc.order" in r for r in runs)   # params without sample.nc still work
    assert sum("sample.method=full" in r for r in runs) == 5                 # full once per seed, never per ratio
    assert not any("sample.ratio=1.0" in r and "method=full" not in r for r in runs)
    ablation = dry_run(tmp_path, ABLATION="1")
    assert len(ablation) == 70
    assert sum("train.exclude_paradigms=[vocoder,codec,diffusion]" in r for r in ablation) == 20


def test_ablation_and_augmentation_can_be_limited_to_some_ratios(tmp_path):
    runs = dry_run(tmp_path, SEEDS="2", ABLATION="1", ABLATION_RATIOS="0.1", AUGMENT="1", AUGMENT_RATIOS="0.1")
    ablation = [r for r in runs if "exclude_paradigms" in r]
    augmented = [r for r in runs if "train.augment.enabled=true" in r]
    # nc at 0.1 and full, two seeds each
    assert len(ablation) == len(augmented) == 4
    assert all("ratio=0.1 " in r or "method=full" in r for r in ablation + augmented)
    assert len(runs) == 2 * 10 + 8


def test_bad_seed_count_is_a_clear_error(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    res = subprocess.run(["bash", str(REPO / "scripts" / "sweep.sh")], cwd=root, capture_output=True, text=True,
                         env={**os.environ, "DRY_RUN": "1", "SEEDS": "0"}, timeout=60)
    assert res.returncode == 2


def test_new_methods_and_nc_orders_are_queued_with_their_params(tmp_path):
    runs = dry_run(tmp_path, SEEDS="1", RATIOS="0.05 0.1", METHODS="nc random margin generator_balanced full",
                   NC_ORDERS="nearest farthest stratified")
    assert len(runs) == (3 + 3) * 2 + 1
    nc = [r for r in runs if "sample.method=nc " in r]
    assert sorted(r.split("sample.nc.order=")[1] for r in nc) == ["farthest"] * 2 + ["nearest"] * 2 + ["stratified"] * 2
    assert sum("sample.method=margin" in r for r in runs) == sum("method=generator_balanced" in r for r in runs) == 2
    assert not any("sample.nc.order" in r for r in runs if "sample.method=nc " not in r)
    assert not any("evaluate.sets" in r for r in runs)
    dev = dry_run(tmp_path, SEEDS="1", RATIOS="0.1", METHODS="nc full", EVAL_SETS="unseen_attacks,dev")
    assert len(dev) == 2 and all(r.endswith("-S evaluate.sets=[unseen_attacks,dev]") for r in dev)
    # one order as a METHODS entry; the ablation follows the report's labels (nc:stratified)
    one = dry_run(tmp_path, SEEDS="1", RATIOS="0.1", METHODS="nc:stratified full", ABLATION="1",
                  ABLATION_METHODS="nc:stratified")
    assert len(one) == 3 and sum("exclude_paradigms" in r for r in one) == 1
    assert all("sample.nc.order=stratified" in r for r in one if "method=nc " in r)


def test_unknown_methods_and_orders_are_clear_errors(tmp_path):
    for env, says in (({"METHODS": "best"}, "unknown method 'best'"), ({"NC_ORDERS": "middle"}, "unknown NC order"),
                      ({"METHODS": "nc:middle"}, "unknown NC order 'middle'")):
        res = sweep(tmp_path, **env)
        assert res.returncode == 2 and says in res.stderr and "queue:" not in res.stdout


def test_paired_batches_and_common_args_are_queued(tmp_path):
    runs = dry_run(tmp_path, SEEDS="2", METHODS="nc full", RATIOS="0.1", PAIR="1",
                   COMMON_ARGS="-S train.init=/models/aasist -S evaluate.conditions=[]")
    paired = [r for r in runs if "train.pair_batches=true" in r]
    assert len(runs) == 8 and len(paired) == 4                 # (nc 0.1 + full) x 2 seeds, each also paired
    assert all("train.init=/models/aasist" in r and "evaluate.conditions=[]" in r for r in runs)
