"""Tests for pipeline.detector.class_means: running class means, the NCM score and the head warm start."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.detector.class_means import ClassMeans, init_head_from_means, ncm_scores


def test_class_means_over_batches_equal_the_means_of_all_rows():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 3)), np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 1])
    acc = ClassMeans()
    assert acc.means() is None
    acc.add(x[:4], y[:4])
    acc.add(x[4:], y[4:])
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    means = acc.means()
    for c in (0, 1):
        assert np.allclose(means["raw"][c], x[y == c].mean(0))
        assert np.allclose(means["normed"][c], unit[y == c].mean(0))


def test_ncm_scores_favour_the_nearer_class_mean():
    means = np.array([[1.0, 0.0], [0.0, 2.0]])  # spoof along x, bona fide along y
    scores = ncm_scores(np.array([[0.0, 1.0], [1.0, 0.0]]), means)
    assert np.allclose(scores, [1.0, -1.0])


def test_the_warm_started_head_scores_the_class_means_plus_minus_two():
    raw = np.array([[2.0, 0.5, 0.0], [0.0, 0.5, 3.0]])
    normed = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    head = torch.nn.Linear(3, 2)
    init_head_from_means(head, raw, normed)
    logits = head(torch.as_tensor(raw, dtype=torch.float32)).detach()
    assert torch.allclose(logits[:, 1] - logits[:, 0], torch.tensor([-2.0, 2.0]), atol=1e-5)
