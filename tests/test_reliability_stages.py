"""What the commands and stages refuse, each as one line and exit code 2 (issue 27, cases 5, 12, 13, 24, 25, 26, 27,
28): score never writes over a model's files or a file that is not a score file; NaN weights and an arch that
contradicts the weights are refused at load, NaN scores at write; evaluate blames the model, not the sets; an
empty pool, a corpus of one class and a leave-out of every paradigm stop with one line; an unwritable output or a
full disk names the file before (or instead of) a traceback; --eval-s is bounded; many rejects are a count."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline import __main__ as cli
from pipeline import import_model, score, train
from pipeline.detector.score_checks import print_rejects
from pipeline.logs import StageError
from pipeline.models import CheckpointError, build_model, load_checkpoint, save_checkpoint
from pipeline.schema import validate_clips, write_clips
from tests.conftest import make_wave, tiny_clip_table, write_wave
from tests.test_pretrain import TEACHER_KEYS

SR = 16000
SMALL = {"arch": "resnet", "width": 4, "embedding_dim": 8, "sample_rate": SR}
CHAIN = {"version": 2, "sample_rate": SR, "vad_trim": False, "max_duration_s": 10.0, "lowpass_hz": None}


def _model(folder: Path, scale: float = 1.0, nan: bool = False) -> Path:
    """A tiny detector folder (model.pt recording a chain capped at 10 s, config.json, metrics.json); `scale`
    multiplies every weight (1e30: finite weights whose logits overflow), `nan` puts a NaN in one tensor."""
    torch.manual_seed(0)
    model = build_model(SMALL).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
        if nan:
            next(model.parameters()).view(-1)[0] = float("nan")
    save_checkpoint(model, {"sample_rate": SR, "chain": CHAIN, "train_paradigms": ["vocoder"]}, folder / "model.pt")
    (folder / "config.json").write_text('{"arch": "resnet"}')
    (folder / "metrics.json").write_text('{"dev_eer": 0.1}')
    return folder


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> Path:
    return _model(tmp_path_factory.mktemp("detector"))


@pytest.fixture
def audio(tmp_path) -> Path:
    write_wave(tmp_path / "in" / "a.wav", make_wave(0.5, seed=1))
    return tmp_path / "in"


def _score(model: Path, out: Path | str, *inputs, extra: tuple = ()) -> int:
    return cli.main(["score", "--model", str(model), "--out", str(out), "--eval-s", "0.5", "--threads", "1",
                     *extra, *map(str, inputs)])


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ (INFO|WARNING) ")   # pipeline.logs records, not errors


def _one_line(capsys) -> str:
    """The one error line on stderr (log records aside), with no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not LOG_LINE.match(line)]
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------- case 5: score --out over metadata


@pytest.mark.parametrize("name", ["config.json", "metrics.json", "scores.tsv"])
def test_score_refuses_any_out_inside_a_model_folder(detector, audio, capsys, name):
    before = {p.name: p.read_bytes() for p in detector.iterdir()}
    assert _score(detector, detector / name, audio) == 2
    assert "inside the model folder" in _one_line(capsys)
    assert {p.name: p.read_bytes() for p in detector.iterdir()} == before


