"""End to end: `dvc repro` of the whole pipeline on the tiny params profile, in a temp copy of the repo.

The tiny profile is params.tiny.yaml (overrides only) merged onto params.yaml.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.params import load_params, merge_params
from pipeline.schema import read_clips

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_dvc_repro_on_the_tiny_profile(tmp_path):
    work = tmp_path / "repo"
    work.mkdir()
    shutil.copytree(REPO / "pipeline", work / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", work / "dvc.yaml")
    tiny = merge_params(load_params(REPO / "params.yaml"), load_params(REPO / "params.tiny.yaml"))
    (work / "params.yaml").write_text(yaml.safe_dump(tiny, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "PYTHONPATH": str(work)}
    run = lambda *cmd: subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=1500)  # noqa: E731
    assert run("dvc", "init", "--no-scm", "-q").returncode == 0
    run("dvc", "config", "core.analytics", "false")
    result = run("dvc", "repro")
    assert result.returncode == 0, f"dvc repro failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"

    clips = read_clips(work / "data/clips.parquet")
    assert {"bonafide", "spoof"} <= set(clips["label"])
    for paradigm in ("vocoder", "codec", "diffusion"):
        recon = read_clips(work / f"data/recon/{paradigm}.parquet")
        assert len(recon) and set(recon["parent_id"]) <= set(clips["clip_id"])
    train = read_clips(work / "data/manifests/train.parquet", groups=("manifest",))
    assert 0 < len(train)
    metrics = json.loads((work / "reports/metrics.json").read_text())
    assert 0.0 <= metrics["eer"]["pooled"] <= 1.0
    html = (work / "reports/index.html").read_text()
    assert "<img" in html and "http://" not in html and "https://" not in html
    # the export stage (every format and the model in the tiny profile): the card's test EERs are metrics.json's
    summary = json.loads((work / "exports/EXPORT.json").read_text())
    assert summary["formats"] == ["asvspoof", "lhotse", "hf"] and summary["clips"]["train_spoof"] > 0
    assert (work / "exports/asvspoof/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.train.trn.txt").is_file()
    card = json.loads((work / "exports/model/config.json").read_text())["card"]
    assert {k: v["eer"] for k, v in card["test"]["sets"].items()} == metrics["eer"]
    # A second repro with nothing changed runs nothing but the two always-run stamp stages (corpus_index,
    # init_model), which find their inputs unchanged and leave their files as they were: every other stage
    # is cached.
    again = run("dvc", "repro")
    ran = re.findall(r"Running stage '([^']+)'", again.stdout)
    assert again.returncode == 0 and ran == ["corpus_index", "init_model"], again.stdout[-4000:]
