"""A failed run keeps the previous model (issue 27, cases 4 and 14): `dvc exp run -S train.epochs=abc` used to delete
data/models/detector before train failed (DVC removes a stage's outs before its command), and a crash in the
middle of train, pretrain or import_model left a half-written model folder. The model outs are `persist: true`
in dvc.yaml and the three write their folder beside the old one, swapping it in only when complete."""

from __future__ import annotations

import gc
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pipeline import import_model, pretrain, train
from pipeline.io import StagedDir, atomic_dir
from pipeline.models import build_model
from pipeline.schema import validate_clips, write_clips
from tests.conftest import tiny_clip_table
from tests.test_pretrain import TEACHER_KEYS
from tests.test_train import TINY, _manifest

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _old_model(folder: Path) -> dict[str, bytes]:
    """A stand-in previous model folder; returns its files' bytes."""
    (folder / "dvclive").mkdir(parents=True)
    files = {"model.pt": b"old weights", "config.json": b"{}", "dvclive/metrics.json": b"{}"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def _same(folder: Path, files: dict[str, bytes]) -> bool:
    now = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    return now == files


def _no_temp_dirs(parent: Path) -> bool:
    gc.collect()
    return not [p for p in parent.iterdir() if p.name.startswith(".") and (".build-" in p.name or ".old-" in p.name)]


def test_every_model_out_in_dvc_yaml_persists():
    outs = {"train": STAGES["train"]["outs"], "pretrain": STAGES["pretrain"]["do"]["outs"],
            "fit_codec": STAGES["fit_codec"]["outs"], "fit_diffusion": STAGES["fit_diffusion"]["outs"]}
    for stage, entries in outs.items():
        assert all(isinstance(e, dict) and next(iter(e.values())).get("persist") is True for e in entries), stage


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return validate_clips(tiny_clip_table(tmp_path_factory.mktemp("clips"), n_speakers=4, clips_per_speaker=2))


def _train_inputs(tmp_path: Path, clips) -> list[str]:
    write_clips(_manifest(clips[clips["split"] == "train"]), tmp_path / "train.parquet", groups=("manifest",))
    write_clips(_manifest(clips[clips["split"] == "dev"]), tmp_path / "dev.parquet", groups=("manifest",))
    params = {"seed": 3, "audio": {"sample_rate": 16000}, "runtime": {"device": "cpu", "threads": 1},
              "prepare": {"corpora": []}, "train": {**TINY, "epochs": 1, "steps_per_epoch": 2}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return ["--params", str(tmp_path / "params.yaml"), "--manifest", str(tmp_path / "train.parquet"),
            "--dev", str(tmp_path / "dev.parquet")]


def test_train_that_crashes_after_its_first_checkpoint_leaves_the_previous_model_whole(tmp_path, clips, monkeypatch):
    """Before: model.pt was overwritten at the first improvement, config.json and metrics.json were the old ones."""
    argv = [*_train_inputs(tmp_path, clips), "--out", str(tmp_path / "models" / "detector")]
    old = _old_model(tmp_path / "models" / "detector")
    real_run = train.run

    def crash(*args, **kwargs):
        model, _ = real_run(*args, **kwargs)   # trains and writes model.pt through the checkpointer
        raise KeyboardInterrupt("killed after the first checkpoint")

    monkeypatch.setattr(train, "run", crash)
    with pytest.raises(KeyboardInterrupt):
        train.main(argv)
    assert _same(tmp_path / "models" / "detector", old)
    monkeypatch.setattr(train, "run", real_run)
    assert train.main(argv) == 0    # the next run replaces the folder whole and leaves no temp folder behind
    new = tmp_path / "models" / "detector"
    assert {p.name for p in new.iterdir()} >= {"model.pt", "config.json", "metrics.json", "dvclive"}
    assert (new / "model.pt").read_bytes() != old["model.pt"] and _no_temp_dirs(tmp_path / "models")


def test_train_refuses_to_replace_a_folder_that_is_no_model(tmp_path, clips):
    argv = [*_train_inputs(tmp_path, clips), "--out", str(tmp_path / "data")]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "clips.parquet").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="holds no model.pt"):
        train.main(argv)
    assert (tmp_path / "data" / "clips.parquet").read_bytes() == b"precious"


