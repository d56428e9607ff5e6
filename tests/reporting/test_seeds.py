"""Experiments grouped over seeds: mean and CI per (method, ratio, variant), the CI-band curve, the summary's
one-sentence result and its verdicts."""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd
import pytest

from pipeline.reporting import plots, seeds
from pipeline.reporting.efficiency import experiments_section
from pipeline.reporting.experiments import parse_exp_show
from pipeline.reporting.summary import summary_section
from pipeline.reporting.sweep import Head, from_experiments

METRICS = "reports/metrics.json"


def _exp(name: str, method: str, ratio: float, seed: int, eers: dict, ci: dict | None = None,
         exclude: list | None = None, augment: bool = False, order: str = "nearest") -> dict:
    params = {"sample": {"method": method, "ratio": ratio, "seed": seed, "nc": {"order": order}},
              "train": {"seed": seed, "exclude_paradigms": exclude or [], "epochs": 8,
                        "augment": {"enabled": augment}}}
    metrics = {"eer": eers, **({"eer_ci": ci} if ci else {})}
    data = {"params": {"params.yaml": {"data": params}}, "metrics": {METRICS: {"data": metrics}}}
    return {"name": name, "executor": None,
            "revs": [{"rev": name.ljust(40, "0"), "name": name, "error": None, "data": data, "experiments": None}]}


def _sweep(nc_shift: float = 0.0, seeds_n: int = 5, ablation: bool = False, augment: bool = False) -> list:
    exps = []
    for s in range(1, seeds_n + 1):
        noise = 0.004 * (s - 3)
        jitter = 0.002 * ((s * 7) % 5 - 2)       # NC's own seed noise: the paired differences are not constant
        exps.append(_exp(f"nc{s}", "nc", 0.1, s, {"unseen_attacks": 0.20 + nc_shift + noise + jitter,
                                                  "pooled": 0.1}))
        exps.append(_exp(f"rd{s}", "random", 0.1, s, {"unseen_attacks": 0.30 + noise, "pooled": 0.1}))
        exps.append(_exp(f"nc5_{s}", "nc", 0.05, s, {"unseen_attacks": 0.25 + noise, "pooled": 0.1}))
        exps.append(_exp(f"fu{s}", "full", 1.0, s, {"unseen_attacks": 0.19 + noise, "pooled": 0.1}))
        if ablation:
            exps.append(_exp(f"ab{s}", "full", 1.0, s, {"unseen_attacks": 0.40 + noise, "pooled": 0.2},
                             exclude=["vocoder", "codec", "diffusion"]))
        if augment:
            exps.append(_exp(f"rd5_{s}", "random", 0.05, s, {"unseen_attacks": 0.20 + noise, "pooled": 0.1}))
            exps.append(_exp(f"au{s}", "nc", 0.1, s, {"unseen_attacks": 0.12 + noise, "pooled": 0.1}, augment=True))
    base = {"rev": "b" * 40, "name": "main", "error": None, "experiments": exps,
            "data": {"params": {}, "metrics": {}}}
    old = {"rev": "c" * 40, "name": None, "error": None, "data": {"params": {}, "metrics": {}},
           "experiments": [_exp("old", "nc", 0.1, 1, {"unseen_attacks": 0.9})]}   # an older commit's sweep
    return [base, old]


def test_groups_pool_seeds_only_within_method_ratio_and_variant():
    runs = parse_exp_show(_sweep(ablation=True)).runs
    groups = seeds.group_runs(runs).set_index(["method", "ratio", "variant"])
    assert len(groups) == 5                                        # the older commit's run is not pooled
    nc = groups.loc[("nc", 0.1, "")]
    assert nc["n_seeds"] == 5 and nc["eer.unseen_attacks"] == pytest.approx(0.20)
    assert nc["eer.unseen_attacks.lo"] < 0.20 < nc["eer.unseen_attacks.hi"]
    assert nc["eer.unseen_attacks.kind"] == "seeds"
    ablation = "train.exclude_paradigms=['vocoder', 'codec', 'diffusion']"
    assert groups.loc[("full", 1.0, ablation), "eer.unseen_attacks"] == pytest.approx(0.40)


