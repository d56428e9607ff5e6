"""Losses: each decreases on a tiny separable problem; SupCon matches a loop; the queue warms up."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pipeline.detector.losses import (
    BinaryCrossEntropyLoss,
    CrossEntropyLoss,
    RACLLoss,
    SupConLoss,
    aggregate_layers,
    bonafide_logit,
    build_loss,
    pairwise_similarity,
)


def _toy_batch(n: int = 32, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, d, generator=g) + 1.5 * (y[:, None].float() * 2 - 1)
    return x, y


class _TwoLayer(nn.Module):
    """A tiny net with the Detector's output shapes: logits and pooled per-layer features."""

    def __init__(self, d: int = 8) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.l1 = nn.Linear(d, 16)
        self.l2 = nn.Linear(16, 8)
        self.classifier = nn.Linear(8, 2)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h1 = torch.relu(self.l1(x))
        h2 = torch.relu(self.l2(h1))
        return {"layer1": h1, "penultimate": h2}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x)["penultimate"])


def _train(loss_fn: nn.Module, pred_of, steps: int = 40) -> tuple[float, float]:
    net = _TwoLayer()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    x, y = _toy_batch()
    loss_fn.train()
    losses = []
    for _ in range(steps):
        loss = loss_fn(pred_of(net, x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses[0], losses[-1]


def test_ce_decreases():
    first, last = _train(CrossEntropyLoss(), lambda net, x: net(x))
    assert last < 0.5 * first


def test_bce_decreases():
    first, last = _train(BinaryCrossEntropyLoss(), lambda net, x: net(x))
    assert last < 0.5 * first


@pytest.mark.parametrize("similarity", ["cosine", "angular"])
def test_supcon_decreases(similarity):
    loss = SupConLoss(similarity=similarity, temperature=0.1, queue_size=64, warmup_steps=5)
    first, last = _train(loss, lambda net, x: net.features(x)["penultimate"])
    assert last < first - 0.1
    assert loss.queue_active


def test_racl_decreases_and_logs_its_terms():
    loss = RACLLoss(layers=["layer1", "penultimate"], weight=0.5, temperature=0.1, reg_weight=0.5)
    first, last = _train(loss, lambda net, x: {**net.features(x), "logits": net(x)})
    assert last < 0.7 * first
    assert set(loss.terms) == {"racl/ce", "racl/supcon", "racl/compact"}


def _supcon_loop(z: torch.Tensor, y: torch.Tensor, tau: float) -> float:
    """SupCon L_out written as loops over anchors and positives (no queue)."""
    z = torch.nn.functional.normalize(z, dim=1)
    total, anchors = 0.0, 0
    for i in range(len(y)):
        pos = [p for p in range(len(y)) if p != i and y[p] == y[i]]
        if not pos:
            continue
        denom = sum(math.exp(float(z[i] @ z[a]) / tau) for a in range(len(y)) if a != i)
        total += -sum(math.log(math.exp(float(z[i] @ z[p]) / tau) / denom) for p in pos) / len(pos)
        anchors += 1
    return total / anchors


def test_supcon_matches_a_loop_implementation():
    z, _ = _toy_batch(n=10, d=4, seed=3)
    y = torch.tensor([0, 0, 1, 1, 1, 0, 1, 0, 0, 1])
    loss = SupConLoss(temperature=0.5).eval()
    assert float(loss(z, y)) == pytest.approx(_supcon_loop(z, y, 0.5), rel=1e-5)


def test_supcon_queue_is_bounded_and_used_only_after_warmup():
    loss = SupConLoss(temperature=0.1, queue_size=20, warmup_steps=3).train()
    z, y = _toy_batch(n=8, d=4)
    for step in range(3):
        loss(z, y)
        assert loss.terms["supcon/queue"] == 0.0, f"queue used at step {step}, inside the warm-up"
    assert loss.queue.shape == (20, 4)  # 3 batches of 8, newest 20 kept
    loss(z, y)
    assert loss.terms["supcon/queue"] == 20.0
    assert loss.queue.shape[0] == 20


def test_supcon_queue_negatives_raise_the_loss():
    z, y = _toy_batch(n=8, d=4)
    plain = SupConLoss(temperature=0.1).train()(z, y)
    queued = SupConLoss(temperature=0.1, queue_size=16, warmup_steps=0).train()
    queued(z, y)  # fills the queue
    assert float(queued(z, y)) > float(plain)


def test_supcon_without_positives_is_zero_with_a_graph():
    z = torch.randn(2, 4, requires_grad=True)
    loss = SupConLoss()(z, torch.tensor([0, 1]))
    loss.backward()
    assert float(loss.detach()) == 0.0


def test_angular_similarity_is_in_range_and_ordered():
    a = torch.nn.functional.normalize(torch.randn(6, 5), dim=1)
    s = pairwise_similarity(a, a, "angular")
    assert float(s.max()) <= 1.0 and float(s.min()) >= -1.0
    assert torch.allclose(torch.diagonal(s), torch.ones(6), atol=1e-2)
    cos = pairwise_similarity(a, a, "cosine")
    order = torch.argsort(cos.flatten())
    assert torch.all(torch.diff(s.flatten()[order]) >= -1e-5)


def test_bad_similarity_and_temperature_raise():
    with pytest.raises(ValueError, match="similarity"):
        SupConLoss(similarity="dot")
    with pytest.raises(ValueError, match="temperature"):
        SupConLoss(temperature=0.0)


def test_aggregate_layers_names_missing_layer():
    with pytest.raises(KeyError, match="layer9"):
        aggregate_layers({"penultimate": torch.randn(2, 3)}, ["layer9"])
    z = aggregate_layers({"a": torch.randn(3, 4), "b": torch.randn(3, 7)}, ["a", "b"])
    assert z.shape == (3, 11) and torch.allclose(z.norm(dim=1), torch.ones(3))


def test_racl_wants_a_dict():
    with pytest.raises(TypeError, match="logits"):
        RACLLoss(layers=["penultimate"])(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]))


def test_bonafide_logit_shapes():
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    assert torch.equal(bonafide_logit(logits), torch.tensor([2.0, -2.0]))
    with pytest.raises(ValueError, match="shape"):
        bonafide_logit(torch.zeros(2, 3))


def test_build_loss_reads_params_and_rejects_unknown():
    loss = build_loss("supcon", {"supcon": {"similarity": "angular", "temperature": 0.2, "queue_size": 8,
                                            "warmup_steps": 2}})
    assert isinstance(loss, SupConLoss) and loss.similarity == "angular" and loss.queue_size == 8
    assert isinstance(build_loss("racl", {"racl": {"layers": ["penultimate"]}}), RACLLoss)
    assert isinstance(build_loss("bce"), BinaryCrossEntropyLoss)
    with pytest.raises(ValueError, match="unknown objective"):
        build_loss("hinge")
