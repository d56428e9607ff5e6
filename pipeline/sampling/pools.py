"""A teacher's embedded pool as the sample stage holds it (read by pipeline/sample.py `load_pool` from
data/embeddings/<T>/), and where its rows stand in the clip tables. Reads and writes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class Pool:
    """One teacher's embedded pool: clip ids in row order and the embedding matrix (may be a memory map)."""

    teacher: str
    ids: Any                            # clip ids in row order: Arrow strings (load_pool) or an array
    embeddings: np.ndarray              # or a ShardedEmbeddings (emb-*.npy): rows are read as `embeddings[rows]`
    scores: np.ndarray | None = None    # the teacher's bona fide score per row (ids.parquet `score`); None: none
    threshold: float = 0.0              # its decision threshold (info.json `score_threshold`)
    threshold_source: str = "none (0)"


def pool_positions(pool: Pool, clips: pd.DataFrame) -> np.ndarray:
    """The rows of `clips` holding a pool's clips, in embedding row order (clear error for unknown or duplicate ids)."""
    ids = np.asarray(pool.ids.to_pylist() if hasattr(pool.ids, "to_pylist") else pool.ids, dtype=object)
    dup = pd.Series(ids).duplicated()
    if dup.any():
        raise ValueError(f"teacher {pool.teacher}: ids.parquet repeats clip_id {ids[dup.to_numpy()][0]!r}")
    pos = pd.Index(clips["clip_id"]).get_indexer(ids)      # clip ids are unique (validate_clips)
    missing = pos < 0
    if missing.any():
        raise ValueError(f"teacher {pool.teacher}: {int(missing.sum())} embedded ids are not in the clip tables "
                         f"(first: {ids[missing][0]!r}); embeddings and clip tables are out of date")
    return pos