def test_pretrain_that_fails_leaves_the_previous_teacher_whole(tmp_path, clips, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_clips(clips, tmp_path / "clips.parquet")
    params = {"seed": 1, "audio": {"sample_rate": 16000}, "runtime": {"device": "cpu", "threads": 1},
              "teachers": {"t1": TEACHER_KEYS}, "pretrain": {"epochs": 1, "batch_size": 4, "crop_s": 0.25,
                                                           "eval_s": 0.25, "max_steps_per_epoch": 2}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    old = _old_model(tmp_path / "teachers" / "t1")
    real = pretrain.write_json_atomic

    def fail_on_metrics(obj, path):
        if Path(path).name == "metrics.json":
            raise OSError("disk full")
        return real(obj, path)

    monkeypatch.setattr(pretrain, "write_json_atomic", fail_on_metrics)   # model.pt and config.json are written
    with pytest.raises(OSError, match="disk full"):
        pretrain.main(["t1", "--clips", "clips.parquet", "--out", "teachers/t1"])
    assert _same(tmp_path / "teachers" / "t1", old)


def test_import_model_that_fails_mid_write_leaves_the_previous_folder_whole(tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    checkpoint = tmp_path / "AASIST-L.pth"
    torch.save(build_model({"arch": "aasist-l"}).state_dict(), checkpoint)
    out = tmp_path / "imported"
    old = _old_model(out)
    import pipeline.io

    def fail(obj, path):
        raise OSError("disk full")

    monkeypatch.setattr(pipeline.io, "write_json_atomic", fail)   # after model.pt
    with pytest.raises(OSError):
        import_model.main(["--arch", "aasist-l", "--checkpoint", str(checkpoint), "--out", str(out), "--force"])
    assert _same(out, old) and _no_temp_dirs(tmp_path)
    monkeypatch.undo()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    code = import_model.main(["--arch", "aasist-l", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "notes"),
                              "--force"])
    assert code == 2 and "holds no model.pt" in capsys.readouterr().err
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"
    assert import_model.main(["--arch", "aasist-l", "--checkpoint", str(checkpoint), "--out", str(out), "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["MODEL_CARD.md", "config.json", "model.pt"]


def test_import_model_refuses_a_non_empty_out_without_force(tmp_path, capsys):
    """Case 6. Before: model.pt and config.json were replaced, the trained model's metrics.json and dvclive/ stayed:
    a folder that said it was the imported AASIST-L with the metrics of another model."""
    torch.manual_seed(0)
    checkpoint = tmp_path / "AASIST-L.pth"
    torch.save(build_model({"arch": "aasist-l"}).state_dict(), checkpoint)
    trained = tmp_path / "detector"
    old = _old_model(trained)
    argv = ["--arch", "aasist-l", "--checkpoint", str(checkpoint), "--out", str(trained)]
    assert import_model.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--out {trained} is not empty (it holds config.json, dvclive, model.pt)" in err
    assert "--force" in err and _same(trained, old)
    (tmp_path / "empty").mkdir()
    assert import_model.main([*argv[:-1], str(tmp_path / "empty")]) == 0   # an empty folder is a new folder
    assert import_model.main([*argv, "--force"]) == 0                       # the whole folder replaced
    assert sorted(p.name for p in trained.iterdir()) == ["MODEL_CARD.md", "config.json", "model.pt"]


def test_a_staged_dir_swaps_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model"
    old = _old_model(target)
    staged = StagedDir(target, marker="model.pt")
    (staged.path / "model.pt").write_bytes(b"new")
    assert _same(target, old)                       # nothing visible before the commit
    staged.discard()
    assert _same(target, old) and not staged.path.exists()
    stale = tmp_path / ".model.build-killed"
    stale.mkdir()                                   # what a SIGKILLed run leaves
    with atomic_dir(target, marker="model.pt") as tmp:
        (tmp / "model.pt").write_bytes(b"new")
    assert _same(target, {"model.pt": b"new"}) and not stale.exists() and _no_temp_dirs(tmp_path)
    dropped = StagedDir(target)
    path = dropped.path
    del dropped                                      # never committed: removed when collected (or at exit)
    gc.collect()
    assert not path.exists()


def _dvc_repo(tmp_path: Path, persist: bool) -> dict[str, bytes]:
    """A DVC project whose one stage is the real train stage (its command, params and outs; no file deps), with
    train.epochs set to 'abc' as `dvc exp run -S train.epochs=abc` writes it, and a previous model in place."""
    stage = {k: STAGES["train"][k] for k in ("cmd", "params", "outs")}
    if not persist:
        stage["outs"] = [next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"]]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": stage}}))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["epochs"] = "abc"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return _old_model(tmp_path / "data" / "models" / "detector")


@pytest.mark.slow
@pytest.mark.parametrize("persist", [True, False])
def test_dvc_repro_with_a_bad_train_value_keeps_the_model_only_with_persist(tmp_path, persist):
    dvc = shutil.which("dvc") or str(Path(sys.executable).parent / "dvc")
    old = _dvc_repo(tmp_path, persist)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=tmp_path, env=env, check=True)
    out = subprocess.run([dvc, "repro", "train"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "error: params train.epochs: expected an integer, got 'abc'" in out.stdout + out.stderr
    model = tmp_path / "data" / "models" / "detector"
    if persist:   # the repository's dvc.yaml
        assert _same(model, old)
    else:         # what DVC does to an ordinary out: gone before the command even starts
        assert not model.exists()


@pytest.mark.slow
@pytest.mark.parametrize("persist", [True, False])
def test_dvc_exp_run_with_a_bad_value_keeps_the_model_and_the_comments_of_params_yaml(tmp_path, persist):
    """The issue's own command, in a git repository: `dvc exp run -S train.epochs=abc` writes `abc` into
    params.yaml (its comments kept), train stops with one line, the model folder is untouched, and
    `git checkout -- params.yaml` undoes the edit (README, "What -S does to params.yaml"). Without `persist` (an
    ordinary out), DVC deletes the model before train even reads its params."""
    dvc = shutil.which("dvc") or str(Path(sys.executable).parent / "dvc")
    old = _dvc_repo(tmp_path, persist)
    text = (tmp_path / "params.yaml").read_text().replace("  epochs: abc\n", "  epochs: 2   # passes\n", 1)
    (tmp_path / "params.yaml").write_text("# my notes\n" + text)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = lambda *cmd: subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)  # noqa: E731
    for cmd in (["git", "init", "-q"], [dvc, "init", "-q"], [dvc, "commit", "-f", "-q", "train"],  # model in dvc.lock
                ["git", "add", "-A"], ["git", "commit", "-qm", "base"]):
        assert run(*cmd).returncode == 0, cmd
    out = run(dvc, "exp", "run", "-S", "train.epochs=abc")
    assert out.returncode != 0
    assert "error: params train.epochs: expected an integer, got 'abc'" in out.stdout + out.stderr
    model = tmp_path / "data" / "models" / "detector"
    assert _same(model, old) if persist else not model.exists()
    edited = (tmp_path / "params.yaml").read_text()
    assert edited.startswith("# my notes\n") and re.search(r"\n  epochs: abc +# passes\n", edited)
    assert run("git", "checkout", "--", "params.yaml").returncode == 0
    assert (tmp_path / "params.yaml").read_text() == "# my notes\n" + text
