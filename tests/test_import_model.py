"""import_model: an official-layout AASIST checkpoint becomes a model dir that score and teachers accept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import import_model, score
from pipeline.detector.batches import crop_or_tile
from pipeline.embed import EmbedParams, build_vectorizer
from pipeline.models import build_model, load_checkpoint
from pipeline.params import TeacherParams
from pipeline.pretrain import adopt_checkpoint
from tests.conftest import make_wave, write_wave

ARCH = "aasist-l"  # the light one keeps the tests fast; aasist shares the code


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A plain state dict in the official layout (as torch.save(model.state_dict()) in clovaai/aasist)."""
    torch.manual_seed(0)
    model = build_model({"arch": ARCH}).eval()
    path = tmp_path_factory.mktemp("official") / "AASIST-L.pth"
    torch.save(model.state_dict(), path)
    return path, model


def _run(tmp_path: Path, checkpoint: Path, arch: str = ARCH) -> int:
    return import_model.main(["--arch", arch, "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out")])


def test_imported_model_scores_as_the_module_does(official, tmp_path):
    path, model = official
    assert _run(tmp_path, path) == 0
    out = tmp_path / "out"
    config = json.loads((out / "config.json").read_text())
    assert config["preprocessing"]["n_samples"] == 64600 and config["preprocessing"]["sample_rate"] == 16000
    assert config["parameters"] == 85_306 and config["source"]["sha256"]
    card = config["card"]
    assert card["kind"] == "imported" and card["model"]["parameters"] == 85_306 and card["data"] is None
    assert [e["licence"] for e in card["licences"]] == ["MIT", "ODC-By 1.0"]
    assert card["params"]["checkpoint"] == config["source"] and "ODC-By 1.0" in (out / "MODEL_CARD.md").read_text()
    wave = make_wave(1.5, seed=4)
    write_wave(tmp_path / "in" / "a.wav", wave)
    assert score.main(["--model", str(out), "--out", str(tmp_path / "s.txt"), "--threads", "1",
                       str(tmp_path / "in" / "a.wav")]) == 0
    got = float((tmp_path / "s.txt").read_text().split()[-1])
    pcm = torch.from_numpy(np.round(wave * 32767) / 32767).float()  # the file is 16-bit PCM
    x = torch.from_numpy(crop_or_tile(pcm.numpy(), 64600)).unsqueeze(0)  # the model's eval_s: 64600 samples
    with torch.no_grad():
        logits = model(x)[0]  # the authors' logits; their score file holds logits[1]
    assert got == pytest.approx(float(logits[1] - logits[0]), abs=1e-4)  # the one rule: bona fide - spoof


def test_imported_dir_is_a_teacher_that_embeds(official, tmp_path):
    path, _ = official
    assert _run(tmp_path, path) == 0
    teacher = adopt_checkpoint(tmp_path / "out", TeacherParams.from_params({"arch": ARCH}, name="t"))
    vectorize, dim = build_vectorizer(teacher, EmbedParams(layers=["penultimate", "gat_t"]), torch.device("cpu"))
    assert dim == 160 + 24
    assert vectorize(0.1 * torch.randn(2, 16000)).shape == (2, dim)
    with pytest.raises(Exception, match="holds a 'aasist-l' model"):
        adopt_checkpoint(tmp_path / "out", TeacherParams.from_params({"arch": "aasist"}, name="t"))


def test_wrapped_and_data_parallel_checkpoints_are_accepted(official, tmp_path):
    path, model = official
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, wrapped)
    assert _run(tmp_path, wrapped) == 0
    loaded, _ = load_checkpoint(tmp_path / "out")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


@pytest.mark.parametrize("change, message", [
    (lambda sd: sd.pop("out_layer.bias"), "1 missing keys: out_layer.bias"),
    (lambda sd: sd.__setitem__("extra_head.weight", torch.zeros(2)), "1 unexpected keys: extra_head.weight"),
    (lambda sd: sd.__setitem__("pos_S", torch.zeros(1, 23, 64)), r"shape mismatches .*pos_S \(1, 23, 64\) vs"),
])
def test_a_key_or_shape_mismatch_is_refused_and_named(official, tmp_path, capsys, change, message):
    path, _ = official
    sd = torch.load(path, weights_only=True)
    change(sd)
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    assert _run(tmp_path, bad) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("import_model: error:")
    assert __import__("re").search(message, err)
    assert not (tmp_path / "out" / "model.pt").exists()


def test_the_other_architecture_is_refused(official, tmp_path, capsys):
    assert _run(tmp_path, official[0], arch="aasist") == 2
    assert "shape mismatches" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b""])
def test_a_corrupt_or_foreign_file_is_a_one_line_error(tmp_path, capsys, content):
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(content)
    assert _run(tmp_path, bad) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a readable torch checkpoint" in err


def test_a_missing_file_and_a_non_state_dict_are_clear_errors(tmp_path, capsys):
    assert _run(tmp_path, tmp_path / "nope.pth") == 2
    assert "no such file" in capsys.readouterr().err
    torch.save({"epoch": 3}, tmp_path / "meta.pth")
    assert _run(tmp_path, tmp_path / "meta.pth") == 2
    assert "not a state dict" in capsys.readouterr().err


def test_the_command_is_registered():
    from pipeline.__main__ import COMMANDS, USAGE

    assert "import_model" in COMMANDS and "import_model" in USAGE