def test_a_single_seed_point_carries_its_bootstrap_ci_and_says_so():
    doc = [{"rev": "b" * 40, "name": "main", "error": None, "data": {"params": {}, "metrics": {}}, "experiments": [
        _exp("one", "nc", 0.1, 1, {"unseen_attacks": 0.2}, ci={"unseen_attacks": {"lo": 0.15, "hi": 0.26}})]}]
    groups = seeds.group_runs(parse_exp_show(doc).runs)
    row = groups.iloc[0]
    assert row["n_seeds"] == 1 and row["eer.unseen_attacks.kind"] == "bootstrap"
    assert seeds.fmt_ci(row, "eer.unseen_attacks") == "20.0% [15.0, 26.0] (1 seed, bootstrap CI over clips)"


def test_headline_states_the_data_efficiency_numbers_cis_and_paired_verdicts():
    groups = seeds.group_runs(parse_exp_show(_sweep(ablation=True)).runs)
    sentence, verdicts = seeds.headline(groups)
    # NC - full per seed: +1.0 + jitter [0, +0.4, -0.2, +0.2, -0.4] points: mean +1.0, sd 0.316, t 2.776
    assert sentence.startswith("Smallest ratio within 2 EER points of full on unseen-attacks (paired by seed: mean "
                               "difference in points [95% CI]): NC from 10% (+1.0 [+0.6, +1.4] points, 5 seeds); "
                               "random at no ratio run (closest 10%: +11.0 [+11.0, +11.0] points, 5 seeds). ")
    assert "NC at 10%: unseen-attacks EER 20.0 ± " in sentence and "vs full 19.0 ± " in sentence
    assert "random 30.0 ± " in sentence and "(5 seeds)" in sentence
    assert ("NC at 10% is +1.0 EER points from the full set on unseen-attacks (paired over 5 seeds, 95% CI "
            "[+0.6, +1.4]): within the 2-point goal") in verdicts
    # the paired CI excludes 0 although the two groups' CIs overlap: the pairing removes the shared seed noise
    assert ("NC at 10% is HIGHER than full: +1.0 [+0.6, +1.4] EER points (paired over 5 seeds; sign p 0.0625, "
            "Wilcoxon p 0.0625): the claim does not hold") in verdicts
    assert "NC at 10% is lower than random at 10%: -10.0 [-10.4, -9.6] EER points (paired over 5 seeds" in \
        "\n".join(verdicts)
    assert any(v.startswith("full with hard fakes is lower than without") for v in verdicts)
    # augmentation on vs off, and NC vs random at every ratio up to the headline one
    _, more = seeds.headline(seeds.group_runs(parse_exp_show(_sweep(ablation=True, augment=True)).runs))
    assert any(v.startswith("nc with augmentation (train.augment.enabled=True) is lower than without: -8.0 [")
               for v in more)
    assert any(v.startswith("NC at 5% is HIGHER than random at 5%: +5.0 [+5.0, +5.0] EER points") and
               v.endswith("the claim does not hold") for v in more)
    # NC worse than random: the claim does not hold, and the sentence says so
    _, bad = seeds.headline(seeds.group_runs(parse_exp_show(_sweep(nc_shift=0.2)).runs))
    assert any(v.startswith("NC at 10% is HIGHER than random at 10%: +10.0 [") for v in bad)
    assert any("the 2-point goal does NOT hold" in v for v in bad)


def test_without_a_sweep_the_headline_uses_the_workspace_run_and_its_bootstrap_ci():
    metrics = {"eer": {"seen_attacks": 0.05, "unseen_attacks": 0.4},
               "eer_ci": {"unseen_attacks": {"lo": 0.3, "hi": 0.5}}}
    sentence, verdicts = seeds.headline(None, metrics)
    assert sentence == "This run, one seed: unseen-attacks EER 40.0% [30.0, 50.0] (95% bootstrap CI over clips)."
    assert "no claim about NC vs random or full" in verdicts[0]


