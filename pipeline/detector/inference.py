"""Batch inference with a detector: clip-table rows or waves in, bona fide scores (and embeddings) out.

Reads the audio that clip-table rows point to (through pipeline.detector.batches); writes nothing. The one
scoring path of pretrain and train (dev EER), evaluate and the `score` command, and the layer
vectors of embed. Every clip is its first `seconds` (tiled when shorter), the model runs in eval
mode without gradients, and the model's train/eval mode is restored afterwards.

- `score_clips(model, clips, ...)`: streams rows -> `Scores` (ids, scores, labels, mean CE loss,
  rejects; optionally the L2-normalised penultimate embeddings), in row order.
- `load_waves(clips, ...)` + `score_waves(model, waves, ...)`: the same for a set held in memory
  (train reads its dev set once and scores it every epoch).
- `embed_batch(model, waves, layers, aggregate)`: pooled layer outputs of one wave batch (embed), and with
  `scores=True` the bona fide scores of the same forward pass.
Score = logit[bonafide] - logit[spoof] (pipeline.models.bonafide_score): higher = more bona fide.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from pipeline.chain import Chain
from pipeline.detector.batches import Transform, iter_batches
from pipeline.logs import progress
from pipeline.models import bonafide_score
from pipeline.runtime.devices import inference_precision

__all__ = ["Scores", "embed_batch", "load_waves", "score_clips", "score_waves"]


@dataclass
class Scores:
    """Bona fide scores of a set of clips (the rows that loaded), with their labels and the rejects."""

    clip_ids: list[str]
    scores: np.ndarray                # float64 [N], higher = more bona fide
    labels: np.ndarray                # int64 [N] label indices
    loss: float                       # mean cross-entropy over the clips (nan when none)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    embeddings: np.ndarray | None = None  # float32 [N, D] unit-length penultimate vectors, when asked for


class _Accumulator:
    """Collects per-batch outputs: scores, summed CE loss, optional penultimate embeddings."""

    def __init__(self, model: torch.nn.Module, device: str | torch.device, embeddings: bool,
                 precision: str = "fp32") -> None:
        self.model, self.device, self.want_emb, self.precision = model, device, embeddings, precision
        self.scores: list[np.ndarray] = []
        self.embs: list[np.ndarray] = []
        self.loss_sum = 0.0

    def add(self, waves: torch.Tensor, labels: np.ndarray | None) -> None:
        waves = waves.to(self.device)
        with inference_precision(self.device, self.precision):
            if self.want_emb:
                logits, feats = self.model.forward_with_features(waves)
                self.embs.append(F.normalize(feats["penultimate"].float(), dim=1).cpu().numpy())
            else:
                logits = self.model(waves)
        logits = logits.float()
        if labels is not None:
            y = torch.as_tensor(labels, device=logits.device)
            self.loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        self.scores.append(bonafide_score(logits).cpu().double().numpy())

    def result(self) -> tuple[np.ndarray, np.ndarray | None]:
        scores = np.concatenate(self.scores) if self.scores else np.zeros(0)
        if not self.want_emb:
            return scores, None
        return scores, np.concatenate(self.embs) if self.embs else np.zeros((0, 0), np.float32)


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no autograd for the block; the model's previous train/eval mode comes back afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def score_clips(model: torch.nn.Module, clips: pd.DataFrame, batch_size: int, sample_rate: int, seconds: float,
                device: str | torch.device = "cpu", stage: str = "", embeddings: bool = False,
                chain: Chain | None = None, precision: str = "fp32", transform: Transform | None = None) -> Scores:
    """Score clip-table rows in row order (first `seconds`, tiled); unreadable clips become rejects.

    `chain`: the preprocessing chain for rows whose `prepared` column is False (pipeline.detector.batches.load_batch).
    `precision`: fp32 | bf16 | fp16 (autocast, pipeline.runtime.devices.inference_precision).
    `transform`: an evaluation condition applied to each clip before its crop (pipeline.detector.batches.load_batch).
    """
    acc = _Accumulator(model, device, embeddings, precision)
    ids, labels, rejects = [], [], []
    bar = progress(None, desc=f"{stage or 'score'}: scoring", total=len(clips), unit="clip")
    with _eval_mode(model):
        for _, batch in iter_batches(clips, batch_size, sample_rate, seconds, stage=stage, chain=chain,
                                     transform=transform):
            rejects += batch.rejects
            if batch.clip_ids:
                acc.add(batch.waves, batch.labels)
                ids += batch.clip_ids
                labels.append(batch.labels)
            bar.update(len(batch.clip_ids) + len(batch.rejects))
    bar.close()
    scores, embs = acc.result()
    n = len(ids)
    return Scores(ids, scores, np.concatenate(labels) if labels else np.zeros(0, np.int64),
                  acc.loss_sum / n if n else float("nan"), rejects, embs)


def load_waves(clips: pd.DataFrame, sample_rate: int, seconds: float,
               stage: str = "") -> tuple[list[str], torch.Tensor, np.ndarray, list[dict[str, Any]]]:
    """(clip ids, waves [N, n_samples], label indices, rejects) of clip rows, read once into memory."""
    ids, waves, labels, rejects = [], [], [], []
    for _, batch in iter_batches(clips, 64, sample_rate, seconds, stage=stage):
        rejects += batch.rejects
        ids += batch.clip_ids
        waves.append(batch.waves)
        labels.append(batch.labels)
    n_samples = int(round(seconds * sample_rate))
    return (ids, torch.cat(waves) if waves else torch.zeros((0, n_samples)),
            np.concatenate(labels) if labels else np.zeros(0, np.int64), rejects)


def score_waves(model: torch.nn.Module, waves: torch.Tensor, batch_size: int, device: str | torch.device = "cpu",
                embeddings: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """(scores float64 [N], unit penultimate embeddings [N, D] or None) of waves held in memory, in order."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    acc = _Accumulator(model, device, embeddings)
    with _eval_mode(model):
        for i in range(0, len(waves), batch_size):
            acc.add(waves[i:i + batch_size], None)
    return acc.result()


def embed_batch(model: torch.nn.Module, waves: torch.Tensor, layers: list[str], aggregate: str,
                precision: str = "fp32", scores: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Vectors [B, D] float32 of a wave batch: pooled `layers` concatenated or averaged (`aggregate` "mean");
    with `scores`, (vectors, bona fide scores float64 [B]) from the same forward pass."""
    with torch.inference_mode(), inference_precision(waves.device, precision):
        logits, feats = model.forward_with_features(waves)
        parts = [feats[name].float() for name in layers]
        out = torch.cat(parts, dim=1) if aggregate == "concat" else torch.stack(parts).mean(dim=0)
    vectors = out.cpu().numpy()
    if not scores:
        return vectors
    return vectors, bonafide_score(logits.float()).cpu().double().numpy()
