"""AASIST / AASIST-L: the official checkpoint layout, published parameter counts, shapes, fast path = plain path."""

from __future__ import annotations

import pytest
import torch

from pipeline.models import bonafide_score, build_model
from pipeline.models.aasist import sinc_filters

# Counted from clovaai/aasist models/weights/AASIST.pth and AASIST-L.pth (trainable tensors; 229 state-dict entries).
PUBLISHED = {"aasist": 297_866, "aasist-l": 85_306}
OFFICIAL_SHAPES = {
    "aasist": {"pos_S": (1, 23, 64), "master1": (1, 1, 64), "encoder.0.0.conv1.weight": (32, 1, 2, 3),
               "encoder.0.0.conv_downsample.weight": (32, 1, 1, 3), "encoder.1.0.bn1.running_var": (32,),
               "encoder.2.0.conv_downsample.weight": (64, 32, 1, 3), "GAT_layer_S.att_weight": (64, 1),
               "HtrgGAT_layer_ST11.att_projM.weight": (32, 64), "HtrgGAT_layer_ST22.att_weightM": (32, 1),
               "pool_hT2.proj.weight": (1, 32), "out_layer.weight": (2, 160), "first_bn.num_batches_tracked": ()},
    "aasist-l": {"pos_S": (1, 23, 24), "encoder.2.0.conv1.weight": (24, 32, 2, 3),
                 "HtrgGAT_layer_ST11.proj_type1.weight": (24, 24), "out_layer.weight": (2, 160)},
}


def _randomise_batch_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics, so that folding batch norm into convolutions is really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(1 + 0.2 * torch.randn(n, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=g))


@pytest.mark.parametrize("arch", sorted(PUBLISHED))
def test_parameter_counts_equal_the_published_checkpoints(arch):
    model = build_model({"arch": arch})
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED[arch]
    state = model.state_dict()
    assert len(state) == 229
    for key, shape in OFFICIAL_SHAPES[arch].items():
        assert tuple(state[key].shape) == shape, key
    assert "encoder.0.0.bn1.weight" not in state and "encoder.3.0.conv_downsample.weight" not in state
    assert not any("sinc" in k for k in state)  # the filter bank is fixed, not a weight


def test_forward_gives_two_logits_and_the_readout_as_penultimate():
    torch.manual_seed(0)
    model = build_model({"arch": "aasist-l"}).eval()
    wave = 0.1 * torch.randn(1, 64600)
    with torch.no_grad():
        logits, feats = model.forward_with_features(wave)
    assert logits.shape == (1, 2)
    assert set(feats) == set(model.layer_names) | {"penultimate"}
    for name, dim in model.layer_dims().items():
        assert feats[name].shape == (1, dim)
    assert model.layer_dims()["penultimate"] == model.embedding_dim == 160
    with torch.no_grad():
        assert torch.allclose(model.out_layer(feats["penultimate"]), logits, atol=1e-6)


@pytest.mark.parametrize("arch", sorted(PUBLISHED))
def test_fast_eval_path_equals_the_plain_path(arch):
    torch.manual_seed(1)
    model = build_model({"arch": arch, "chunk": 2}).eval()
    _randomise_batch_norms(model)
    wave = 0.1 * torch.randn(3, 20000)
    with torch.no_grad():
        fast, fast_feats = model.forward_with_features(wave)
        model.config["fast"] = False
        plain, plain_feats = model.forward_with_features(wave)
    assert torch.allclose(fast, plain, atol=1e-4, rtol=0)
    assert torch.allclose(fast_feats["penultimate"], plain_feats["penultimate"], atol=1e-4, rtol=0)


@pytest.mark.parametrize(("n_samples", "tiled_blocks", "tile"), [(20000, 2, 7), (20001, 3, 5), (19999, 1, 100),
                                                                (9000, 2, 1000)])
def test_time_tiles_give_the_whole_clip_encoder_map(n_samples, tiled_blocks, tile):
    """Tiles overlap by the frames their convolutions reach and keep only their exact output: the encoder
    map equals the untiled one at any tile size, clip length (not a multiple of 3 or 9) and tiled depth."""
    torch.manual_seed(3)
    model = build_model({"arch": "aasist-l", "tiled_blocks": 0}).eval()
    _randomise_batch_norms(model)
    wave = 0.1 * torch.randn(2, n_samples)
    with torch.no_grad():
        whole = model.encode(wave)
        model.config.update(tiled_blocks=tiled_blocks, tile=tile)
        tiled = model.encode(wave)
    assert tiled.shape == whole.shape
    assert torch.allclose(tiled, whole, atol=1e-5, rtol=0)


def test_training_mode_runs_backward_through_the_plain_path():
    torch.manual_seed(2)
    model = build_model({"arch": "aasist-l"}).train()
    loss = torch.nn.functional.cross_entropy(model(0.1 * torch.randn(2, 16000)), torch.tensor([0, 1]))
    loss.backward()
    assert model.encoder[0][0].conv2.weight.grad is not None and torch.isfinite(loss)


def test_eval_mode_with_gradients_still_trains_the_encoder():
    """Fine-tuning with batch norms kept in eval mode: the fast path would detach the folded conv1/bn2
    weights, so with gradients on it is not taken and conv1 gets its gradient."""
    torch.manual_seed(2)
    model = build_model({"arch": "aasist-l"}).eval()
    loss = torch.nn.functional.cross_entropy(model(0.1 * torch.randn(2, 16000)), torch.tensor([0, 1]))
    loss.backward()
    grad = model.encoder[0][0].conv1.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_sinc_bank_is_a_fixed_symmetric_mel_spaced_band_pass_bank():
    bank = sinc_filters(70, 128, 16000)
    assert bank.shape == (70, 1, 129)
    assert torch.allclose(bank, bank.flip(-1), atol=1e-7)
    gains = torch.fft.rfft(bank[:, 0], n=4096).abs().argmax(dim=1)
    assert torch.all(gains[1:] >= gains[:-1])  # pass bands rise with the filter index


def test_aasist_scores_by_the_one_rule_of_every_model():
    model = build_model({"arch": "aasist-l"}).eval()
    assert "score_rule" not in model.config
    logits = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    assert torch.equal(bonafide_score(logits), torch.tensor([-3.0, 2.5]))
    # the rule ignores a constant added to both logits (the softmax's own freedom); logit[bonafide] alone does not
    assert torch.equal(bonafide_score(logits + 7.0), bonafide_score(logits))


def test_a_checkpoint_that_records_the_old_score_rule_still_loads(tmp_path):
    from pipeline.models import load_checkpoint, save_checkpoint

    path = save_checkpoint(build_model({"arch": "aasist-l"}), None, tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"]["score_rule"] = "bonafide_logit"  # what import_model wrote before the one rule
    torch.save(payload, path)
    model, config = load_checkpoint(path)
    assert "score_rule" not in config and model.arch == "aasist-l"


def test_a_waveform_of_the_wrong_rank_is_a_clear_error():
    with pytest.raises(ValueError, match="waveform batch"):
        build_model({"arch": "aasist-l"}).eval()(torch.randn(16000))