def test_score_refuses_an_existing_file_that_is_not_a_score_file_and_replaces_a_score_file(detector, audio, tmp_path,
                                                                                           capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("my results, keep\n")
    assert _score(detector, notes, audio) == 2
    assert "is not a score file" in _one_line(capsys) and notes.read_text() == "my results, keep\n"
    old = tmp_path / "old.tsv"
    old.write_text("clip_id\tscore\nx\t0.5\n")
    assert _score(detector, old, audio) == 0
    assert list(score.read_scores(old)) == [str(audio / "a.wav")]


# ----------------------------------------------------------------------------- cases 12, 13, 25: weights and arch


def test_nan_weights_are_refused_at_load_by_score_and_evaluate(tmp_path, audio, capsys):
    bad = _model(tmp_path / "nan", nan=True)
    with pytest.raises(CheckpointError, match="hold NaN or infinite values"):
        load_checkpoint(bad)
    assert _score(bad, tmp_path / "s.tsv", audio) == 2
    assert "NaN or infinite" in _one_line(capsys) and not (tmp_path / "s.tsv").exists()
    assert cli.main(["evaluate", *_evaluate_args(tmp_path, bad)]) == 2
    err = _one_line(capsys)
    assert "NaN or infinite" in err and str(bad) in err and "evaluation set" not in err


def test_finite_weights_that_score_nan_or_inf_are_refused_at_write(tmp_path, audio, capsys):
    loud = _model(tmp_path / "loud", scale=1e30)   # finite weights; the logits overflow
    assert _score(loud, tmp_path / "s.tsv", audio) == 1
    assert "are not finite" in _one_line(capsys) and not (tmp_path / "s.tsv").exists()


def test_evaluate_blames_a_model_that_scores_nan_not_the_eval_sets(tmp_path, capsys):
    loud = _model(tmp_path / "loud", scale=1e30)
    assert cli.main(["evaluate", *_evaluate_args(tmp_path, loud)]) == 2
    err = _one_line(capsys)
    assert "the detector gave" in err and "not a number" in err and "no evaluation set" not in err
    assert not (tmp_path / "reports" / "metrics.json").exists()


def test_import_model_refuses_nan_aasist_weights(tmp_path, capsys):
    state = build_model({"arch": "aasist-l"}).state_dict()
    state[next(k for k, v in state.items() if v.is_floating_point())].view(-1)[0] = float("inf")
    torch.save(state, tmp_path / "AASIST-L.pth")
    code = cli.main(["import_model", "--arch", "aasist-l", "--checkpoint", str(tmp_path / "AASIST-L.pth"),
                     "--out", str(tmp_path / "out")])
    assert code == 2 and "NaN or infinite" in _one_line(capsys) and not (tmp_path / "out").exists()
    assert issubclass(import_model.ImportError_, StageError)


def test_an_arch_that_contradicts_the_weights_is_a_checkpoint_error(detector, tmp_path):
    payload = torch.load(detector / "model.pt", weights_only=True)
    (tmp_path / "a").mkdir()
    torch.save({**payload, "arch": "convnext"}, tmp_path / "a" / "model.pt")        # the record says convnext
    with pytest.raises(CheckpointError, match="records architecture 'convnext' but its model config"):
        load_checkpoint(tmp_path / "a")
    (tmp_path / "b").mkdir()
    both = {**payload, "arch": "convnext", "config": {**payload["config"], "arch": "convnext"}}
    torch.save(both, tmp_path / "b" / "model.pt")                                    # ResNet weights under convnext
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "b")


def test_a_pickle_bearing_checkpoint_is_one_line_in_evaluate_as_in_score(detector, tmp_path, audio, capsys):
    payload = torch.load(detector / "model.pt", weights_only=True)
    (tmp_path / "p").mkdir()
    torch.save({**payload, "extra": {"hook": Path("runs/code")}}, tmp_path / "p" / "model.pt")  # a pickled object
    assert _score(tmp_path / "p", tmp_path / "s.tsv", audio) == 2
    assert "weights only, no pickled code" in _one_line(capsys)
    assert cli.main(["evaluate", *_evaluate_args(tmp_path, tmp_path / "p")]) == 2
    assert "weights only, no pickled code" in _one_line(capsys)


def _evaluate_args(tmp_path: Path, model: Path) -> list[str]:
    """evaluate's arguments on a tiny clip table (written once per tmp_path) with `model`."""
    if not (tmp_path / "clips.parquet").exists():
        write_clips(validate_clips(tiny_clip_table(tmp_path / "clips", n_speakers=4, clips_per_speaker=2)),
                    tmp_path / "clips.parquet")
        params = {"seed": 1, "audio": {"sample_rate": SR}, "runtime": {"device": "cpu", "threads": 1},
                  "evaluate": {"batch_size": 8, "eval_s": 0.5, "sets": ["test"], "bootstrap": 0}}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return ["--params", str(tmp_path / "params.yaml"), "--model", str(model), "--clips",
            str(tmp_path / "clips.parquet"), "--out", str(tmp_path / "reports")]


