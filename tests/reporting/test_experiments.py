"""The data-efficiency view from fake `dvc exp show` / `dvc status` documents: workspace, experiments and commits
listed distinctly, commits that repeat the committed numbers folded, a stale workspace never shown as current."""

from __future__ import annotations

import html
import json
import re

import pytest

from pipeline import report
from pipeline.reporting import experiments, plots
from pipeline.reporting.efficiency import experiments_section
from pipeline.reporting.experiments import (
    ExperimentRuns,
    Freshness,
    classify_status,
    mark_workspace,
    parse_exp_show,
    producing_stage,
)
from pipeline.reporting.sweep import Head
from tests.report_fakes import make_fake_run, report_argv

METRICS = "reports/metrics.json"


def _data(eers: dict | None, ratio: float = 0.25, method: str = "nc") -> dict:
    return {"params": {"params.yaml": {"data": {"sample": {"ratio": ratio, "method": method}}}},
            "metrics": {METRICS: {"data": {"eer": eers}}} if eers else {}}


def _commit(rev: str, eers: dict | None, name: str | None = None, exps: list | None = None, **kw) -> dict:
    return {"rev": rev * 40 if len(rev) == 1 else rev, "name": name, "data": _data(eers, **kw), "error": None,
            "experiments": exps}


def _workspace(eers: dict, **kw) -> dict:
    return {"rev": "workspace", "name": None, "data": _data(eers, **kw), "error": None, "experiments": None}


def _exp(name: str, eers: dict, ratio: float, method: str = "nc") -> dict:
    return {"name": name, "executor": None, "revs": [{"rev": name[0] * 40, "name": name, "error": None,
                                                       "data": _data(eers, ratio, method), "experiments": None}]}


A = {"test": 0.135, "tts": 0.472, "pooled": 0.236}
B = {"test": 0.101, "tts": 0.390, "pooled": 0.200}


def test_a_fresh_clone_with_ten_commits_of_the_same_numbers_is_one_row():
    revs = "abcdefghij"                                  # newest first, as `dvc exp show` lists them
    doc = [_workspace(A)] + [_commit(r, A, name="main" if r == "a" else None) for r in revs]
    runs = parse_exp_show(doc).runs
    assert len(runs) == 1 and runs["kind"].tolist() == ["workspace"]
    note = runs["note"].iloc[0]
    assert "committed in jjjjjjj" in note and "the same numbers in 9 later commit(s)" in note


def test_commits_with_their_own_numbers_stay_distinct_and_the_workspace_names_its_twin():
    doc = [_workspace(B, ratio=0.1), _commit("a", B, name="main", ratio=0.1), _commit("b", A), _commit("c", A),
           _commit("d", A)]
    runs = parse_exp_show(doc).runs.set_index("kind")
    assert sorted(runs.index) == ["baseline", "workspace"]
    assert runs.loc["baseline", "rev"] == "ddddddd"
    assert "the same numbers in 2 later commit(s)" in runs.loc["baseline", "note"]
    assert runs.loc["workspace", "note"] == "the numbers committed in aaaaaaa"
    assert runs.loc["baseline", "eer.test"] == A["test"] and runs.loc["workspace", "ratio"] == 0.1


def test_experiments_workspace_and_baselines_are_listed_distinctly():
    e1 = {"test": 0.3, "tts": 0.5, "pooled": 0.4}
    e2 = {"test": 0.2, "tts": 0.45, "pooled": 0.3}
    doc = [_workspace(e2, ratio=0.05), _commit("a", A, name="main", exps=[_exp("e1", e1, 0.01), _exp("e2", e2, 0.05)])]
    runs = parse_exp_show(doc).runs
    assert runs["kind"].tolist() == ["workspace", "experiment", "baseline"]
    assert runs["name"].tolist() == ["workspace", "e1", "main"]       # e2 is what the workspace holds
    assert runs.loc[0, "note"] == "the numbers of experiment e2"
    assert runs.loc[1, "note"] == "experiment on aaaaaaa"


