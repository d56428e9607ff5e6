"""Neural-collapse diagnostics of a pool: NC1, distances between class means, counts before/after sampling.

Reads nothing and writes nothing; the sample stage puts the results into reports/sampling.json.

NC1 (Papyan, Han & Donoho 2020) measures within-class variability relative to between-class spread:
    NC1 = trace(Sigma_W Sigma_B^+) / C,
    Sigma_W = 1/N sum_i (x_i - mu_{c_i})(x_i - mu_{c_i})^T,
    Sigma_B = 1/C sum_c (mu_c - mu_G)(mu_c - mu_G)^T,  mu_G = 1/C sum_c mu_c,
on L2-normalised embeddings by default. Sigma_B has rank at most C - 1, so with its eigenpairs
(lambda_j, u_j), lambda_j > 0: trace(Sigma_W Sigma_B^+) = sum_j (1/lambda_j) * 1/N sum_i (u_j . (x_i - mu_{c_i}))^2,
which costs O(N * D * C) instead of forming the D x D matrix Sigma_W. Smaller = more collapsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.sampling.nc import DEFAULT_CHUNK_ROWS, check_inputs, class_means, iter_blocks

COUNT_COLUMNS = ("label", "paradigm", "system", "speaker")


def nc1(embeddings: np.ndarray, labels: Any, *, normalize: bool = True, classes: Sequence | None = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS) -> float:
    """NC1 = trace(Sigma_W Sigma_B^+) / C (see the module docstring)."""
    labels, classes = check_inputs(embeddings, labels, classes, chunk_rows, check_finite=False)
    means = np.stack(list(class_means(embeddings, labels, classes, normalize, chunk_rows).values()))
    centred = means - means.mean(axis=0)
    sigma_b = centred.T @ centred / len(classes)
    lam, vec = np.linalg.eigh(sigma_b)
    keep = lam > max(lam.max(), 0.0) * 1e-10
    if not keep.any():
        return float("inf")                # all class means coincide: no between-class spread at all
    lam, vec = lam[keep], vec[:, keep]
    code = np.zeros(len(labels), dtype=np.int64)
    for k, c in enumerate(classes):
        code[labels == c] = k
    acc = np.zeros(len(lam), dtype=np.float64)
    vec32, mean_proj = vec.astype(np.float32), means @ vec
    for start, x in iter_blocks(embeddings, normalize, chunk_rows):
        # u.(x - mu) = u.x - u.mu: the block is projected in float32 (a GEMV), never copied to float64
        proj = (x @ vec32).astype(np.float64) - mean_proj[code[start:start + len(x)]]
        acc += (proj ** 2).sum(axis=0)
    return float((acc / len(labels) / lam).sum() / len(classes))


def mean_distances(means: dict[Any, np.ndarray]) -> dict[str, float]:
    """L2 distance between every pair of class means, keyed 'a|b'."""
    keys = list(means)
    return {f"{a}|{b}": float(np.linalg.norm(means[a] - means[b]))
            for i, a in enumerate(keys) for b in keys[i + 1:]}


def counts(df: pd.DataFrame, columns: Sequence[str] = COUNT_COLUMNS) -> dict[str, Any]:
    """Row count and value counts per column (sorted by value) of a clip table."""
    out: dict[str, Any] = {"n": int(len(df))}
    for col in columns:
        vc = df[col].astype(str).value_counts()
        out[col] = {str(k): int(vc[k]) for k in sorted(vc.index)}
    return out


def stage_header(p: Any, seed: int, inputs: Any) -> dict[str, Any]:
    """The head of reports/sampling.json: the sampling params of the run (`p`: the stage's SampleParams) and
    what the methods beyond nc read (`inputs`: methods.MethodInputs)."""
    return {"seed": seed, "method": p.method, "ratio": p.ratio, "class_ratio": p.class_ratio,
            "n_clusters": p.n_clusters, "normalize": p.normalize, "index": p.index, "pools": {},
            "methods": {**inputs.diag, "skipped": dict(inputs.skipped)}}