# ----------------------------------------------------------------------------- case 24: one line, exit 2


def _stage_params(tmp_path: Path, **sections) -> Path:
    params = {"seed": 1, "audio": {"sample_rate": SR}, "runtime": {"device": "cpu", "threads": 1}, **sections}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path / "params.yaml"


@pytest.fixture
def one_class(tmp_path) -> Path:
    """A clip table of bona fide clips only (a corpus of one class)."""
    clips = tiny_clip_table(tmp_path / "clips", n_speakers=4, clips_per_speaker=1, with_spoof=False, seconds=0.5)
    write_clips(validate_clips(clips), tmp_path / "clips.parquet")
    return tmp_path / "clips.parquet"


def test_a_teacher_pool_with_no_clips_is_one_line(tmp_path, one_class, detector, capsys):
    params = _stage_params(tmp_path, teachers={"t1": {**TEACHER_KEYS, "pool": {"paradigms": ["codec"]}}},
                           embed={"batch_size": 4, "eval_s": 0.5})
    code = cli.main(["embed", "t1", "--params", str(params), "--clips", str(one_class), "--teacher-dir",
                     str(detector), "--out", str(tmp_path / "emb")])
    assert code == 2 and "its pool (teachers.t1.pool) selects no clips" in _one_line(capsys)


def test_a_corpus_of_one_class_is_one_line_in_pretrain(tmp_path, one_class, capsys):
    params = _stage_params(tmp_path, teachers={"t1": TEACHER_KEYS},
                           pretrain={"epochs": 1, "batch_size": 2, "crop_s": 0.25, "eval_s": 0.25})
    code = cli.main(["pretrain", "t1", "--params", str(params), "--clips", str(one_class), "--out",
                     str(tmp_path / "t1")])
    assert code == 2 and "has no spoof clips" in _one_line(capsys) and not (tmp_path / "t1").exists()


def test_a_corpus_without_bona_fide_train_clips_is_one_line_in_fit_codec(tmp_path, capsys):
    clips = validate_clips(tiny_clip_table(tmp_path / "clips", n_speakers=2, clips_per_speaker=1, seconds=0.5))
    write_clips(clips[clips["label"] == "spoof"].reset_index(drop=True), tmp_path / "spoof.parquet")
    params = _stage_params(tmp_path, fit_codec={"pretrained": None, "steps": 1, "batch_size": 2, "segment_s": 0.25})
    code = cli.main(["fit_codec", "--params", str(params), "--clips", str(tmp_path / "spoof.parquet"), "--out",
                     str(tmp_path / "gen")])
    assert code == 2 and "no bona fide train clips" in _one_line(capsys) and not (tmp_path / "gen").exists()


def test_leaving_out_every_spoof_paradigm_is_a_stage_error():
    rows = pd.DataFrame({"clip_id": ["a", "b", "c"], "label": ["bonafide", "spoof", "spoof"], "split": "train",
                         "paradigm": ["bonafide", "vocoder", "codec"]})
    with pytest.raises(StageError, match="no spoof rows"):   # printed by python -m pipeline as one line, exit 2
        train.select_training_rows(rows, ("vocoder", "codec"))


# ----------------------------------------------------------------------------- case 26: outputs and disks


