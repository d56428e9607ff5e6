"""Nearest class mean (NCM) on a detector's penultimate embeddings: SupCon's dev score and head warm start.

Pure numpy plus one torch write into a linear layer; reads and writes no files. Used by `train`'s
two-stage SupCon run: during stage 1 the classifier is untrained, so the dev EER is measured with
the NCM score of the epoch's training class means; stage 2 starts the linear head at that solution.
Labels are indices (spoof = 0, bona fide = 1).
"""

from __future__ import annotations

import numpy as np
import torch


class ClassMeans:
    """Running per-class means of embedding batches: raw, and of the L2-normalised embeddings."""

    def __init__(self) -> None:
        self.sums: dict[str, np.ndarray] | None = None
        self.counts = np.zeros(2)

    def add(self, raw: np.ndarray, labels: np.ndarray) -> None:
        """Add a batch: embeddings [B, D] and their label indices [B]."""
        z = raw / (np.linalg.norm(raw, axis=1, keepdims=True) + 1e-12)
        if self.sums is None:
            self.sums = {"normed": np.zeros((2, z.shape[1])), "raw": np.zeros((2, z.shape[1]))}
        for c in (0, 1):
            self.sums["normed"][c] += z[labels == c].sum(0)
            self.sums["raw"][c] += raw[labels == c].sum(0)
            self.counts[c] += (labels == c).sum()

    def means(self) -> dict[str, np.ndarray] | None:
        """{"normed": [2, D], "raw": [2, D]}, row 0 = spoof, row 1 = bona fide; None before any batch."""
        if self.sums is None:
            return None
        return {k: v / np.maximum(self.counts, 1)[:, None] for k, v in self.sums.items()}


def ncm_scores(embs: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Nearest-class-mean score of normalised embeddings: cos(z, mean_bonafide) - cos(z, mean_spoof)."""
    unit = means / (np.linalg.norm(means, axis=1, keepdims=True) + 1e-12)
    return embs @ unit[1] - embs @ unit[0]


def init_head_from_means(classifier: torch.nn.Linear, raw_means: np.ndarray, normed_means: np.ndarray) -> None:
    """Warm-start the linear head at the class-mean direction, so stage 2 starts from the NCM solution.

    score(p) = logit_b - logit_s = a * d . (p - c), with d the difference of the unit class means,
    c the midpoint of the raw class means and a set so that the class means score +-2.
    """
    unit = normed_means / (np.linalg.norm(normed_means, axis=1, keepdims=True) + 1e-12)
    d = unit[1] - unit[0]
    c = (raw_means[1] + raw_means[0]) / 2
    gap = float(d @ (raw_means[1] - raw_means[0]))
    a = 4.0 / gap if gap > 1e-8 else 1.0
    w = torch.as_tensor(a * d / 2, dtype=classifier.weight.dtype)
    b = float(a * (d @ c) / 2)
    with torch.no_grad():
        classifier.weight.zero_()
        classifier.weight[1] = w.to(classifier.weight.device)
        classifier.weight[0] = -w.to(classifier.weight.device)
        classifier.bias.copy_(torch.tensor([b, -b], dtype=classifier.bias.dtype))
