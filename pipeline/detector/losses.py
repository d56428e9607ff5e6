"""Training objectives of the detector, as nn.Modules with `forward(pred, target)`.

Labels follow the model convention: spoof = 0, bonafide = 1. `build_loss(objective, params)` picks
one from a literal name -> class dict (the `train.objective` param). Every loss returns a scalar;
losses with several terms also keep the last terms in `self.terms` (a dict `group/name` -> float)
for logging.

Objectives and the formulas implemented (z are L2-normalised embeddings, tau a temperature):

- `ce`: cross-entropy on the two logits.
- `bce`: binary cross-entropy with logits on the bona fide score s = logit[bonafide] - logit[spoof]
  (the same score the evaluation uses), target 1 for bona fide.
- `supcon`: supervised contrastive loss (Khosla et al., NeurIPS 2020, "SupCon", L_out form) with a
  cross-batch negative queue (as in Sudan et al. 2026, whose exact formula is not public; the
  queue follows XBM, Wang et al., CVPR 2020, "Cross-Batch Memory for Embedding Learning")::

      L = 1/|I| sum_{i in I} -1/|P(i)| sum_{p in P(i)} log( exp(s_ip / tau) / sum_{a in A(i)} exp(s_ia / tau) )

  P(i) = other batch items with the label of i, I = anchors with |P(i)| > 0,
  A(i) = batch \\ {i}  united with  Q(i) = queue entries whose label differs from y_i.
  The queue is a FIFO of the last `queue_size` detached batch embeddings. It is warm-started: it is
  filled from the first step, but its negatives enter A(i) only after `warmup_steps` training
  steps, when the encoder has stopped moving fast and old embeddings are no longer stale noise.
  Similarity s is `cosine` (z_i . z_j) or `angular`, s = 1 - 2 * arccos(z_i . z_j) / pi, the angular
  similarity rescaled to [-1, 1] so that one temperature means the same for both; its gradient is
  not squashed near cos = +-1 the way cosine's is. The two-stage recipe (SupCon encoder, then a
  linear head with CE on the frozen encoder) lives in the train stage.
- `racl`: regularisation-assisted contrastive loss with multi-layer aggregation. The paper
  (Cheng et al. 2026) gives the idea, not a public formula; implemented::

      z   = normalize( concat_{l in layers} normalize(f_l) )           (multi-layer aggregation)
      L   = CE(logits, y) + weight * SupCon_tau(z, y) + reg_weight * R(z, y)
      R   = mean_{i bona fide} || z_i - mean_{j bona fide} z_j ||^2

  f_l is the time-frequency-pooled output of layer l (`Detector.features`), each normalised first so
  that no layer dominates by its scale. R is a compactness regulariser on the bona fide class only,
  after the one-class idea of OC-softmax (Zhang, Jiang & Yamagishi, IEEE SPL 2021): real speech
  forms one tight cluster while fakes may spread, which is what generalises to unseen attacks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.params import ConfigError, Section, as_list, number, one_of
from pipeline.schema import BONAFIDE, SPOOF

SIMILARITIES = ("cosine", "angular")


def bonafide_logit(pred: torch.Tensor) -> torch.Tensor:
    """The bona fide score of [B, 2] logits (logit[bonafide] - logit[spoof]); a [B] tensor passes through."""
    if pred.dim() == 2 and pred.shape[1] == 2:
        return pred[:, BONAFIDE] - pred[:, SPOOF]
    if pred.dim() == 1:
        return pred
    raise ValueError(f"expected logits [B, 2] or scores [B], got shape {tuple(pred.shape)}")


class CrossEntropyLoss(nn.Module):
    """Cross-entropy on [B, 2] logits against labels (spoof = 0, bonafide = 1)."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(pred, target.long())


