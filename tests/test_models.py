"""Tests for pipeline.models: shapes, features, checkpoints, clear errors."""

from __future__ import annotations

import pytest
import torch

from pipeline.models import (
    CheckpointError,
    bonafide_score,
    build_model,
    check_config,
    load_checkpoint,
    save_checkpoint,
)
from pipeline.models.frontend import Frontend
from pipeline.params import ConfigError

TINY = {"width": 4, "embedding_dim": 8, "n_bins": 32}
SPECTRAL = ["convnext", "lcnn", "resnet"]  # spectrogram archs (aasist, ssl: tests/test_aasist.py, test_ssl.py)


@pytest.mark.parametrize("arch", SPECTRAL)
@pytest.mark.parametrize("frontend", ["logmel", "lfcc"])
def test_every_architecture_gives_logits_and_pooled_features(arch, frontend):
    model = build_model({"arch": arch, "frontend": frontend, **TINY}).eval()
    wave = torch.randn(3, 16000)
    with torch.no_grad():
        logits, feats = model.forward_with_features(wave)
    assert logits.shape == (3, 2)
    assert feats["penultimate"].shape == (3, model.embedding_dim) == (3, 8)
    assert set(feats) == set(model.layer_names) | {"penultimate"}
    for name, dim in model.layer_dims().items():
        assert feats[name].shape == (3, dim)
    assert {"layer2", "layer3"} <= set(model.layer_names)  # the detector's RACL layers exist
    assert torch.allclose(model(wave), logits)


@pytest.mark.parametrize("arch", SPECTRAL)
def test_a_very_short_clip_still_runs(arch):
    model = build_model({"arch": arch, **TINY}).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 800)).shape == (2, 2)


def test_frontend_shapes_and_bad_inputs():
    fe = Frontend("logmel", n_bins=40, hop_ms=10)
    assert fe(torch.randn(2, 16000)).shape == (2, 1, 40, 101)
    with pytest.raises(ValueError, match="waveform batch"):
        fe(torch.randn(16000))
    with pytest.raises(ValueError, match="unknown frontend"):
        Frontend("mfcc")
    with pytest.raises(ValueError, match="must not exceed n_filters"):
        Frontend("lfcc", n_bins=80, n_filters=70)


def test_bin_norm_removes_a_stationary_channel():
    """norm: bin gives every frequency bin zero mean over time, so a fixed filter on the input (a channel)
    changes the features far less than with the utterance norm."""
    wave = torch.randn(1, 16000)
    coloured = pre_emphasis(wave)
    by_bin, whole = Frontend("logmel", n_bins=40, norm="bin"), Frontend("logmel", n_bins=40)
    feats = by_bin(wave)[0, 0]
    assert torch.allclose(feats.mean(dim=1), torch.zeros(40), atol=1e-4)
    assert (by_bin(coloured) - by_bin(wave)).abs().mean() < 0.5 * (whole(coloured) - whole(wave)).abs().mean()
    with pytest.raises(ValueError, match="unknown frontend norm 'cmvn'"):
        Frontend("logmel", norm="cmvn")
    assert build_model({"arch": "resnet", **TINY, "norm": "bin"}).frontend.norm == "bin"


def pre_emphasis(wave: torch.Tensor) -> torch.Tensor:
    """A fixed first-order pre-emphasis: a stationary spectral tilt, like a microphone or a phone line."""
    return torch.cat([wave[:, :1], wave[:, 1:] - 0.95 * wave[:, :-1]], dim=1)


def test_logmel_frontend_matches_torchaudio():
    import torchaudio

    wave = torch.randn(2, 8000)
    fe = Frontend("logmel", n_bins=40)
    ref = torchaudio.transforms.MelSpectrogram(16000, n_fft=512, win_length=400, hop_length=160, n_mels=40,
                                               f_min=20.0, f_max=8000.0, pad_mode="constant")(wave)
    ref = torch.log(ref + 1e-6)
    ref = (ref - ref.mean(dim=(1, 2), keepdim=True)) / (ref.std(dim=(1, 2), keepdim=True) + 1e-5)
    assert torch.allclose(fe(wave)[:, 0], ref, atol=1e-3)


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown architecture 'transformer'"):
        build_model({"arch": "transformer"})


def test_config_is_resolved_with_defaults_and_refuses_unknown_keys():
    model = build_model({"arch": "resnet", "width": 4})
    assert model.config["width"] == 4 and model.config["frontend"] == "logmel" and model.config["arch"] == "resnet"
    with pytest.raises(ConfigError, match=r"unknown keys \['widht'\]; known: \['arch', 'blocks'"):
        build_model({"arch": "resnet", "widht": 4})
    with pytest.raises(ConfigError, match=r"params teachers.T \(convnext\): unknown keys \['strides'\]"):
        check_config({"arch": "convnext", "strides": [2, 2]}, "teachers.T")
    with pytest.raises(ConfigError, match="teachers.T.arch: unknown architecture 'resnett'"):
        check_config({"arch": "resnett"}, "teachers.T")
    with pytest.raises(ConfigError, match="teachers.T.frontend: unknown value 'mfcc'"):
        check_config({"arch": "lcnn", "frontend": "mfcc"}, "teachers.T")


@pytest.mark.parametrize("arch", SPECTRAL)
def test_checkpoint_round_trip_gives_the_same_outputs(tmp_path, arch):
    torch.manual_seed(0)
    model = build_model({"arch": arch, **TINY}).eval()
    path = save_checkpoint(model, {"teacher": "t1", **model.config}, tmp_path / "m")
    assert path == tmp_path / "m" / "model.pt"
    loaded, config = load_checkpoint(tmp_path / "m", expected_arch=arch)
    assert config["teacher"] == "t1" and config["arch"] == arch
    assert not loaded.training
    wave = torch.randn(2, 8000)
    with torch.no_grad():
        assert torch.equal(model(wave), loaded(wave))


def test_checkpoint_of_the_wrong_architecture_is_a_clear_error(tmp_path):
    path = save_checkpoint(build_model({"arch": "convnext", **TINY}), None, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="holds a 'convnext' model, but architecture 'resnet' was expected"):
        load_checkpoint(path, expected_arch="resnet")


def test_missing_or_foreign_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_checkpoint(junk)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a hardset detector checkpoint"):
        load_checkpoint(foreign)


def test_weights_that_do_not_fit_the_config_are_a_clear_error(tmp_path):
    path = save_checkpoint(build_model({"arch": "resnet", **TINY}), None, tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"]["width"] = 8
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_checkpoint(path)


def test_bonafide_score_is_bonafide_minus_spoof_logit():
    logits = torch.tensor([[2.0, -1.0], [0.0, 3.0]])
    assert torch.equal(bonafide_score(logits), torch.tensor([-3.0, 3.0]))


@pytest.mark.parametrize("drop", ["state_dict", "config", "arch"])
def test_a_checkpoint_missing_a_key_is_a_checkpoint_error_not_a_key_error(tmp_path, drop):
    path = save_checkpoint(build_model({"arch": "resnet", **TINY}), None, tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    del payload[drop]
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=rf"damaged hardset checkpoint: \['{drop}'\] missing"):
        load_checkpoint(path)
