"""pipeline.detector.inference: scores equal a direct forward pass, row order, rejects, embeddings, mode kept."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.detector.batches import crop_or_tile, load_wave
from pipeline.detector.inference import embed_batch, load_waves, score_clips, score_waves
from pipeline.models import bonafide_score, build_model
from tests.conftest import tiny_clip_table

SR = 16000


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> pd.DataFrame:
    return tiny_clip_table(tmp_path_factory.mktemp("clips"), n_speakers=2, clips_per_speaker=3, seconds=0.5)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model({"arch": "resnet", "width": 4, "embedding_dim": 8, "n_bins": 32, "sample_rate": SR}).eval()


def _direct(model, clips: pd.DataFrame, seconds: float) -> tuple[np.ndarray, torch.Tensor]:
    """Scores of one forward pass over all clips at once, and the waves it used."""
    n = int(round(seconds * SR))
    waves = torch.from_numpy(np.stack([crop_or_tile(load_wave(p, SR), n) for p in clips["path"]]))
    with torch.no_grad():
        return bonafide_score(model(waves)).double().numpy(), waves


def test_scores_match_a_direct_forward_pass_in_row_order(clips, model):
    expected, _ = _direct(model, clips, 0.75)  # 0.75 s of 0.5 s clips: tiled
    s = score_clips(model, clips, 5, SR, 0.75)  # batches of 5: the last one is short
    assert s.clip_ids == clips["clip_id"].tolist()
    assert s.scores.dtype == np.float64 and np.allclose(s.scores, expected, atol=1e-5)
    assert s.labels.tolist() == [int(x == "bonafide") for x in clips["label"]]
    assert s.rejects == [] and s.embeddings is None


def test_reordered_rows_give_reordered_scores(clips, model):
    forward = score_clips(model, clips, 4, SR, 0.5)
    backward = score_clips(model, clips.iloc[::-1], 4, SR, 0.5)
    assert backward.clip_ids == forward.clip_ids[::-1]
    assert np.allclose(backward.scores, forward.scores[::-1], atol=1e-5)


def test_the_loss_is_the_mean_cross_entropy(clips, model):
    s = score_clips(model, clips, 3, SR, 0.5)
    _, waves = _direct(model, clips, 0.5)
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy(model(waves), torch.as_tensor(s.labels))
    assert s.loss == pytest.approx(float(ce), rel=1e-5)


def test_an_unreadable_clip_is_a_reject_and_the_others_keep_their_order(clips, model, tmp_path):
    bad_path = tmp_path / "broken.flac"
    bad_path.write_bytes(b"not audio")
    bad = clips.iloc[[0]].assign(clip_id="broken", path=str(bad_path))
    table = pd.concat([clips.iloc[:2], bad, clips.iloc[2:]], ignore_index=True)
    s = score_clips(model, table, 2, SR, 0.5, stage="evaluate")
    assert s.clip_ids == clips["clip_id"].tolist()
    assert [(r["clip_id"], r["stage"]) for r in s.rejects] == [("broken", "evaluate")]
    assert np.allclose(s.scores, score_clips(model, clips, 2, SR, 0.5).scores)


def test_nothing_readable_gives_empty_scores_and_a_nan_loss(clips, model, tmp_path):
    bad_path = tmp_path / "broken.wav"
    bad_path.write_bytes(b"")
    s = score_clips(model, clips.iloc[[0]].assign(path=str(bad_path)), 4, SR, 0.5)
    assert s.clip_ids == [] and s.scores.shape == (0,) and np.isnan(s.loss) and len(s.rejects) == 1


def test_embeddings_are_the_unit_penultimate_vectors(clips, model):
    s = score_clips(model, clips, 4, SR, 0.5, embeddings=True)
    _, waves = _direct(model, clips, 0.5)
    with torch.no_grad():
        pen = model.forward_with_features(waves)[1]["penultimate"]
    expected = (pen / pen.norm(dim=1, keepdim=True)).numpy()
    assert s.embeddings.shape == (len(clips), 8) and np.allclose(s.embeddings, expected, atol=1e-5)
    assert np.allclose(np.linalg.norm(s.embeddings, axis=1), 1.0, atol=1e-5)


def test_scoring_in_memory_waves_matches_scoring_the_rows(clips, model):
    ids, waves, labels, rejects = load_waves(clips, SR, 0.5)
    assert ids == clips["clip_id"].tolist() and waves.shape == (len(clips), 8000) and rejects == []
    scores, embs = score_waves(model, waves, 3, embeddings=True)
    rows = score_clips(model, clips, 4, SR, 0.5, embeddings=True)
    assert np.allclose(scores, rows.scores, atol=1e-5) and np.allclose(embs, rows.embeddings, atol=1e-5)
    assert labels.tolist() == rows.labels.tolist()
    assert score_waves(model, waves, 3)[1] is None
    with pytest.raises(ValueError, match="batch_size"):
        score_waves(model, waves, 0)


def test_the_model_mode_is_restored_and_no_gradients_are_kept(clips, model):
    model.train()
    try:
        score_clips(model, clips, 4, SR, 0.5)
        assert model.training
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.eval()
    s1 = score_clips(model, clips, 4, SR, 0.5)
    assert np.array_equal(s1.scores, score_clips(model, clips, 4, SR, 0.5).scores)  # eval mode: deterministic


def test_embed_batch_concatenates_or_averages_layers(clips, model):
    _, waves = _direct(model, clips, 0.5)
    dims = model.layer_dims()
    cat = embed_batch(model, waves, ["layer1", "penultimate"], "concat")
    assert cat.shape == (len(clips), dims["layer1"] + dims["penultimate"]) and cat.dtype == np.float32
    with torch.no_grad():
        pen = model.features(waves)["penultimate"].numpy()
    assert np.allclose(cat[:, dims["layer1"]:], pen, atol=1e-6)
    assert np.allclose(embed_batch(model, waves, ["penultimate", "penultimate"], "mean"), pen, atol=1e-6)


def test_bf16_autocast_scores_and_embeds_close_to_fp32_and_fp32_is_unchanged(clips, model):
    """precision bf16 (the GPU path's autocast, here on the CPU): scores and vectors near fp32's, float outputs."""
    ref = score_clips(model, clips, 4, SR, 0.5, embeddings=True)
    same = score_clips(model, clips, 4, SR, 0.5, embeddings=True, precision="fp32")
    assert np.array_equal(same.scores, ref.scores) and np.array_equal(same.embeddings, ref.embeddings)
    low = score_clips(model, clips, 4, SR, 0.5, embeddings=True, precision="bf16")
    assert low.scores.dtype == np.float64 and low.embeddings.dtype == np.float32
    assert not np.array_equal(low.scores, ref.scores)  # autocast really ran in bf16
    assert np.allclose(low.scores, ref.scores, atol=0.05 * (1 + np.abs(ref.scores).max()))
    assert np.allclose(low.embeddings, ref.embeddings, atol=0.05)
    waves = torch.randn(3, SR // 2) * 0.1
    vec = embed_batch(model, waves, ["penultimate"], "concat", precision="bf16")
    assert vec.dtype == np.float32 and np.allclose(vec, embed_batch(model, waves, ["penultimate"], "concat"), atol=0.05)


def test_an_unknown_precision_is_a_clear_error(clips, model):
    with pytest.raises(ValueError, match="precision must be one of"):
        score_clips(model, clips, 4, SR, 0.5, precision="int8")
