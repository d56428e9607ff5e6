"""The generator-hardness view joins, per spoof system, what other stages measured: distance to the parent, the
nuisance audit, the reference model and the detector's EER with CI; it reads them, small systems greyed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.reporting.hardness_section import hardness_section, hardness_table


def _eer() -> pd.DataFrame:
    rows = [("pooled", "all", "all", 100, 90, 0.20, 0.17, 0.23),
            ("seen_attacks", "hard_voc", "vocoder", 100, 30, 0.40, 0.33, 0.47),
            ("seen_attacks", "easy_codec", "codec", 100, 30, 0.05, 0.02, 0.09),
            ("seen_attacks", "shortcut_voc", "vocoder", 100, 25, 0.08, 0.04, 0.12),
            ("unseen_attacks", "tiny_tts", "tts", 100, 5, 0.81, 0.50, 1.00),
            ("pooled", "hard_voc", "vocoder", 100, 30, 0.40, 0.33, 0.47)]   # the same system again: first set wins
    return pd.DataFrame(rows, columns=["set", "system", "paradigm", "n_bonafide", "n_spoof", "eer", "eer_lo",
                                       "eer_hi"]).assign(condition="clean", threshold=0.0)


RECON = pd.DataFrame({"system": ["hard_voc", "easy_codec", "shortcut_voc"], "paradigm": ["vocoder", "codec", "vocoder"],
                      "logmel_distance": [0.4, 2.5, 0.9]})
AUDIT = {"min_eer": 0.35, "by_system": {"hard_voc": {"eer": 0.48}, "shortcut_voc": {"eer": 0.10}},
         "audit": {"test/codec": {"eer": 0.45}}}
REFERENCE = pd.DataFrame({"model": "aasist", "system": ["hard_voc", "easy_codec", "shortcut_voc", "tiny_tts"],
                          "paradigm": ["vocoder", "codec", "vocoder", "tts"], "eer": [0.30, 0.01, 0.02, 0.6],
                          "n_spoof": [30, 30, 25, 5]})


def test_one_row_per_system_joins_every_measure_and_reads_it():
    shown, classes, facts = hardness_table(_eer(), RECON, AUDIT, REFERENCE, {"min_system_clips": 20})
    assert list(facts["system"]) == ["hard_voc", "shortcut_voc", "easy_codec", "tiny_tts"]   # hardest first, small last
    row = facts.set_index("system")
    assert row.loc["hard_voc", "set"] == "seen_attacks" and row.loc["hard_voc", "distance"] == 0.4
    assert row.loc["easy_codec", "audit_how"] == "paradigm, test/codec"          # no own audit row: its paradigm's
    assert np.isnan(row.loc["tiny_tts", "distance"])                             # TTS: no parent
    assert row.loc["hard_voc", "reading"] == "harder than average"
    assert row.loc["easy_codec", "reading"] == "easier than average"
    assert row.loc["shortcut_voc", "reading"].startswith("easier than average; easy for the wrong reason")
    assert row.loc["tiny_tts", "reading"] == "too few clips to read (n < 20)"
    assert classes == [None, None, None, "small"]
    assert list(shown.columns) == ["system", "paradigm", "spoof clips", "log-mel distance to parent",
                                   "nuisance-audit EER", "EER of aasist", "detector EER [95% CI]", "reading"]
    assert shown.iloc[0]["detector EER [95% CI]"] == "40.00% [33.00, 47.00] (seen_attacks)"
    assert shown.iloc[2]["nuisance-audit EER"] == "45.00% (paradigm, test/codec)"


def test_the_summary_lines_name_each_system_once_and_the_wrong_reason():
    sec, lines = hardness_section(_eer(), RECON, AUDIT, REFERENCE, {"min_system_clips": 20})
    assert "tiny_tts" not in lines[0]                                            # not ranked
    assert lines[0].endswith("hardest for the detector hard_voc 40.00%; easiest easy_codec 5.00%, "
                             "shortcut_voc 8.00%")
    assert "shortcut_voc" in lines[1] and 'class="warn"' in lines[1]
    body = "".join(sec.parts)
    assert body.count('<tr class="small">') == 1
    _, none = hardness_section(None, None, None, None, None)
    assert none == []