def test_producing_stage_finds_the_stage_that_writes_the_metrics_file():
    dvc_yaml = {"stages": {"train": {"outs": ["data/models/detector"]},
                           "evaluate": {"outs": ["reports/scores", {"reports/eer.csv": {"cache": False}}],
                                        "metrics": [{"reports/metrics.json": {"cache": False}}]}}}
    assert producing_stage(dvc_yaml, "reports/metrics.json") == "evaluate"
    assert producing_stage(dvc_yaml, "./reports/eer.csv") == "evaluate"
    assert producing_stage(dvc_yaml, "nope.json") is None and producing_stage(None, "x") is None


@pytest.mark.parametrize("status, state", [
    ({}, "current"),
    ({"evaluate": [{"changed deps": {"data/clips": "deleted"}}, {"changed outs": {"reports/scores": "not in cache"}}],
      "prepare": [{"changed deps": {"data/raw/demo": "deleted"}}]}, "unverified"),
    ({"evaluate": [{"changed deps": {"pipeline/evaluate.py": "modified", "data/clips": "deleted"}}]}, "stale"),
    ({"evaluate": [{"changed deps": {"params.yaml": {"evaluate": "modified"}}}]}, "stale"),
    ({"evaluate": [{"changed outs": {"reports/metrics.json": "deleted"}}]}, "stale"),
    # an always-run stamp stage (corpus_index, init_model) is listed on every `dvc status`; it rewrites its file
    # only when its inputs changed, and then the stages after it show "changed deps": alone it says nothing
    ({"corpus_index": ["always changed"], "init_model": ["always changed"]}, "current"),
    ({"corpus_index": ["always changed"],
      "evaluate": [{"changed deps": {"pipeline/evaluate.py": "modified"}}]}, "stale"),
])
def test_classify_status_tells_current_stale_and_unverified_apart(status, state):
    got = classify_status(status, METRICS)
    assert got.state == state
    if state == "stale":                      # what made it stale comes first, not the absent inputs
        assert got.detail.startswith(("evaluate", "fetch_demo")) and "data/clips: deleted" not in got.detail
    if state == "unverified":
        assert got.detail.startswith("3 input(s) not present, e.g. evaluate changed deps data/clips: deleted")


def _runs() -> ExperimentRuns:
    doc = [_workspace(B, ratio=0.1), _commit("a", A, name="main"),
           _commit("b", None, exps=[_exp("e1", {"test": 0.3, "tts": 0.5, "pooled": 0.4}, 0.01)])]
    return parse_exp_show(doc)


def test_a_stale_workspace_is_labelled_and_left_out_of_the_curve(monkeypatch):
    drawn = []
    monkeypatch.setattr(plots, "sweep_curve",
                        lambda points, commit: drawn.append((points, commit)) or "data:image/png;base64,")
    head = Head("bbbbbbb")                     # the workspace is at e1's commit: the two share one curve
    exps = mark_workspace(_runs(), Freshness("stale", "evaluate changed deps pipeline/evaluate.py: modified"))
    body = "".join(experiments_section(exps, head=head).parts)
    assert "STALE: older than its inputs (evaluate changed deps pipeline/evaluate.py: modified)" in body
    assert '<p class="warn">The workspace\'s metrics are older than their inputs' in html.unescape(body)
    assert drawn == [] and "STALE: left out" in body          # without it, commit b has one ratio: no curve
    fresh = mark_workspace(_runs(), Freshness("current"))
    body = "".join(experiments_section(fresh, head=head).parts)
    points, commit = drawn[0]
    assert commit == "bbbbbbb" and sorted(points["ratio"].unique()) == [0.01, 0.1]
    assert "up to date" in fresh.runs.loc[0, "note"] and "1 run of other commits or stale left out" in body


def test_the_workspace_row_shows_its_eers_and_its_commit():
    exps = mark_workspace(_runs(), Freshness("current"))
    body = "".join(experiments_section(exps, head=Head("1234567")).parts)
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    workspace = re.findall(r"<td>([^<]*)</td>", rows[0])
    assert workspace[:2] == ["workspace", "1234567"]
    assert "test 10.1, tts 39.0, pooled 20.0" in workspace


