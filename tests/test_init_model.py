"""train.init / train.init_mode: the student starts from a pretrained model dir; backend mode freezes the front."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from pipeline import __main__ as cli
from pipeline import import_model, init_model, train
from pipeline.detector import finetune
from pipeline.detector.batches import crop_or_tile, load_wave
from pipeline.models import build_model, load_checkpoint
from pipeline.schema import validate_clips, write_clips
from tests.conftest import tiny_clip_table
from tests.test_train import TINY

REPO = Path(__file__).resolve().parents[1]
BASE = {"seed": 3, "audio": {"sample_rate": 16000}, "runtime": {"device": "cpu", "threads": 1},
        "prepare": {"corpora": [], "vad_trim": True, "lowpass_hz": 4000}}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """train.parquet + dev.parquet manifests of the tiny separable clips."""
    root = tmp_path_factory.mktemp("init_data")
    clips = validate_clips(tiny_clip_table(root / "clips", n_speakers=4, clips_per_speaker=3))
    clips = clips.assign(teacher="t", distance=0.0, cluster=0, sampler="full")
    write_clips(clips[clips["split"] == "train"], root / "train.parquet", groups=("manifest",))
    write_clips(clips[clips["split"] == "dev"], root / "dev.parquet", groups=("manifest",))
    return root


def _train(data: Path, out: Path, train_params: dict, via_cli: bool = False) -> int:
    params = out.parent / f"{out.name}.params.yaml"
    params.parent.mkdir(parents=True, exist_ok=True)
    params.write_text(yaml.safe_dump({**BASE, "train": train_params}))
    argv = ["--params", str(params), "--manifest", str(data / "train.parquet"), "--dev", str(data / "dev.parquet"),
            "--out", str(out)]
    return cli.main(["train", *argv]) if via_cli else train.main(argv)


@pytest.fixture(scope="module")
def resnet_dir(data, tmp_path_factory) -> Path:
    """A tiny resnet detector trained for one epoch: the init of the tests below."""
    out = tmp_path_factory.mktemp("init_resnet") / "detector"
    assert _train(data, out, {**TINY, "epochs": 1}) == 0
    config = json.loads((out / "config.json").read_text())
    assert "init" not in config and "init" not in config["train"] and "init_mode" not in config["train"]
    return out


def _state(path: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in load_checkpoint(path)[0].state_dict().items()}


def test_student_starts_from_exactly_the_init_weights(data, resnet_dir, tmp_path, monkeypatch):
    seen = {}
    original = train.run

    def spy(*args, **kwargs):  # the student handed to the loop, before its first step
        seen.update({k: v.clone() for k, v in kwargs["model"].state_dict().items()})
        return original(*args, **kwargs)

    monkeypatch.setattr(train, "run", spy)
    # width/embedding_dim differ from the init's: the model config is the init's, not train.<key>
    assert _train(data, tmp_path / "ft", {**TINY, "width": 7, "epochs": 1, "init": str(resnet_dir)}) == 0
    init = _state(resnet_dir)
    assert seen.keys() == init.keys() and all(torch.equal(seen[k], init[k]) for k in init)
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["model"]["width"] == TINY["width"] and config["train"]["init"] == str(resnet_dir)
    assert config["init"]["mode"] == "all" and set(config["init"]["sha256"]) == {"model.pt", "config.json"}
    after = _state(tmp_path / "ft")
    assert not torch.equal(after["stem.0.weight"], init["stem.0.weight"])  # mode all trains the front too


def test_backend_mode_freezes_the_front_and_trains_the_classifier(data, resnet_dir, tmp_path, monkeypatch):
    handed = []
    adamw = torch.optim.AdamW
    monkeypatch.setattr(torch.optim, "AdamW",
                        lambda params, **kw: handed.append(list(params)) or adamw(handed[-1], **kw))
    model, _ = finetune.load_init(resnet_dir, "backend", "resnet", 16000)
    trained = {k.split(".")[0] for k, q in model.named_parameters() if q.requires_grad}
    assert trained == {"embed", "classifier"}
    model.train()
    assert model.embed.training and not model.stem.training and not model.stages.training  # frozen BN: eval
    assert _train(data, tmp_path / "ft", {**TINY, "epochs": 2, "init": str(resnet_dir), "init_mode": "backend"}) == 0
    init, after = _state(resnet_dir), _state(tmp_path / "ft")
    front = [k for k in init if not k.startswith(("embed.", "classifier."))]
    assert any("running_mean" in k for k in front)
    assert all(torch.equal(init[k], after[k]) for k in front)  # weights and batch-norm statistics, bit for bit
    assert not torch.equal(init["classifier.weight"], after["classifier.weight"])
    n_backend = sum(v.numel() for k, v in init.items() if k.startswith(("embed.0.", "embed.1.weight", "embed.1.bias",
                                                                         "classifier.")))
    assert sum(q.numel() for q in handed[0]) == n_backend  # the optimiser gets only the trainable parameters
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["init"]["frozen"] == ["frontend", "stem", "stages"] and config["init"]["mode"] == "backend"


def test_front_names_per_architecture(tmp_path):
    assert finetune.front_names(build_model({"arch": "aasist-l"})) == ["first_bn", "encoder"]
    transformers = pytest.importorskip("transformers")
    from tests.test_ssl import TINY as SSL_TINY

    transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**SSL_TINY)).save_pretrained(tmp_path / "w2v")
    ssl = build_model({"arch": "ssl", "ssl_path": str(tmp_path / "w2v"), "ssl_freeze": False, "embedding_dim": 8})
    assert finetune.freeze_front(ssl) == ["ssl"]
    ssl.train()
    assert not ssl.ssl.training and ssl.embed.training
    assert {k.split(".")[0] for k, q in ssl.named_parameters() if q.requires_grad} == {"layer_weights", "embed",
                                                                                       "classifier"}
    conv = build_model({"arch": "convnext", "width": 4, "embedding_dim": 8})
    assert set(finetune.front_names(conv)) == {n for n, _ in conv.named_children()} - {"embed", "dropout",
                                                                                          "classifier"}


@pytest.mark.parametrize("init, extra, message", [
    ("missing", {}, "is not a model directory"),
    ("corrupt", {}, "not a readable torch checkpoint"),
    ("resnet", {"arch": "lcnn"}, "train.arch: 'lcnn' but train.init"),
    ("resnet", {"init_mode": "head"}, "train.init_mode"),
])
def test_a_bad_init_is_a_one_line_config_error(data, resnet_dir, tmp_path, capsys, init, extra, message):
    path = {"missing": tmp_path / "nope", "corrupt": tmp_path / "corrupt", "resnet": resnet_dir}[init]
    if init == "corrupt":
        path.mkdir()
        (path / "model.pt").write_bytes(b"not a checkpoint")
    rc = _train(data, tmp_path / "ft", {**TINY, "epochs": 1, "init": str(path), **extra}, via_cli=True)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "ft" / "model.pt").exists()


def test_arch_null_needs_an_init():
    with pytest.raises(ValueError, match="needs train.init"):
        train.TrainParams.from_params({**TINY, "arch": None})


def test_imported_aasist_fine_tunes_in_backend_mode_and_scores_by_the_one_rule(data, tmp_path, capsys):
    torch.manual_seed(0)
    official = build_model({"arch": "aasist"}).eval()
    torch.save(official.state_dict(), tmp_path / "AASIST.pth")
    assert import_model.main(["--arch", "aasist", "--checkpoint", str(tmp_path / "AASIST.pth"),
                              "--out", str(tmp_path / "imported")]) == 0
    small = {"arch": None, "init": str(tmp_path / "imported"), "init_mode": "backend", "epochs": 1,
             "steps_per_epoch": 2, "batch_size": 4, "crop_s": 0.5, "eval_s": 0.5, "dev_max_clips": 4, "lr": 0.01}
    assert _train(data, tmp_path / "ft", small) == 0
    init, after = _state(tmp_path / "imported"), _state(tmp_path / "ft")
    front = [k for k in init if k.startswith(("first_bn.", "encoder."))]
    assert front and all(torch.equal(init[k], after[k]) for k in front)
    assert not torch.equal(init["out_layer.weight"], after["out_layer.weight"])
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert "score_rule" not in config["model"] and config["eval_s"] == 4.0375
    assert config["preprocessing"]["n_samples"] == 64600 and config["init"]["arch"] == "aasist"
    # the card names the init and carries the licences of what the init was trained on
    card = config["card"]
    assert card["kind"] == "fine-tuned detector" and card["init"]["dir"] == str(tmp_path / "imported")
    assert [e["licence"] for e in card["init"]["licences"]] == ["MIT", "ODC-By 1.0"]

    dev = pd.read_parquet(data / "dev.parquet").iloc[:3]
    assert cli.main(["score", "--model", str(tmp_path / "ft"), "--eval-s", "0.5", "--threads", "1", "--prepared",
                     "--out", str(tmp_path / "s.tsv"), *dev["path"]]) == 0
    model, _ = load_checkpoint(tmp_path / "ft")
    waves = torch.stack([torch.from_numpy(crop_or_tile(load_wave(p, 16000), 8000)) for p in dev["path"]])
    with torch.no_grad():
        logits = model(waves)
        expected = logits[:, 1] - logits[:, 0]  # the one score rule: logit[bonafide] - logit[spoof]
    got = [float(line.split("\t")[1]) for line in (tmp_path / "s.tsv").read_text().splitlines()[1:]]
    assert got == pytest.approx(expected.tolist(), abs=1e-4)


def test_stamp_stage_tracks_the_init_content(resnet_dir, tmp_path):
    params, out = tmp_path / "params.yaml", tmp_path / "init.json"
    params.write_text(yaml.safe_dump({"train": {"init": None}}))
    assert init_model.main(["--params", str(params), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == {"init": None}
    copy = tmp_path / "init_dir"
    copy.mkdir()
    for f in ("model.pt", "config.json"):
        (copy / f).write_bytes((resnet_dir / f).read_bytes())
    params.write_text(yaml.safe_dump({"train": {"init": str(copy)}}))
    assert init_model.main(["--params", str(params), "--out", str(out)]) == 0
    first = json.loads(out.read_text())
    assert first["init"] == str(copy) and len(first["sha256"]["model.pt"]) == 64
    os.utime(out, (1, 1))
    assert init_model.main(["--params", str(params), "--out", str(out)]) == 0
    assert out.stat().st_mtime == 1  # unchanged content: the file is left alone
    (copy / "config.json").write_text("{}\n")  # the init dir's content changes, its path does not
    assert init_model.main(["--params", str(params), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["sha256"]["config.json"] != first["sha256"]["config.json"]
    params.write_text(yaml.safe_dump({"train": {"init": str(tmp_path / "nope")}}))
    assert cli.main(["init_model", "--params", str(params), "--out", str(out)]) == 2


def test_dvc_yaml_makes_train_depend_on_the_init_stamp():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    stamp_out = next(iter(stages["init_model"]["outs"][0]))
    assert stages["init_model"]["always_changed"] is True and "train.init" in stages["init_model"]["params"]
    assert stamp_out in stages["train"]["deps"] and stamp_out in stages["init_model"]["cmd"]


@pytest.mark.slow
def test_dvc_reruns_train_only_when_the_init_content_changed(resnet_dir, tmp_path):
    """The real init_model stage of dvc.yaml in a scratch DVC project, with a stand-in train."""
    work = tmp_path / "repo"
    work.mkdir()
    shutil.copytree(REPO / "pipeline", work / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    init = tmp_path / "init_dir"
    shutil.copytree(resnet_dir, init)
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    fake_train = {"cmd": "cp data/models/init.json trained.json", "deps": ["data/models/init.json"],
                  "outs": ["trained.json"]}
    (work / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"init_model": stages["init_model"],
                                                              "train": fake_train}}))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "PYTHONPATH": str(work)}

    def repro(init_value) -> list[str]:
        (work / "params.yaml").write_text(yaml.safe_dump({"train": {"init": init_value}}))
        res = subprocess.run(["dvc", "repro"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        return sorted(s for s in ("init_model", "train") if f"Running stage '{s}'" in res.stdout)

    assert subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=work, env=env).returncode == 0
    assert repro(None) == ["init_model", "train"]
    assert repro(None) == ["init_model"]                    # no init: train is not re-run
    assert repro(str(init)) == ["init_model", "train"]      # an init given
    assert repro(str(init)) == ["init_model"]
    (init / "config.json").write_text("{}\n")               # same path, new content (e.g. re-imported)
    assert repro(str(init)) == ["init_model", "train"]


def test_a_frozen_aasist_encoder_takes_the_eval_path_with_the_same_output():
    torch.manual_seed(1)
    model = build_model({"arch": "aasist-l"})
    finetune.freeze_front(model)
    model.train()
    x = 0.1 * torch.randn(2, 4800)
    calls, fast_path = [], model._encode_fast
    model._encode_fast = lambda wave: calls.append(1) or fast_path(wave)
    with torch.no_grad():
        fast, plain = model.encode(x), model._encode_plain(x)
    assert calls == [1]
    assert fast.shape == plain.shape and torch.allclose(fast, plain, atol=1e-4)
    assert model.training and not model.encoder.training and not model.first_bn.training
