"""The report's Detector section shows evaluate's numbers (eer.csv, det.csv) as they are, each EER once; small systems
are greyed and not ranked."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import evaluate, report
from pipeline.reporting import detector_section, inputs
from pipeline.schema import read_clip_tables
from tests.report_fakes import make_fake_run, report_argv

ROW_KEY = detector_section.ROW_KEY


def _codec_copy(clips: pd.DataFrame) -> pd.DataFrame:
    """Test spoofs of a second paradigm, so that the leave_out sets differ from the test set."""
    spoof = clips[(clips["split"] == "test") & (clips["label"] == "spoof")]
    return spoof.assign(clip_id=spoof["clip_id"] + "_codec", paradigm="codec",
                        system=np.where(spoof["system"] == "world", "encodec_6kbps", "opus_8kbps"))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[dict, pd.DataFrame, str]:
    """A fake run whose eer.csv, det.csv and metrics.json evaluate itself wrote from scores of 2 paradigms."""
    paths = make_fake_run(tmp_path_factory.mktemp("run"))
    clips = read_clip_tables([paths["clips"], paths["recon"]])
    clips = pd.concat([clips, _codec_copy(clips)], ignore_index=True)
    rng = np.random.default_rng(3)
    scores = pd.Series(np.where(clips["label"] == "bonafide", 1.0, -0.5) + rng.standard_normal(len(clips)),
                       index=clips["clip_id"].to_numpy())
    sets = evaluate.build_eval_sets(clips, ("test", "tts", "leave_out"), {"train_paradigms": ["vocoder"]})
    metrics, table, scored = evaluate.run(sets, scores, seen_paradigms=["vocoder"])
    evaluate.write_outputs(metrics, table, scored, paths["reports"])
    assert report.main(report_argv(paths)) == 0
    return paths, table, paths["out"].read_text()


def _section(doc: str, anchor: str) -> str:
    start = doc.index(f'<section id="{anchor}">')
    return doc[start:doc.index("</section>", start)]


def _html_rows(block: str) -> list[list[str]]:
    return [re.findall(r"<td>(.*?)</td>", tr, re.S) for tr in re.findall(r"<tr(?: class=\"\w+\")?>(.*?)</tr>",
                                                                             block, re.S)]


def _set_blocks(detector: str) -> dict[str, str]:
    """The HTML of each eval set's part of the Detector section, keyed by set name."""
    heads = list(re.finditer(r'<h3 id="eer-([^"]+)">', detector))
    ends = [h.start() for h in heads[1:]] + [detector.index("<figure")]   # the per-system bars follow the tables
    return {h.group(1): detector[h.end():end] for h, end in zip(heads, ends)}


def test_the_per_system_numbers_of_the_report_equal_evaluates_eer_csv_exactly(run):
    paths, table, doc = run
    csv = inputs.load_eer_table(paths["reports"] / "eer.csv")
    assert csv[["set", "system"]].equals(table[["set", "system"]])
    np.testing.assert_allclose(csv["eer"], table["eer"], atol=5e-7)       # eer.csv keeps 6 decimals
    blocks = _set_blocks(_section(doc, "detector"))
    assert list(blocks) == list(dict.fromkeys(csv["set"]))
    shown = {name: {r[0]: r for r in _html_rows(block)} for name, block in blocks.items()}
    first_set = {}
    for row in csv.itertuples():
        key = tuple(getattr(row, c) for c in ROW_KEY)
        first_set.setdefault(key, row.set)
        where = first_set[key]                    # a repeated row is shown in the first table that has it
        system = "all systems" if row.system == "all" else row.system
        cells = shown[where][system]
        ci = f" [{100 * row.eer_lo:.2f}, {100 * row.eer_hi:.2f}]" if np.isfinite(row.eer_lo) else ""
        assert cells[4].startswith(f"{100 * row.eer:.2f}%{ci}"), (row.set, row.system)
        assert [int(cells[2]), int(cells[3])] == [row.n_bonafide, row.n_spoof]
        assert [float(c) for c in cells[5:8]] == pytest.approx([row.min_dcf, row.act_dcf, row.cllr], abs=1e-3)
        if where != row.set:                      # and the repeating set links to it
            assert f'<a href="#eer-{where}">{where}</a>' in blocks[row.set], (row.set, row.system)
    # the section's tables are built from eer.csv rows, with no value of their own
    for t in detector_section.set_tables(csv):
        got = t.systems.set_index("system")["eer"]
        want = csv[(csv["set"] == t.name) & (csv["system"] != "all")].set_index("system")["eer"]
        assert (got == want.reindex(got.index)).all()


