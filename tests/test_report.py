"""The report stage: builds from a tiny fake run, holds no external address, degrades gracefully, audits shortcuts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import report
from pipeline.reporting import html, plots
from pipeline.reporting.experiments import eer_metrics, load_experiments, parse_exp_show
from tests.report_fakes import make_fake_run, report_argv

SECTIONS = ("summary", "data", "reconstruction", "teachers", "sampling", "detector", "hardness", "audit", "experiments")
REPO = Path(__file__).resolve().parents[1]


def _build(tmp_path: Path, **kw) -> tuple[dict, str]:
    paths = make_fake_run(tmp_path, **kw)
    assert report.main(report_argv(paths)) == 0
    return paths, paths["out"].read_text()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[dict, str]:
    """One tiny run and its report, shared by the tests that only read the page."""
    return _build(tmp_path_factory.mktemp("run"))


def test_report_builds_from_a_tiny_run_with_every_section(built):
    _, doc = built
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in doc
    assert "this section failed" not in doc
    # PCA map per teacher pool, per-system bars, DET curves by eval set and by paradigm, score histograms
    assert doc.count('<img src="data:image/png;base64,') == 6
    assert "EER per attack system" in doc and "piper_joe" in doc and "hifigan_universal" in doc
    assert "silent audio (peak below -60 dBFS)" in doc  # rejects table
    assert "logmel_distance" in doc and "dev EER (%)" in doc
    assert "NC1 nc picks" in doc and "Merged manifests" in doc and "<details>" in doc  # sampling.json
    assert '<a href="#eer-test">test</a>' in doc and '<h3 id="eer-tts">' in doc  # summary links, one table per set
    assert "No shortcut found" in doc


def test_report_holds_no_external_url_script_or_remote_resource(built):
    _, doc = built
    assert "http://" not in doc and "https://" not in doc
    assert "<script" not in doc.lower() and "<link" not in doc.lower()
    for src in re.findall(r'src="([^"]*)"', doc):
        assert src.startswith("data:image/png;base64,")


def test_url_like_text_in_inputs_is_defanged(tmp_path):
    paths = make_fake_run(tmp_path)
    (paths["reports"] / "sampling.json").write_text('{"source": "https://example.org/x", "n": 1}')
    assert report.main(report_argv(paths)) == 0
    doc = paths["out"].read_text()
    assert "https://" not in doc and "https[:]//example.org/x" in doc


def test_report_with_no_inputs_says_not_available_for_each_section(tmp_path):
    (tmp_path / "params.yaml").write_text("seed: 1\nreport: {}\n")
    out = tmp_path / "reports" / "index.html"
    argv = ["--params", str(tmp_path / "params.yaml"), "--reports", str(tmp_path / "reports"),
            "--clips", str(tmp_path / "nope.parquet"), "--rejects", str(tmp_path / "nope_rejects.parquet"),
            "--embeddings", str(tmp_path / "e"), "--manifests", str(tmp_path / "m"), "--teachers", str(tmp_path / "t"),
            "--repo", str(tmp_path), "--out", str(out)]
    assert report.main(argv) == 0
    doc = out.read_text()
    assert "this section failed" not in doc
    for what in ("clip tables", "rejects table", "reports/reconstruction/*.json", "data/teachers/*/metrics.json",
                 "reports/sampling.json", "reports/metrics.json", "DVC experiments"):
        assert f"{what}" in doc and "not available" in doc, what
    assert doc.count("not available") >= 8


def test_a_broken_input_fails_only_its_section(tmp_path):
    paths = make_fake_run(tmp_path)
    np.save(paths["embeddings"] / "resnet_vocoder" / "emb.npy", np.zeros((3, 4), dtype=np.float16))
    assert report.main(report_argv(paths)) == 0
    doc = paths["out"].read_text()
    assert "emb.npy has shape (3, 4) but ids.parquet has" in doc
    assert '<section id="detector">' in doc and "DET curves" in doc


def test_report_file_is_written_atomically_and_readable(built):
    paths, _ = built
    assert not [p for p in paths["out"].parent.iterdir() if p.name.startswith(".index.html")]
    assert os.stat(paths["out"]).st_mode & 0o044 == 0o044  # readable by a web server, not only the owner


def test_unknown_report_param_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown keys"):
        report.parse_params({"pca_pionts": 3}, seed=0)
    with pytest.raises(ValueError, match="unknown keys"):
        report.parse_params({"audit": {"folds": 3}}, seed=0)  # the audit is its own stage (params audit)
    p = report.parse_params({"pca_points": 10}, seed=5)
    assert p.pca_points == 10


def test_image_must_be_an_inline_data_uri():
    with pytest.raises(ValueError, match="data URI"):
        html.image("https://example.org/a.png", "remote")


def test_pca_2d_recovers_the_main_direction():
    rng = np.random.default_rng(0)
    x = np.outer(rng.standard_normal(200), [3.0, 0.0, 0.0]) + 0.01 * rng.standard_normal((200, 3))
    xy, ratio = plots.pca_2d(x)
    assert ratio[0] > 0.99 and abs(np.corrcoef(xy[:, 0], x[:, 0])[0, 1]) > 0.999


# ---------------------------------------------------------------- shortcut audit (rendered; tests/test_audit.py)


def test_audit_warning_is_shown_in_red_in_the_report(tmp_path):
    _, doc = _build(tmp_path, shortcut=True)
    assert '<p class="warn">WARNING: shortcut found.' in doc
    assert '<td class="warn">warning</td>' in doc
    assert 'Shortcut audit: <span class="warn">WARNING</span>' in doc


# ---------------------------------------------------------------- experiments


def _exp(name, ratio, method, eers, state=None):
    data = {"rev": name, "params": {"params.yaml": {"data": {"sample": {"ratio": ratio, "method": method}}}},
            "metrics": {"reports/metrics.json": {"data": {"eer": eers}}} if eers else {}}
    return {"revs": [{"rev": "f" * 40, "name": name, "data": data, "error": None, "experiments": None}],
            "executor": {"state": state} if state else None, "name": name}


def test_parse_exp_show_lists_finished_experiments_and_counts_the_rest():
    doc = [
        {"rev": "workspace", "name": None, "data": {"params": {}, "metrics": {
            "reports/metrics.json": {"data": {"eer": {"test": 0.9}}}}}, "error": None, "experiments": None},
        {"rev": "a" * 40, "name": "main", "data": {
            "params": {"params.yaml": {"data": {"sample": {"ratio": 0.25, "method": "nc"}}}},
            "metrics": {"reports/metrics.json": {"data": {"eer": {"test": 0.1, "tts": 0.2}}}}},
         "error": None, "experiments": [
             _exp("e1", 0.05, "random", {"test": 0.3, "tts": 0.4}, state="success"),
             _exp("e2", 0.01, "nc", {"test": 0.35, "tts": 0.45}),
             _exp("e3", 0.1, "nc", None, state="queued"),
             _exp("e4", 0.1, "nc", None, state="failed")]},
    ]
    exps = parse_exp_show(doc)
    runs = exps.runs.set_index("name")
    assert list(runs.index) == ["workspace", "e1", "e2", "main"]
    assert list(runs["kind"]) == ["workspace", "experiment", "experiment", "baseline"]
    assert runs.loc["e1", "method"] == "random" and runs.loc["e1", "ratio"] == 0.05
    assert runs.loc["e2", "eer.tts"] == 0.45 and runs.loc["workspace", "eer.test"] == 0.9
    assert exps.skipped == {"queued": 1, "failed": 1}


def test_eer_metrics_takes_the_per_set_eers_only():
    got = eer_metrics({"eer": {"test": 0.1, "pooled": 0.2}, "eer/itw": 0.3, "eer_by_system": {"A07": 0.5},
                       "loss": 1.0, "n_clips": {"eer": 3}})
    assert got == {"eer.test": 0.1, "eer.pooled": 0.2, "eer.itw": 0.3}
    assert eer_metrics({"eer": 0.4, "eer/flag": True}) == {"eer": 0.4}


def test_experiments_section_draws_the_curve_of_one_commit_with_several_ratios():
    from pipeline.reporting.efficiency import experiments_section
    from pipeline.reporting.experiments import ExperimentRuns
    runs = pd.DataFrame({"name": list("abcd"), "rev": list("abcd"), "kind": "experiment", "base": "b" * 7,
                         "method": ["nc", "nc", "random", "random"], "ratio": [0.01, 0.1, 0.01, 0.1],
                         "eer.test": [0.2, 0.1, 0.3, 0.15], "note": ""})
    body = "".join(experiments_section(ExperimentRuns(runs)).parts)
    assert body.count("<img ") == 1 and "EER vs sampling ratio" in body and "Runs of commit bbbbbbb only" in body
    one = "".join(experiments_section(ExperimentRuns(runs.iloc[:1])).parts)
    assert "<img " not in one and "the curve needs two sampling ratios from one commit" in one
    # the same runs made by four commits: no commit has two ratios, so nothing is drawn across them
    apart = "".join(experiments_section(ExperimentRuns(runs.drop(columns="base").assign(kind="baseline"))).parts)
    assert "<img " not in apart and apart.count("other commit: left out") == 4


def test_load_experiments_says_why_when_not_a_dvc_git_repo(tmp_path):
    assert "not a DVC repository" in load_experiments(tmp_path).reason
    (tmp_path / ".dvc").mkdir()
    assert "not a git repository" in load_experiments(tmp_path).reason


def _dvc_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    return env


def _toy_dvc_repo(root: Path) -> dict:
    """A git + DVC repo whose one stage writes reports/metrics.json from the sample params."""
    env = _dvc_env()
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text("sample:\n  ratio: 0.25\n  method: nc\n  seed: 0\ntrain:\n  seed: 0\n")
    (root / "stage.py").write_text(
        "import json, os, yaml\n"
        "p = yaml.safe_load(open('params.yaml'))['sample']\n"
        "os.makedirs('reports', exist_ok=True)\n"
        "bias = 0.0 if p['method'] == 'nc' else 0.05\n"
        "json.dump({'eer': {'test': 0.3 - 0.1 * p['ratio'] + bias}}, open('reports/metrics.json', 'w'))\n")
    (root / "dvc.yaml").write_text(
        "stages:\n  evaluate:\n    cmd: python stage.py\n    deps: [stage.py]\n    params: [sample]\n"
        "    metrics:\n      - reports/metrics.json:\n          cache: false\n")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "repro", "-q"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "base"]):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
    return env


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_load_experiments_reads_real_dvc_exp_show(tmp_path):
    root = tmp_path / "repo"
    env = _toy_dvc_repo(root)
    for ratio, method in ((0.05, "random"), (1.0, "nc")):
        subprocess.run(["dvc", "exp", "run", "-q", "-S", f"sample.ratio={ratio}", "-S", f"sample.method={method}"],
                       cwd=root, env=env, check=True, capture_output=True)
    exps = load_experiments(root)
    assert exps.reason == ""
    got = {(r["method"], r["ratio"]): r["eer.test"] for _, r in exps.runs.iterrows()}
    assert got[("random", 0.05)] == pytest.approx(0.3 - 0.005 + 0.05)
    assert got[("nc", 1.0)] == pytest.approx(0.2) and got[("nc", 0.25)] == pytest.approx(0.275)
    # the report of a run in that repository draws the curve and lists the three runs
    paths = make_fake_run(tmp_path / "run")
    argv = report_argv(paths)
    argv[argv.index("--repo") + 1] = str(root)
    assert report.main(argv) == 0
    doc = paths["out"].read_text()
    section = doc[doc.index('<section id="experiments">'):]
    assert section.count("<img ") == 1 and section.count("<tr>") == 3  # data rows (the header row has a style)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_sweep_script_queues_runs_and_redraws_the_report(tmp_path):
    root = tmp_path / "repo"
    env = _toy_dvc_repo(root)
    (root / "dvc.yaml").write_text((root / "dvc.yaml").read_text() + (
        "  report:\n    cmd: python -c \"import subprocess,sys; "
        "open('sweep_seen.txt','w').write(subprocess.run(['dvc','exp','show','--json','-A'],"
        "capture_output=True,text=True).stdout)\"\n    deps: [reports/metrics.json]\n"
        "    outs: [sweep_seen.txt]\n"))
    subprocess.run(["git", "add", "-A"], cwd=root, env=env, check=True)
    subprocess.run(["git", "commit", "-qm", "report"], cwd=root, env=env, check=True)
    env.update(RATIOS="0.1 1.0", METHODS="nc full", SEEDS="2", POLL_S="1")   # nc at 1.0 is full: not queued
    res = subprocess.run(["bash", str(REPO / "scripts" / "sweep.sh")], cwd=root, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    exps = load_experiments(root)
    pairs = [(r.method, r.ratio) for r in exps.runs.itertuples() if r.kind == "experiment"]
    assert sorted(pairs) == [("full", 1.0), ("full", 1.0), ("nc", 0.1), ("nc", 0.1)]    # two seeds each
    assert '"ratio": 0.1' in (root / "sweep_seen.txt").read_text()


def test_a_malformed_metrics_or_score_file_is_reported_not_fatal(tmp_path):
    paths = make_fake_run(tmp_path)
    (paths["reports"] / "metrics.json").write_text("{not json")
    (paths["reports"] / "scores" / "tts.txt").write_text("tts_0 high\n")
    assert report.main(report_argv(paths)) == 0
    doc = paths["out"].read_text()
    assert doc.count('<p class="warn">unreadable input:') == 2
    assert "tts.txt: non-numeric score in line 1" in doc


def test_embedding_map_class_means_are_the_samplers_class_means(tmp_path, monkeypatch):
    from pipeline.reporting import inputs, sampling_section
    from pipeline.reporting.sections import ReportParams
    from pipeline.sampling.nc import class_mean
    from pipeline.schema import read_clip_tables
    paths = make_fake_run(tmp_path)
    clips = read_clip_tables([paths["clips"], paths["recon"]])
    emb, ids = inputs.load_embeddings(paths["embeddings"] / "resnet_vocoder")
    calls = []
    monkeypatch.setattr(sampling_section, "class_mean", lambda e, rows, norm: calls.append(rows) or class_mean(
        e, rows, norm))
    drawn = {}
    monkeypatch.setattr(plots, "embedding_map", lambda xy, lab, sel, means, *a: drawn.update(means) or "data:image/")
    sampling_section.embedding_map_for("resnet_vocoder", emb, ids, clips, set(), ReportParams(), seed=0)
    train = (ids.map(clips.set_index("clip_id")["split"]) == "train").to_numpy()
    labels = ids.map(clips.set_index("clip_id")["label"]).to_numpy()
    assert [sorted(r) for r in calls] == [list(np.flatnonzero(train & (labels == c))) for c in ("bonafide", "spoof")]
    assert set(drawn) == {"bonafide", "spoof"}