class BinaryCrossEntropyLoss(nn.Module):
    """Binary cross-entropy with logits on the bona fide score, target 1 = bona fide."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(bonafide_logit(pred), target.float())


def pairwise_similarity(a: torch.Tensor, b: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """Similarity matrix [A, B] of L2-normalised rows: cosine, or angular 1 - 2*theta/pi."""
    cos = a @ b.T
    if kind == "cosine":
        return cos
    if kind == "angular":
        # Clamp away from +-1: d/dx arccos(x) is infinite there.
        theta = torch.arccos(cos.clamp(-1.0 + 1e-6, 1.0 - 1e-6))
        return 1.0 - 2.0 * theta / math.pi
    raise ValueError(f"unknown similarity {kind!r}; known: {list(SIMILARITIES)}")


class SupConLoss(nn.Module):
    """Supervised contrastive loss with a warm-started cross-batch negative queue (formula in the module doc)."""

    def __init__(self, similarity: str = "cosine", temperature: float = 0.07, queue_size: int = 0,
                 warmup_steps: int = 0) -> None:
        super().__init__()
        if similarity not in SIMILARITIES:
            raise ValueError(f"unknown similarity {similarity!r}; known: {list(SIMILARITIES)}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.similarity = similarity
        self.temperature = float(temperature)
        self.queue_size = int(queue_size)
        self.warmup_steps = int(warmup_steps)
        self.steps = 0
        self.register_buffer("queue", torch.zeros(0, 0), persistent=False)
        self.register_buffer("queue_labels", torch.zeros(0, dtype=torch.long), persistent=False)
        self.terms: dict[str, float] = {}

    @property
    def queue_active(self) -> bool:
        """True once the warm-up is over and the queue holds entries."""
        return self.queue_size > 0 and self.steps >= self.warmup_steps and self.queue.shape[0] > 0

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        z = F.normalize(pred.float(), dim=1)
        y = target.long().view(-1)
        n = z.shape[0]
        sim = pairwise_similarity(z, z, self.similarity) / self.temperature
        eye = torch.eye(n, dtype=torch.bool, device=z.device)
        positives = (y[:, None] == y[None, :]) & ~eye
        logits = sim.masked_fill(eye, float("-inf"))
        use_queue = self.training and self.queue_active
        if use_queue:
            qsim = pairwise_similarity(z, self.queue.to(z.device), self.similarity) / self.temperature
            negatives = y[:, None] != self.queue_labels.to(z.device)[None, :]
            logits = torch.cat([logits, qsim.masked_fill(~negatives, float("-inf"))], dim=1)
        log_denominator = torch.logsumexp(logits, dim=1)
        n_pos = positives.sum(1)
        anchors = n_pos > 0
        if not anchors.any():
            loss = pred.sum() * 0.0  # no anchor has a positive: nothing to pull together
        else:
            log_prob = sim - log_denominator[:, None]
            mean_log_prob_pos = (log_prob * positives).sum(1)[anchors] / n_pos[anchors]
            loss = -mean_log_prob_pos.mean()
        if self.training:
            self._enqueue(z.detach(), y)
            self.steps += 1
        n_queue = float(self.queue.shape[0]) if use_queue else 0.0
        self.terms = {"supcon/loss": float(loss.detach()), "supcon/queue": n_queue}
        return loss

    def _enqueue(self, z: torch.Tensor, y: torch.Tensor) -> None:
        if self.queue_size <= 0:
            return
        if self.queue.shape[0] == 0 or self.queue.shape[1] != z.shape[1]:
            queue, labels = z, y
        else:
            queue, labels = torch.cat([z, self.queue]), torch.cat([y, self.queue_labels])
        self.queue, self.queue_labels = queue[: self.queue_size], labels[: self.queue_size]


def aggregate_layers(features: dict[str, torch.Tensor], layers: list[str]) -> torch.Tensor:
    """Multi-layer aggregation: normalise each layer's pooled features, concatenate, normalise again."""
    missing = [name for name in layers if name not in features]
    if missing:
        raise KeyError(f"layers {missing} not in the model's features; available: {sorted(features)}")
    if not layers:
        raise ValueError("aggregate_layers needs at least one layer")
    parts = [F.normalize(features[name].float().flatten(1), dim=1) for name in layers]
    return F.normalize(torch.cat(parts, dim=1), dim=1)