def test_sections_draw_the_band_curve_and_put_the_answer_in_the_summary(monkeypatch):
    drawn = []
    monkeypatch.setattr(plots, "seeds_curve", lambda groups, sets: drawn.append((groups, sets)) or "data:image/png;")
    exps = parse_exp_show(_sweep(nc_shift=0.2))
    sweep = from_experiments(exps.runs)
    assert sweep.commit == "bbbbbbb" and sweep.paired       # the newest sweep only: the older commit's run is not in
    body = html.unescape("".join(experiments_section(exps, sweep).parts))
    assert drawn and drawn[0][1] == ["eer.unseen_attacks", "eer.pooled"]
    assert "Seeded sweep of commit bbbbbbb" in body and "40.0 ± " in body and "(5 seeds)" in body
    assert "Paired by seed" in body and "+21.0 [" in body          # the paired table: NC at 10% vs full
    summary = html.unescape("".join(summary_section(["unseen_attacks"], None, exps, sweep=sweep,
                                                    head=Head("ccccccc", 3)).parts))
    assert summary.startswith('<p class="headline">No ratio comes within 2 EER points of full on unseen attacks '
                              "(chosen on that set itself: the sweep has no dev EER): the closest is nc at 5% "
                              "(+6.0 [+6.0, +6.0] points, 5 seeds vs full, paired by seed)")
    assert '<p class="warn">Seeded sweep: 4 points' in summary and "run on commit bbbbbbb" in summary
    assert "The workspace is at commit ccccccc, 3 commits later" in summary
    rows = re.findall(r"<tr>\s*<td>(\d+%)</td>\s*<td>(\w+)</td>", summary.split("<h3>Pooled")[0])
    assert rows == [("5%", "nc"), ("10%", "random"), ("100%", "full")]      # the best method at each ratio
    assert "nc: -10.0 [-10.4, -9.6] points, 5 seeds: lower" in summary       # random vs the runner-up, paired
    same = html.unescape("".join(summary_section([], None, exps, sweep=sweep, head=Head("bbbbbbb")).parts))
    assert "The workspace is at the same commit (bbbbbbb)" in same and '<p class="note">Seeded sweep' in same


def test_the_summary_chooses_methods_and_ratios_on_dev_and_reports_them_on_test():
    # on unseen attacks random is the lowest at 10%, but on dev nc is: the summary picks nc and shows its test EER
    exps = []
    for s in range(1, 6):
        noise = 0.004 * (s - 3)
        exps.append(_exp(f"nc{s}", "nc", 0.1, s, {"unseen_attacks": 0.30 + noise, "dev": 0.10 + noise}))
        exps.append(_exp(f"rd{s}", "random", 0.1, s, {"unseen_attacks": 0.25 + noise, "dev": 0.20 + noise}))
        exps.append(_exp(f"fu{s}", "full", 1.0, s, {"unseen_attacks": 0.22 + noise, "dev": 0.09 + noise}))
    doc = [{"rev": "b" * 40, "name": "main", "error": None, "experiments": exps, "data": {"params": {}, "metrics": {}}}]
    sweep = from_experiments(parse_exp_show(doc).runs)
    summary = html.unescape("".join(summary_section([], None, None, sweep=sweep, head=Head("bbbbbbb")).parts))
    assert summary.startswith('<p class="headline">The smallest ratio within 2 EER points of full on dev (where '
                              "methods are chosen): 10% with nc; on unseen attacks: +8.0 [+8.0, +8.0] points, 5 seeds "
                              "vs full, paired by seed; above the +2 goal on unseen attacks.</p>")
    unseen = summary.split("<h3>Unseen attacks")[1].split("<h3>")[0]
    assert "method chosen on dev" in unseen
    assert re.findall(r"<tr>\s*<td>(\d+%)</td>\s*<td>(\w+)</td>", unseen) == [("10%", "nc"), ("100%", "full")]
    assert "random: +5.0 [+5.0, +5.0] points, 5 seeds: HIGHER" in unseen     # reported on test, against the runner-up


def test_the_band_curve_renders():
    groups = seeds.group_runs(parse_exp_show(_sweep(ablation=True)).runs)
    uri = plots.seeds_curve(groups, seeds.shown_sets(groups))
    assert uri.startswith("data:image/png;base64,") and len(uri) > 5000
    assert np.isfinite(groups["eer.unseen_attacks.lo"]).all()