def _fake_collect(calls: list, exp_show: list, status: dict):
    """experiments.collect without DVC: the given `dvc exp show` document and `dvc status` of evaluate."""
    def collect(repo, metrics_file):
        calls.append((str(repo), metrics_file))
        return exp_show, classify_status(status, metrics_file)
    return collect


def test_report_of_a_stale_clone_says_so_and_lists_one_row(tmp_path, monkeypatch):
    paths = make_fake_run(tmp_path / "run")
    root = paths["root"]
    (root / ".dvc").mkdir()
    (root / ".git").mkdir()
    (root / "dvc.yaml").write_text("stages:\n  evaluate:\n    cmd: python -m pipeline evaluate\n    metrics:\n"
                                   "      - reports/metrics.json:\n          cache: false\n")
    metrics = json.loads((paths["reports"] / "metrics.json").read_text())
    doc = [_workspace(metrics["eer"])] + [_commit(r, metrics["eer"]) for r in "abcdefghij"]
    status = {"evaluate": [{"changed deps": {"pipeline/evaluate.py": "modified"}}]}
    calls: list = []
    monkeypatch.setattr(experiments, "collect", _fake_collect(calls, doc, status))
    assert report.main(report_argv(paths)) == 0
    page = paths["out"].read_text()
    assert calls == [(str(root), METRICS)]                   # DVC is asked once
    summary = page[page.index('<section id="summary">'):page.index('<section id="data">')]
    detector = page[page.index('<section id="detector">'):page.index('<section id="audit">')]
    table = page[page.index('<section id="experiments">'):]
    for part in (summary, detector):
        assert "reports/metrics.json is older than its inputs" in part and 'class="warn"' in part
    rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)
    assert len(rows) == 1 and "<td>workspace</td>" in rows[0] and "STALE" in rows[0]
    assert "the same numbers in 9 later commit(s)" in rows[0]
    cells = re.findall(r"<td>([^<]*)</td>", rows[0])
    assert cells[0] == "workspace" and cells[6] == "STALE: left out"
    assert cells[5] == ", ".join(f"{k} {100 * v:.1f}" for k, v in metrics["eer"].items())   # its EERs, once


def test_the_curve_never_averages_across_commits_or_renamed_sets(monkeypatch):
    import pandas as pd

    drawn = []
    monkeypatch.setattr(plots, "sweep_curve",
                        lambda points, commit: drawn.append((points, commit)) or "data:image/png;base64,")
    old = pd.DataFrame({"name": ["o1", "o2", "o3"], "rev": ["o1", "o2", "o3"], "kind": "experiment",
                        "base": "aaaaaaa", "method": "nc", "ratio": [0.25, 0.25, 0.1],
                        "eer.test": [0.4048, 0.3394, 0.30], "note": ""})        # an older commit, the old set name
    new = pd.DataFrame({"name": ["n1", "n2"], "rev": ["n1", "n2"], "kind": "experiment", "base": "bbbbbbb",
                        "method": "nc", "ratio": [0.25, 0.1], "eer.seen_attacks": [0.20, 0.25], "note": ""})
    runs = pd.concat([old, new], ignore_index=True)
    body = "".join(experiments_section(ExperimentRuns(runs), head=Head("bbbbbbb")).parts)
    points, commit = drawn[0]
    assert commit == "bbbbbbb" and set(points["set"]) == {"seen_attacks"}     # the workspace's commit, its names
    assert sorted(points["eer"]) == [0.20, 0.25]                              # no older run in any point
    assert "3 runs of other commits or stale left out" in body and body.count("other commit: left out") == 3
    # without the workspace's commit, the first commit with two ratios is drawn: the older one, alone
    experiments_section(ExperimentRuns(old.assign(kind="experiment")), head=None)
    points, commit = drawn[1]
    assert commit == "aaaaaaa" and set(points["set"]) == {"test"} and len(points) == 3