def test_each_eer_number_appears_once_in_the_html(run):
    paths, _, doc = run
    csv = inputs.load_eer_table(paths["reports"] / "eer.csv")
    once = csv[~csv.duplicated(ROW_KEY)]          # paradigm / leave_out rows repeat the test set's rows
    assert len(once) < len(csv) and {"paradigm_vocoder", "leave_out_codec"} <= set(csv["set"])
    cells = re.findall(r"<td>(\d+\.\d\d%)[ <]", _section(doc, "detector"))
    expected = [f"{100 * v:.2f}%" for v in once["eer"]]
    assert sorted(cells) == sorted(expected)
    # the summary's table of this run is the set rows of eer.csv, and it links to every set's table
    summary = _section(doc, "summary")
    sets = csv[csv["system"] == "all"]
    assert sorted(re.findall(r"<td>(\d+\.\d\d%)[ <]", summary)) == sorted(f"{100 * v:.2f}%" for v in sets["eer"])
    for name in dict.fromkeys(csv["set"]):
        assert f'href="#eer-{name}"' in summary


def test_the_det_curves_come_from_det_csv_with_the_eers_of_eer_csv(run, monkeypatch):
    paths, _, _ = run
    det = inputs.load_det(paths["reports"] / "plots" / "det.csv")
    eer = inputs.load_eer_table(paths["reports"] / "eer.csv")
    drawn = {}

    def fake_figure(curves, eers, title="DET curves"):
        drawn.setdefault("curves", {}).update({f"{title}: {k}": v for k, v in curves.items()})
        drawn.setdefault("eers", {}).update(eers)
        from matplotlib.figure import Figure
        return Figure()

    monkeypatch.setattr(detector_section, "det_figure", fake_figure)
    detector_section.detector_section(eer, det, None)
    # one figure by eval set, one by paradigm (paradigm_<P> / leave_out_<P> sets), every det.csv set once
    by_set = {k.split(": ")[1] for k in drawn["curves"] if k.startswith("DET curves by eval set")}
    by_paradigm = {k.split(": ")[1] for k in drawn["curves"] if k.startswith("DET curves by paradigm")}
    assert by_set == {"test", "tts"} and by_paradigm == {"vocoder", "leave_out_codec"}
    assert len(drawn["curves"]) == len(set(det["set"])) == len(set(eer["set"]) - {"pooled"})
    far, frr = drawn["curves"]["DET curves by eval set: test"]
    assert np.array_equal(far, det.loc[det["set"] == "test", "far"].to_numpy())
    assert np.array_equal(frr, det.loc[det["set"] == "test", "frr"].to_numpy())
    assert drawn["eers"]["tts"] == eer.loc[(eer["set"] == "tts") & (eer["system"] == "all"), "eer"].item()


def test_paradigm_set_identical_to_test_links_to_it_instead_of_repeating(tmp_path):
    paths = make_fake_run(tmp_path)              # one spoof paradigm: paradigm_vocoder is the test set
    assert report.main(report_argv(paths)) == 0
    blocks = _set_blocks(_section(paths["out"].read_text(), "detector"))
    assert "<table" not in blocks["paradigm_vocoder"]
    assert 'The same clips and EERs as <a href="#eer-test">test</a>' in blocks["paradigm_vocoder"]
    assert "Paradigm vocoder was in the detector" in blocks["paradigm_vocoder"]