def test_sweep_export_writes_the_grouped_table_and_the_verdicts(tmp_path, monkeypatch):
    from pipeline.reporting import sweep_export
    from pipeline.reporting.experiments import ExperimentRuns

    exps = parse_exp_show(_sweep(ablation=True))
    monkeypatch.setattr(sweep_export, "load_experiments", lambda repo, metrics_file=None: exps)
    assert sweep_export.main(["--repo", str(tmp_path), "--out", str(tmp_path / "reports")]) == 0
    table = pd.read_csv(tmp_path / "reports" / "sweep.csv", keep_default_na=False)
    nc = table[(table["method"] == "nc") & (table["ratio"] == 0.1) & (table["variant"] == "")].iloc[0]
    assert nc["n_seeds"] == 5 and nc["seeds"] == "1 2 3 4 5"
    assert nc["unseen_attacks_mean"] == pytest.approx(20.0) and nc["unseen_attacks_lo"] < 20 < nc["unseen_attacks_hi"]
    doc = (tmp_path / "reports" / "sweep.md").read_text()
    assert "(baseline commit bbbbbbb)" in doc and "| nc | 0.1 | - | 5 | " in doc
    assert "NC at 10%: unseen-attacks EER 20.0 ± " in doc and "- NC at 10% is lower than random at 10%" in doc
    assert "## Paired by seed" in doc and "| nc | 0.1 | - | full | +1.0 [+0.6, +1.4] (5 seeds; sign p 0.0625" in doc
    paired = pd.read_csv(tmp_path / "reports" / "sweep_paired.csv", keep_default_na=False)
    row = paired[(paired["method"] == "nc") & (paired["ratio"] == 0.1) & (paired["reference"] == "random")
                 & (paired["set"] == "unseen_attacks")].iloc[0]
    assert row["n_pairs"] == 5 and row["diff_mean"] == pytest.approx(-10.0) and row["verdict"] == "lower"
    variants = pd.read_csv(tmp_path / "reports" / "sweep_variants.csv", keep_default_na=False)
    ablated = variants[(variants["method"] == "full") & (variants["set"] == "unseen_attacks")].iloc[0]
    assert ablated["variant"].startswith("train.exclude_paradigms=") and ablated["pairs"] == 5   # vs the main full runs
    assert ablated["diff_mean"] == pytest.approx(21.0) and ablated["verdict"] == "HIGHER"
    # nothing to export: a clear error, no file written
    monkeypatch.setattr(sweep_export, "load_experiments",
                        lambda repo, metrics_file=None: ExperimentRuns(None, "dvc is not installed"))
    assert sweep_export.main(["--repo", str(tmp_path), "--out", str(tmp_path / "empty")]) == 1
    assert not (tmp_path / "empty").exists()


def test_paired_table_matches_a_hand_computation_and_pairs_by_seed_value():
    # margin at 5% and full, seeds listed in different orders, seed 4 missing from full: 3 pairs (1, 2, 3)
    runs = [_exp("m3", "margin", 0.05, 3, {"unseen_attacks": 0.30}), _exp("m1", "margin", 0.05, 1,
            {"unseen_attacks": 0.25}), _exp("m2", "margin", 0.05, 2, {"unseen_attacks": 0.20}),
            _exp("m4", "margin", 0.05, 4, {"unseen_attacks": 0.90}),
            _exp("f2", "full", 1.0, 2, {"unseen_attacks": 0.22}), _exp("f1", "full", 1.0, 1, {"unseen_attacks": 0.20}),
            _exp("f3", "full", 1.0, 3, {"unseen_attacks": 0.24})]
    doc = [{"rev": "b" * 40, "name": "main", "error": None, "data": {"params": {}, "metrics": {}}, "experiments": runs}]
    groups = seeds.group_runs(parse_exp_show(doc).runs)
    table = seeds.paired_table(groups)
    row = table[(table["method"] == "margin") & (table["reference"] == "full")].iloc[0]
    # d = [0.05, -0.02, 0.06]: mean 0.03, sd 0.043589, half = 4.302653 x 0.043589 / sqrt(3)
    half = 4.302652730 * 0.0435889894 / np.sqrt(3)
    assert row["n_pairs"] == 3 and row["diff_mean"] == pytest.approx(0.03)
    assert (row["diff_lo"], row["diff_hi"]) == (pytest.approx(0.03 - half), pytest.approx(0.03 + half))
    # sign: 2 of 3 positive -> p = 1; Wilcoxon: |d| ranks 2, 1, 3, W- = 1 -> exact p = 2 x 2/8 = 0.5
    assert row["sign_p"] == pytest.approx(1.0) and row["wilcoxon_p"] == pytest.approx(0.5)
    assert row["verdict"] == "no significant difference"
    assert table["reference"].tolist() == ["full"]                 # no random runs: nothing to pair with


