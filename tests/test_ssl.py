"""SSL front ends: a tiny random wav2vec 2.0 / WavLM saved to a temp dir, as a teacher and as a trained student."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.embed import EmbedParams, build_vectorizer
from pipeline.models import build_model, load_checkpoint, save_checkpoint

transformers = pytest.importorskip("transformers")

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
        "conv_dim": (16, 16), "conv_stride": (5, 4), "conv_kernel": (10, 8), "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 2}


@pytest.fixture(scope="module")
def wav2vec_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w2v")
    transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**TINY)).save_pretrained(path)
    return path


def test_ssl_teacher_embeds_penultimate_and_several_layers(wav2vec_dir):
    model = build_model({"arch": "ssl", "ssl_path": str(wav2vec_dir), "embedding_dim": 16}).eval()
    assert model.layer_names == ["hidden0", "hidden1", "hidden2", "ssl"]
    wave = 0.1 * torch.randn(3, 8000)
    pen, dim = build_vectorizer(model, EmbedParams(), torch.device("cpu"))
    assert dim == 16 and pen(wave).shape == (3, 16)
    multi, dim = build_vectorizer(model, EmbedParams(layers=["hidden1", "hidden2"], aggregate="mean"),
                                  torch.device("cpu"))
    assert dim == 32 and multi(wave).shape == (3, 32)
    again, _ = build_vectorizer(model, EmbedParams(), torch.device("cpu"))
    assert (again(wave) == pen(wave)).all()  # frozen SSL in eval mode: deterministic


def test_linear_back_end_trains_while_the_frozen_ssl_model_stays_fixed(wav2vec_dir):
    torch.manual_seed(1)
    model = build_model({"arch": "ssl", "ssl_path": str(wav2vec_dir), "embedding_dim": 16}).train()
    assert not model.ssl.training  # frozen: kept in eval mode
    before = {k: v.clone() for k, v in model.ssl.state_dict().items()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    wave = 0.1 * torch.randn(8, 8000)
    wave[4:] += 0.2 * torch.sin(torch.arange(8000) * 0.3)  # the "spoof" half carries a tone
    y = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(wave), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] * 0.5
    assert all(torch.equal(before[k], v) for k, v in model.ssl.state_dict().items())
    assert model.layer_weights.grad is not None  # the layer weighting learns


def test_fine_tuning_updates_the_ssl_weights(wav2vec_dir):
    model = build_model({"arch": "ssl", "ssl_path": str(wav2vec_dir), "ssl_freeze": False, "ssl_layer": 2}).train()
    loss = torch.nn.functional.cross_entropy(model(0.1 * torch.randn(2, 8000)), torch.tensor([0, 1]))
    loss.backward()
    assert model.ssl.encoder.layers[0].attention.q_proj.weight.grad is not None


def test_graph_back_end_and_a_checkpoint_that_loads_without_the_ssl_dir(wav2vec_dir, tmp_path):
    torch.manual_seed(2)
    model = build_model({"arch": "ssl", "ssl_path": str(wav2vec_dir), "backend": "aasist"}).eval()
    wave = 0.1 * torch.randn(2, 16000)
    with torch.no_grad():
        logits, feats = model.forward_with_features(wave)
    assert logits.shape == (2, 2) and feats["penultimate"].shape == (2, 160) == (2, model.embedding_dim)
    save_checkpoint(model, None, tmp_path / "m")
    loaded, config = load_checkpoint(tmp_path / "m", expected_arch="ssl")
    assert config["ssl_config"]["hidden_size"] == 32
    with torch.no_grad():
        assert torch.allclose(loaded(wave), logits, atol=1e-5)


def test_wavlm_front_end_loads_from_a_local_dir(tmp_path):
    transformers.WavLMModel(transformers.WavLMConfig(**TINY, num_buckets=8, max_bucket_distance=16)).save_pretrained(
        tmp_path)
    model = build_model({"arch": "ssl", "ssl_path": str(tmp_path), "ssl_layer": -1}).eval()
    with torch.no_grad():
        assert model(0.1 * torch.randn(2, 8000)).shape == (2, 2)


def test_bad_ssl_settings_are_clear_errors(wav2vec_dir):
    with pytest.raises(ValueError, match="needs `ssl_path`"):
        build_model({"arch": "ssl"})
    with pytest.raises(ValueError, match="ssl_layer must be"):
        build_model({"arch": "ssl", "ssl_path": str(wav2vec_dir), "ssl_layer": 7})
    with pytest.raises(ValueError, match="backend must be one of"):
        build_model({"arch": "ssl", "ssl_path": str(wav2vec_dir), "backend": "mamba"})


def test_ssl_and_aasist_are_students_through_train_params(wav2vec_dir):
    from pipeline.train import TrainParams

    p = TrainParams.from_params({"arch": "ssl", "model": {"ssl_path": str(wav2vec_dir), "backend": "linear"}})
    student = build_model(p.model_config(16000))
    assert student.arch == "ssl" and student.config["frontend"] == "ssl"
    assert student.embedding_dim == p.embedding_dim
    aasist = build_model(TrainParams.from_params({"arch": "aasist-l"}).model_config(16000))
    assert aasist.config["frontend"] == "sinc" and aasist.embedding_dim == 160
