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


def dry_run(tmp_path: Path, **env: str) -> list[str]:
    root = tmp_path / f"repo{len(list(tmp_path.iterdir()))}"
    root.mkdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    git_env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
               "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "base"]):
        subprocess.run(cmd, cwd=root, env=git_env, check=True, capture_output=True)
    res = subprocess.run(["bash", str(REPO / "scripts" / "sweep.sh")], cwd=root, capture_output=True, text=True,
                         env={**git_env, "DRY_RUN": "1", **env}, timeout=60)
    assert res.returncode == 0, res.stderr
    return [line for line in res.stdout.splitlines() if line.startswith("queue: ")]


def test_default_sweep_is_fifty_runs_and_the_ablation_twenty_more(tmp_path):
    runs = dry_run(tmp_path)
    assert len(runs) == 50
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