def test_metrics_json_and_eer_csv_of_different_runs_are_flagged(tmp_path):
    paths = make_fake_run(tmp_path)
    csv = pd.read_csv(paths["reports"] / "eer.csv")
    csv.loc[(csv["set"] == "tts") & (csv["system"] == "all"), "eer"] = 0.5
    csv.to_csv(paths["reports"] / "eer.csv", index=False)
    assert report.main(report_argv(paths)) == 0
    assert "reports/metrics.json and reports/eer.csv disagree for tts" in paths["out"].read_text()


def test_without_eer_csv_the_set_eers_of_metrics_json_are_shown_once(tmp_path):
    paths = make_fake_run(tmp_path)
    (paths["reports"] / "eer.csv").unlink()
    assert report.main(report_argv(paths)) == 0
    doc = paths["out"].read_text()
    assert "reports/eer.csv not available" in doc and "this section failed" not in doc
    assert len(re.findall(r"<td>(\d+\.\d\d%)</td>", _section(doc, "detector"))) == 4   # test, tts, paradigm, pooled


def test_a_malformed_eer_or_det_csv_is_reported_not_fatal(tmp_path):
    paths = make_fake_run(tmp_path)
    (paths["reports"] / "eer.csv").write_text("set,system\ntest,all\n")
    (paths["reports"] / "plots" / "det.csv").write_text("a,b\n1,2\n")
    assert report.main(report_argv(paths)) == 0
    doc = html.unescape(paths["out"].read_text())
    assert "eer.csv: columns ['n_bonafide', 'n_spoof', 'eer', 'threshold'] missing" in doc
    assert "det.csv: expected columns set, far, frr" in doc


def test_evaluate_and_report_draw_det_curves_with_the_one_plotter():
    src = {name: (Path(evaluate.__file__).parent / name).read_text()
           for name in ("evaluate.py", "reporting/plots.py", "reporting/detector_section.py")}
    assert "from pipeline.reporting.detplot import write_plots" in src["evaluate.py"]  # which draws with det_figure
    assert "from pipeline.reporting.detplot import det_figure" in src["reporting/detector_section.py"]
    assert "norm.ppf" not in src["evaluate.py"] + src["reporting/plots.py"]
    assert "compute_eer" not in src["reporting/detector_section.py"]


def test_systems_below_the_minimum_count_are_greyed_shown_with_their_count_and_not_ranked(tmp_path):
    paths = make_fake_run(tmp_path, min_system_clips=8)     # vocoder systems: 6 test spoofs each; TTS: 10 each
    assert report.main(report_argv(paths)) == 0
    detector = _section(paths["out"].read_text(), "detector")
    blocks = _set_blocks(detector)
    small = re.findall(r'<tr class="small">\s*<td>(\w+)</td>(.*?)</tr>', blocks["test"], re.S)
    assert sorted(name for name, _ in small) == ["hifigan_universal", "world"]
    assert all("(n = 6 &lt; 8: not ranked)" in cells for _, cells in small)
    ranked = [r[0] for r in _html_rows(blocks["tts"])]
    eers = pd.read_csv(paths["reports"] / "eer.csv").query("set == 'tts' and system != 'all'")
    assert ranked[1:] == list(eers.sort_values("eer", ascending=False)["system"])   # hardest first
    assert '<tr class="small">' not in blocks["tts"]
    # the bars rank the TTS systems only; the caption names the minimum
    assert "Systems with at least 8 spoof clips." in detector
    # with the default minimum (20), every system of this tiny run is greyed and no bar chart is drawn
    metrics = paths["reports"] / "metrics.json"
    doc = json.loads(metrics.read_text())
    doc.pop("min_system_clips")
    metrics.write_text(json.dumps(doc))
    assert report.main(report_argv(paths)) == 0
    detector = _section(paths["out"].read_text(), "detector")
    assert "EER per attack system" not in detector and detector.count('<tr class="small">') == 4