def test_the_nc_order_is_part_of_the_method_label_not_a_variant():
    runs = [_exp(f"{o}{s}", "nc", 0.1, s, {"unseen_attacks": 0.2 + 0.01 * s}, order=o)
            for o in ("nearest", "stratified") for s in (1, 2)]
    runs += [_exp(f"r{s}", "random", 0.1, s, {"unseen_attacks": 0.3}) for s in (1, 2)]
    doc = [{"rev": "b" * 40, "name": "main", "error": None, "data": {"params": {}, "metrics": {}}, "experiments": runs}]
    groups = seeds.group_runs(parse_exp_show(doc).runs)
    assert sorted(zip(groups["method"], groups["variant"])) == [("nc", ""), ("nc:stratified", ""), ("random", "")]
    assert (groups["n_seeds"] == 2).all()


def test_the_summary_reads_the_committed_sweep_files_with_their_paired_intervals(tmp_path, monkeypatch):
    from pipeline.reporting import sweep_export
    from pipeline.reporting.sweep import load_sweep

    exps = parse_exp_show(_sweep())
    monkeypatch.setattr(sweep_export, "load_experiments", lambda repo, metrics_file=None: exps)
    reports = tmp_path / "reports"
    assert sweep_export.main(["--repo", str(tmp_path), "--out", str(reports)]) == 0
    with_runs = load_sweep(None, reports)                       # sweep_runs.csv: per-seed values, paired here
    (reports / "sweep_runs.csv").unlink()
    committed = load_sweep(None, reports)                       # sweep.csv + sweep_paired.csv: paired as recorded
    assert with_runs.paired and with_runs.source == "reports/sweep_runs.csv"
    assert not committed.paired and committed.source == "reports/sweep.csv and reports/sweep_paired.csv"
    assert committed.commit == with_runs.commit == "bbbbbbb"
    pages = [html.unescape("".join(summary_section([], None, None, sweep=s, head=Head("ddddddd", 2)).parts))
             for s in (with_runs, committed)]
    for page in pages:
        assert page.startswith('<p class="headline">The smallest ratio within 2 EER points of full on unseen '
                               "attacks (chosen on that set itself: the sweep has no dev EER): 10% with nc "
                               "(+1.0 [+0.6, +1.4] points, 5 seeds vs full, paired by seed; "
                               "its upper bound is within the goal: shown).</p>")
        assert "run on commit bbbbbbb" in page and "The workspace is at commit ddddddd, 2 commits later" in page
        assert "-10.0 [-10.4, -9.6] points, 5 seeds: lower" in page   # nc vs random at 10%, paired
    body = html.unescape("".join(experiments_section(None, committed).parts))
    assert "as reports/sweep_paired.csv recorded it" in body and "-10.0 [-10.4, -9.6] (5 seeds): lower" in body
    # a paired file of another commit than the table is refused, not mixed in
    paired = pd.read_csv(reports / "sweep_paired.csv", dtype=str, keep_default_na=False)
    paired.assign(commit="eeeeeee").to_csv(reports / "sweep_paired.csv", index=False)
    with pytest.raises(ValueError, match="paired intervals of commit eeeeeee, but .*sweep.csv is of commit bbbbbbb"):
        load_sweep(None, reports)
