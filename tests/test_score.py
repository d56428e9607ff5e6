"""score command: folders of test-made files, clip tables, and clear errors for non-audio inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import score
from pipeline.models import build_model, save_checkpoint
from pipeline.schema import validate_clips, write_clips
from tests.conftest import make_wave, tiny_clip_table, write_wave


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("detector")
    model = build_model({"arch": "resnet", "width": 4, "embedding_dim": 8, "sample_rate": 16000}).eval()
    save_checkpoint(model, {"sample_rate": 16000}, path / "model.pt")
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "audio"
    write_wave(root / "a.wav", make_wave(0.5, seed=1))
    write_wave(root / "sub" / "b.flac", make_wave(0.7, seed=2))
    write_wave(root / "sub" / "c.WAV", make_wave(0.3, seed=3))
    (root / "notes.txt").write_text("not audio, skipped by extension")
    return root


def _read(path: Path) -> dict[str, float]:
    return score.read_scores(path)


def _argv(detector: Path, out: Path, *inputs) -> list[str]:
    return ["--model", str(detector), "--out", str(out), "--eval-s", "0.5", "--threads", "1", *map(str, inputs)]


def test_scores_every_audio_file_of_a_folder(detector, folder, tmp_path):
    out = tmp_path / "scores.txt"
    assert score.main(_argv(detector, out, folder)) == 0
    scores = _read(out)
    assert set(scores) == {str(folder / "a.wav"), str(folder / "sub" / "b.flac"), str(folder / "sub" / "c.WAV")}
    assert all(np.isfinite(v) for v in scores.values())


def test_a_named_file_and_the_folder_give_the_same_score(detector, folder, tmp_path):
    score.main(_argv(detector, tmp_path / "dir.txt", folder))
    score.main(_argv(detector, tmp_path / "file.txt", folder / "a.wav"))
    assert _read(tmp_path / "file.txt")[str(folder / "a.wav")] == pytest.approx(
        _read(tmp_path / "dir.txt")[str(folder / "a.wav")], abs=1e-5)


def test_precision_bf16_scores_near_fp32_and_a_bad_precision_is_a_usage_error(detector, folder, tmp_path):
    assert score.main(_argv(detector, tmp_path / "fp32.txt", folder)) == 0
    assert score.main(_argv(detector, tmp_path / "bf16.txt", folder) + ["--precision", "bf16"]) == 0
    fp32, bf16 = _read(tmp_path / "fp32.txt"), _read(tmp_path / "bf16.txt")
    assert set(bf16) == set(fp32)
    assert all(bf16[k] == pytest.approx(fp32[k], abs=0.05 * (1 + abs(fp32[k]))) for k in fp32)
    with pytest.raises(SystemExit):
        score.main(_argv(detector, tmp_path / "x.txt", folder) + ["--precision", "int8"])
    assert not (tmp_path / "x.txt").exists()


def test_a_named_non_audio_file_is_a_clear_error(detector, folder, tmp_path, capsys):
    bad = tmp_path / "readme.txt"
    bad.write_text("hello")
    out = tmp_path / "scores.txt"
    assert score.main(_argv(detector, out, folder / "a.wav", bad)) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not an audio file" in err
    assert not out.exists()


def test_an_undecodable_file_in_a_folder_is_a_reject_line_and_the_rest_is_scored(detector, folder, tmp_path, capsys):
    (folder / "broken.wav").write_bytes(b"RIFF this is not a wave file")
    out = tmp_path / "scores.txt"
    assert score.main(_argv(detector, out, folder)) == 0
    err = capsys.readouterr().err
    assert f"reject {folder / 'broken.wav'}:" in err
    assert len(_read(out)) == 3


def test_missing_path_and_bad_checkpoint_are_errors(detector, tmp_path, folder, capsys):
    assert score.main(_argv(detector, tmp_path / "o.txt", tmp_path / "nope.wav")) == 2
    assert "no such file" in capsys.readouterr().err
    assert score.main(_argv(tmp_path, tmp_path / "o.txt", folder)) == 2
    assert "does not exist" in capsys.readouterr().err


def test_scores_a_clip_table_by_clip_id(detector, tmp_path):
    clips = validate_clips(tiny_clip_table(tmp_path / "clips", n_speakers=2, clips_per_speaker=1))
    write_clips(clips, tmp_path / "clips.parquet")
    out = tmp_path / "scores.txt"
    assert score.main(_argv(detector, out, tmp_path / "clips.parquet")) == 0
    assert set(_read(out)) == set(clips["clip_id"])


def test_cli_dispatch_writes_to_stdout(detector, folder):
    proc = subprocess.run([sys.executable, "-m", "pipeline", "score", *_argv(detector, Path("-"), folder / "a.wav")],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    header, line = proc.stdout.strip().split("\n")
    clip_id, value = line.split("\t")
    assert header == "clip_id\tscore"
    assert clip_id == str(folder / "a.wav") and np.isfinite(float(value))


def test_out_naming_an_input_is_refused_and_the_input_is_untouched(detector, folder, tmp_path, capsys):
    a, b = folder / "a.wav", folder / "sub" / "b.flac"
    before = a.read_bytes(), b.read_bytes()
    assert score.main(_argv(detector, a, b)) == 2            # the careless `--out a.wav b.wav`
    assert score.main(_argv(detector, b, a, b)) == 2         # --out is one of the inputs
    assert score.main(_argv(detector, b, folder)) == 2       # --out is audio inside an input folder
    assert score.main(_argv(detector, detector / "model.pt", a)) == 2   # --out is the checkpoint
    err = capsys.readouterr().err
    assert err.count("refusing to overwrite") >= 3 and str(a) in err
    assert (a.read_bytes(), b.read_bytes()) == before
    assert score.main(_argv(detector, tmp_path / "new.wav", a)) == 2       # audio by extension
    assert "audio/data extension" in capsys.readouterr().err and not (tmp_path / "new.wav").exists()
    assert score.main(_argv(detector, tmp_path, a)) == 2                   # a folder
    assert "is a folder" in capsys.readouterr().err


def test_out_refuses_an_existing_audio_file_whatever_its_name(detector, folder, tmp_path, capsys):
    disguised = tmp_path / "results.txt"
    disguised.write_bytes((folder / "a.wav").read_bytes())
    assert score.main(_argv(detector, disguised, folder / "sub")) == 2
    assert "exists and is not a score file" in capsys.readouterr().err
    assert disguised.read_bytes() == (folder / "a.wav").read_bytes()
    old = tmp_path / "old_scores.tsv"   # an old score file is replaced, as expected
    old.write_text("clip_id\tscore\nstale\t0.5\n")
    assert score.main(_argv(detector, old, folder / "a.wav")) == 0 and len(_read(old)) == 1


@pytest.mark.parametrize("flag, value", [("--eval-s", "0"), ("--eval-s", "-1"), ("--eval-s", "nan"),
                                         ("--batch-size", "0"), ("--batch-size", "1.5"), ("--threads", "0")])
def test_non_positive_sizes_are_a_usage_error(detector, folder, tmp_path, capsys, flag, value):
    out = tmp_path / "s.tsv"
    with pytest.raises(SystemExit) as exc:
        score.main([*_argv(detector, out, folder / "a.wav"), flag, value])
    assert exc.value.code == 2 and flag in capsys.readouterr().err and not out.exists()


def test_paths_with_spaces_tabs_newlines_and_backslashes_round_trip(detector, tmp_path):
    names = ["a b.wav", "tab\there.wav", "new\nline.wav", "back\\slash.wav", "日本語.wav"]
    root = tmp_path / "odd"
    for k, name in enumerate(names):
        write_wave(root / name, make_wave(0.4, seed=k))
    out = tmp_path / "s.tsv"
    assert score.main(_argv(detector, out, root)) == 0
    scores = _read(out)
    assert set(scores) == {str(root / n) for n in names}
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + len(names) and all(line.count("\t") == 1 for line in lines)


def test_asvspoof_format_writes_space_separated_lines_and_refuses_spaced_ids(detector, folder, tmp_path, capsys):
    out = tmp_path / "s.txt"
    assert score.main([*_argv(detector, out, folder), "--format", "asvspoof"]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and all(len(line.split(" ")) == 2 for line in lines)
    write_wave(tmp_path / "x y.wav", make_wave(0.4))
    assert score.main([*_argv(detector, tmp_path / "t.txt", tmp_path / "x y.wav"), "--format", "asvspoof"]) == 2
    assert "whitespace" in capsys.readouterr().err and not (tmp_path / "t.txt").exists()


def test_escape_round_trip_and_bad_escape():
    for text in ["plain", "a\tb\nc\\d\re", "\\t literal", "end\\"]:
        assert score.unescape_field(score.escape_field(text)) == text
        assert "\t" not in score.escape_field(text) and "\n" not in score.escape_field(text)
    with pytest.raises(ValueError, match="bad escape"):
        score.unescape_field("a\\x")


def test_a_checkpoint_without_state_dict_is_exit_2(detector, folder, tmp_path, capsys):
    payload = torch.load(detector / "model.pt", weights_only=True)
    del payload["state_dict"]
    (tmp_path / "m").mkdir()
    torch.save(payload, tmp_path / "m" / "model.pt")
    out = tmp_path / "s.tsv"
    assert score.main(_argv(tmp_path / "m", out, folder / "a.wav")) == 2
    assert "damaged hardset checkpoint" in capsys.readouterr().err and not out.exists()


def test_a_labelled_table_writes_label_and_system_beside_the_score(detector, folder, tmp_path):
    clips = validate_clips(tiny_clip_table(tmp_path / "clips", n_speakers=2, clips_per_speaker=1))
    write_clips(clips, tmp_path / "clips.parquet")
    out = tmp_path / "scores.tsv"
    assert score.main(_argv(detector, out, tmp_path / "clips.parquet", folder / "a.wav")) == 0
    assert out.read_text().splitlines()[0] == "clip_id\tscore\tlabel\tsystem"
    table = score.read_score_table(out).set_index("clip_id")
    truth = clips.set_index("clip_id")
    assert list(table.loc[truth.index, "label"]) == list(truth["label"])
    assert list(table.loc[truth.index, "system"]) == list(truth["system"])  # `-` for bona fide, as in the table
    assert table.loc[str(folder / "a.wav"), ["label", "system"]].tolist() == ["", ""]  # an audio file has no label
    assert "\\-" not in out.read_text()  # a bona fide system `-` is written plainly


def _with_dev_threshold(detector: Path, tmp_path: Path, threshold: float) -> Path:
    from pipeline.models import load_checkpoint

    model, _ = load_checkpoint(detector)
    save_checkpoint(model, {"sample_rate": 16000, "dev": {"eer": 0.25, "threshold": threshold}},
                    tmp_path / "thr" / "model.pt")
    return tmp_path / "thr"


def test_threshold_dev_writes_the_decision_at_the_models_stored_threshold(detector, tmp_path):
    clips = validate_clips(tiny_clip_table(tmp_path / "clips", n_speakers=2, clips_per_speaker=2))
    write_clips(clips, tmp_path / "clips.parquet")
    assert score.main(_argv(detector, tmp_path / "plain.tsv", tmp_path / "clips.parquet")) == 0
    plain = _read(tmp_path / "plain.tsv")
    t = float(np.median(list(plain.values())))
    model_dir = _with_dev_threshold(detector, tmp_path, t)
    out = tmp_path / "decided.tsv"
    assert score.main([*_argv(model_dir, out, tmp_path / "clips.parquet"), "--threshold", "dev"]) == 0
    table = score.read_score_table(out)
    assert list(table.columns) == ["clip_id", "score", "label", "system", "decision"]
    expected = ["bonafide" if plain[c] > t else "spoof" for c in table["clip_id"]]
    assert list(table["decision"]) == expected and {"bonafide", "spoof"} == set(expected)
    assert score.main([*_argv(detector, tmp_path / "n.tsv", tmp_path / "clips.parquet"), "--threshold=-1e9"]) == 0
    assert set(score.read_score_table(tmp_path / "n.tsv")["decision"]) == {"bonafide"}


def test_threshold_dev_without_a_stored_threshold_and_with_asvspoof_format_are_errors(detector, folder, tmp_path,
                                                                                      capsys):
    out = tmp_path / "s.tsv"
    assert score.main([*_argv(detector, out, folder / "a.wav"), "--threshold", "dev"]) == 2
    assert "records no dev threshold" in capsys.readouterr().err and not out.exists()
    assert score.main([*_argv(detector, out, folder / "a.wav"), "--threshold", "0", "--format", "asvspoof"]) == 2
    assert "use --format tsv" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit):
        score.main([*_argv(detector, out, folder / "a.wav"), "--threshold", "median"])
    assert "neither `dev` nor a number" in capsys.readouterr().err
