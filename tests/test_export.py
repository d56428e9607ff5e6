"""export stage and command: the DVC stage's form (params export), the command's modes, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from pipeline import export, import_model
from pipeline.models import build_model
from pipeline.params import ConfigError


def _params(tmp_path: Path, **export_kw) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"export": {"formats": [], "link": "hard", "model": False, **export_kw}}))
    return path


def _stage(handoff_tables, tmp_path: Path, params: Path, out: Path, model: Path | None = None) -> int:
    argv = ["--from-params", "--params", str(params), "--manifest", str(handoff_tables["train"]), "--dev",
            str(handoff_tables["dev"]), "--eval", str(handoff_tables["eval"]), "--out", str(out)]
    return export.main(argv + (["--model", str(model)] if model else []))


def test_the_stage_with_no_formats_writes_only_a_note(handoff_tables, tmp_path):
    out = tmp_path / "exports"
    assert _stage(handoff_tables, tmp_path, _params(tmp_path), out, tmp_path / "no_model") == 0
    assert [p.name for p in out.iterdir()] == ["EXPORT.json"]
    summary = json.loads((out / "EXPORT.json").read_text())
    assert summary["formats"] == [] and summary["model"] is False and "nothing exported" in summary["note"]


def test_the_stage_bundles_every_format_and_the_model(handoff_tables, tmp_path):
    torch.manual_seed(0)
    torch.save(build_model({"arch": "aasist-l"}).state_dict(), tmp_path / "AASIST-L.pth")
    assert import_model.main(["--arch", "aasist-l", "--checkpoint", str(tmp_path / "AASIST-L.pth"),
                              "--out", str(tmp_path / "imported")]) == 0
    out = tmp_path / "exports"
    (out / "stale").mkdir(parents=True)
    (out / "EXPORT.json").write_text("{}")  # an earlier export: replaced whole
    params = _params(tmp_path, formats=["asvspoof", "lhotse", "hf"], model=True, link="copy")
    assert _stage(handoff_tables, tmp_path, params, out, tmp_path / "imported") == 0
    assert sorted(p.name for p in out.iterdir()) == ["EXPORT.json", "asvspoof", "hf", "lhotse", "model"]
    assert (out / "asvspoof" / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.eval.trl.txt").is_file()
    assert (out / "hf" / "dataset_dict.json").is_file() and (out / "lhotse" / "clip_map.csv").is_file()
    assert (out / "model" / "MODEL_CARD.md").is_file() and (out / "model" / "model.pt").stat().st_nlink == 1
    summary = json.loads((out / "EXPORT.json").read_text())
    assert summary["clips"] == {"dev_bonafide": 2, "dev_spoof": 4, "eval_bonafide": 2, "eval_spoof": 4,
                                "train_bonafide": 4, "train_spoof": 8}
    assert summary["hf"]["rows"] == {"train": 12, "dev": 6, "eval": 6} and summary["asvspoof"]["audio"] == {
        "copy": 24}


@pytest.mark.parametrize("block, match", [({"formats": ["csv"]}, "export.formats: unknown names"),
                                          ({"formats": ["hf", "hf"]}, "listed twice"),
                                          ({"link": "move"}, "export.link"),
                                          ({"model": "yes"}, "export.model"),
                                          ({"format": ["hf"]}, "unknown keys")])
def test_bad_export_params_are_one_line_config_errors(block, match):
    with pytest.raises(ConfigError, match=match):
        export.ExportParams.from_params(block)


@pytest.mark.parametrize("argv, match", [
    (["--format", "hf"], "needs a table"),
    (["--format", "hf", "--model", "m"], "one of the two"),
    (["--manifest", "t.parquet"], "one of the two"),
    (["--model", "m", "--metrics", "r.json", "--format", "hf", "--manifest", "t"], "one of the two"),
    (["--from-params", "--format", "hf"], "takes the formats"),
])
def test_unclear_command_lines_are_exit_2(argv, match, tmp_path, capsys):
    assert export.main([*argv, "--out", str(tmp_path / "x")]) == 2
    assert match in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_an_output_inside_data_or_over_a_foreign_folder_is_refused_and_nothing_is_written(handoff_tables, tmp_path,
                                                                                         monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["--manifest", str(handoff_tables["train"]), "--format", "asvspoof", "--out"]
    assert export.main([*argv, "data/exports"]) == 2
    assert "inside data/" in capsys.readouterr().err and not (tmp_path / "data").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    assert export.main([*argv, "mine"]) == 2
    assert "not an export" in capsys.readouterr().err and [p.name for p in (tmp_path / "mine").iterdir()] == [
        "thesis.tex"]
    assert export.main([*argv, str(handoff_tables["train"])]) == 2  # over an input file
    assert "is a file" in capsys.readouterr().err and handoff_tables["train"].stat().st_size > 0


def test_a_table_that_is_not_a_clip_table_is_exit_2(tmp_path, capsys):
    import pandas as pd

    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "t.parquet")
    assert export.main(["--manifest", str(tmp_path / "t.parquet"), "--format", "hf", "--out", str(tmp_path / "o")]) == 2
    assert "not a clip table" in capsys.readouterr().err