def test_score_checks_an_unwritable_out_before_scoring(detector, audio, tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("a file where a folder should be")   # unwritable even for root
    monkeypatch.setattr(score, "run", lambda *a, **k: pytest.fail("scored before checking --out"))
    out = tmp_path / "file" / "sub" / "s.tsv"
    assert _score(detector, out, audio) == 2
    err = _one_line(capsys)
    assert str(out) in err and "is a file, not a folder" in err


def test_prepare_checks_its_outputs_before_reading_a_clip(tmp_path, capsys, monkeypatch):
    from pipeline import prepare

    params = _stage_params(tmp_path, prepare={"corpora": [{"name": "folder", "root": str(tmp_path / "none")}]})
    (tmp_path / "file").write_text("a file where a folder should be")
    monkeypatch.setattr(prepare, "run", lambda *a, **k: pytest.fail("prepare ran before checking its outputs"))
    code = cli.main(["prepare", "--params", str(params), "--clips", str(tmp_path / "file" / "clips.parquet"),
                     "--rejects", str(tmp_path / "r.parquet"), "--audio-dir", str(tmp_path / "c"),
                     "--metrics", str(tmp_path / "m.json")])
    assert code == 2 and "is a file, not a folder" in _one_line(capsys)


def test_a_full_disk_stops_prepare_with_the_file_and_the_cause(tmp_path, capsys, monkeypatch):
    from pipeline import prepare

    root = tmp_path / "corpus"
    for i in range(3):
        write_wave(root / f"s{i}.wav", make_wave(0.5, seed=i))
    (root / "labels.csv").write_text("file,speaker,label\n" + "".join(f"s{i}.wav,spk{i},bonafide\n" for i in range(3)))
    params = _stage_params(tmp_path, prepare={"corpora": [{"name": "folder", "root": str(root)}]})

    def full(path, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(prepare, "write_audio", full)
    code = cli.main(["prepare", "--params", str(params), "--clips", str(tmp_path / "o" / "clips.parquet"),
                     "--rejects", str(tmp_path / "o" / "r.parquet"), "--audio-dir", str(tmp_path / "o" / "c"),
                     "--metrics", str(tmp_path / "o" / "m.json")])
    err = _one_line(capsys)
    assert code == 2 and "No space left on device" in err and ".flac" in err and "System error" not in err


def test_reconstruct_with_missing_parent_audio_stops_before_any_generator(tmp_path, monkeypatch):
    from pipeline import reconstruct
    from pipeline.resynth import plan

    clips = tiny_clip_table(tmp_path / "clips", n_speakers=4, clips_per_speaker=1, with_spoof=False, seconds=0.5)
    for path in clips["path"]:
        Path(path).unlink()
    with pytest.raises(StageError, match=r"the audio of 4 of 4 parent clips is missing .* run prepare again"):
        plan.check_parent_audio(clips, "vocoder", 0.05)
    p = reconstruct.ReconstructParams(paradigm="vocoder", settings={"systems": ["world"]})
    monkeypatch.setattr("pipeline.resynth.build", lambda *a, **k: pytest.fail("a generator was built"))
    with pytest.raises(StageError, match="parent clips is missing"):
        reconstruct.run(clips, p, None, tmp_path / "recon", SR, 0, "cpu")


# ----------------------------------------------------------------------------- cases 27, 28: --eval-s, many rejects


@pytest.mark.parametrize("seconds, shown", [("1e9", "1e+09"), ("3600", "3600"), ("1e-9", "1e-09")])
def test_eval_s_outside_its_bounds_is_one_line_before_any_read(detector, audio, tmp_path, capsys, seconds, shown):
    code = cli.main(["score", "--model", str(detector), "--out", str(tmp_path / "s.tsv"), "--eval-s", seconds,
                     "--threads", "1", str(audio)])
    err = _one_line(capsys)
    assert code == 2 and f"--eval-s {shown}: must be between 0.1 and 10 s" in err and not (tmp_path / "s.tsv").exists()


def test_score_shows_ten_rejects_then_a_count(capsys):
    rejects = [{"clip_id": f"c{i}", "reason": f"missing file /data/x{i}.wav"} for i in range(10_000)]
    print_rejects(rejects)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 11 and lines[0] == "reject c0: missing file /data/x0.wav"
    assert lines[-1] == "reject: ... and 9990 more (9990 x missing file <path>)"


def test_score_of_a_folder_of_undecodable_files_prints_a_bounded_report(detector, tmp_path, capsys):
    folder = tmp_path / "in"
    write_wave(folder / "good.wav", make_wave(0.5, seed=1))
    for i in range(30):
        (folder / f"bad{i:02d}.wav").write_bytes(b"RIFF not audio")
    assert _score(detector, tmp_path / "s.tsv", folder) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("reject")]
    assert len(err) == 11 and err[-1].startswith("reject: ... and 20 more")
    assert json.dumps(score.read_scores(tmp_path / "s.tsv")) and np.isfinite(list(score.read_scores(
        tmp_path / "s.tsv").values())).all()