def bonafide_compactness(z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of bona fide embeddings to their batch mean (0 with fewer than 2)."""
    bona = z[target.long().view(-1) == BONAFIDE]
    if bona.shape[0] < 2:
        return z.sum() * 0.0
    return (bona - bona.mean(0, keepdim=True)).pow(2).sum(1).mean()


class RACLLoss(nn.Module):
    """CE + weight * SupCon on multi-layer aggregated features + reg_weight * bona fide compactness.

    `pred` is a dict with "logits" [B, 2] and the pooled features of every layer in `layers`
    (what `Detector.features` returns, plus the logits).
    """

    def __init__(self, layers: list[str], weight: float = 0.1, temperature: float = 0.1, reg_weight: float = 0.1,
                 similarity: str = "cosine") -> None:
        super().__init__()
        if not layers:
            raise ValueError("racl.layers must name at least one layer")
        self.layers = list(layers)
        self.weight = float(weight)
        self.reg_weight = float(reg_weight)
        self.ce = CrossEntropyLoss()
        self.supcon = SupConLoss(similarity=similarity, temperature=temperature, queue_size=0)
        self.terms: dict[str, float] = {}

    def forward(self, pred: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if not isinstance(pred, dict) or "logits" not in pred:
            raise TypeError("RACLLoss expects pred = {'logits': [B, 2], <layer>: [B, D], ...}")
        z = aggregate_layers(pred, self.layers)
        ce = self.ce(pred["logits"], target)
        con = self.supcon(z, target)
        reg = bonafide_compactness(z, target)
        loss = ce + self.weight * con + self.reg_weight * reg
        self.terms = {"racl/ce": float(ce.detach()), "racl/supcon": float(con.detach()),
                      "racl/compact": float(reg.detach())}
        return loss


@dataclass(frozen=True)
class SupConParams(Section):
    """params `train.supcon`: the loss (similarity, temperature, queue) and train's head phase (head_epochs,
    head_lr: null = 10 x train.lr)."""

    NAME: ClassVar[str] = "train.supcon"
    similarity: str = "cosine"
    temperature: float = 0.07
    queue_size: int = 0
    warmup_steps: int = 0
    head_epochs: int = 3
    head_lr: float | None = None

    def check(self) -> None:
        one_of(f"{self.where}.similarity", self.similarity, SIMILARITIES)
        number(f"{self.where}.temperature", self.temperature, low=0, low_open=True)
        for key in ("queue_size", "warmup_steps", "head_epochs"):
            number(f"{self.where}.{key}", getattr(self, key), low=0, integer=True)
        number(f"{self.where}.head_lr", self.head_lr, low=0, low_open=True, allow_none=True)


@dataclass(frozen=True)
class RACLParams(Section):
    """params `train.racl`: the layers aggregated and the weights of the RACL terms."""

    NAME: ClassVar[str] = "train.racl"
    layers: tuple[str, ...] = ("penultimate",)
    weight: float = 0.1
    temperature: float = 0.1
    reg_weight: float = 0.1
    similarity: str = "cosine"

    @classmethod
    def convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        return {**kw, "layers": tuple(as_list(f"{cls.NAME}.layers", kw.get("layers", ["penultimate"])))}

    def check(self) -> None:
        if not self.layers:
            raise ConfigError(f"params {self.where}.layers: name at least one layer (e.g. [penultimate])")
        one_of(f"{self.where}.similarity", self.similarity, SIMILARITIES)
        number(f"{self.where}.temperature", self.temperature, low=0, low_open=True)
        for key in ("weight", "reg_weight"):
            number(f"{self.where}.{key}", getattr(self, key), low=0)

LOSSES: dict[str, type[nn.Module]] = {
    "ce": CrossEntropyLoss,
    "bce": BinaryCrossEntropyLoss,
    "supcon": SupConLoss,
    "racl": RACLLoss,
}


def build_loss(objective: str, params: dict[str, Any] | None = None) -> nn.Module:
    """The loss for `train.objective`; `params` holds the train section's `supcon` / `racl` blocks."""
    params = params or {}
    if objective not in LOSSES:
        raise ValueError(f"unknown objective {objective!r}; known: {list(LOSSES)}")
    if objective == "supcon":
        sc = SupConParams.from_params(params.get("supcon"))
        return SupConLoss(similarity=sc.similarity, temperature=float(sc.temperature), queue_size=int(sc.queue_size),
                          warmup_steps=int(sc.warmup_steps))
    if objective == "racl":
        rc = RACLParams.from_params(params.get("racl"))
        return RACLLoss(layers=list(rc.layers), weight=float(rc.weight), temperature=float(rc.temperature),
                        reg_weight=float(rc.reg_weight), similarity=rc.similarity)
    return LOSSES[objective]()
