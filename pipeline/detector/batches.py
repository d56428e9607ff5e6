"""Clip audio for torch: pool selection, fixed-length crops, a training Dataset, balanced sampling, batch streams.

Reads the audio files that clip-table rows point to (paths relative to the repo root) with
pipeline.audio; writes nothing; runs no model (inference is pipeline.detector.inference). Used by pretrain,
embed, train and, through pipeline.detector.inference, evaluate and score.

- `select_pool(clips, pool)`: the rows of a teacher's pool (split train/dev/test, never eval:*).
- `crop_or_tile(wave, n, rng)`: a random crop of n samples when `rng` is given (training), else the
  first n samples, tiled when the clip is shorter (evaluation: deterministic).
- `ClipDataset`: (wave [n], label index) pairs for a DataLoader; per-item randomness comes from
  (seed, epoch, index), so it is reproducible with any number of workers.
- `balanced_sampler` / `class_weights`: bona fide is the minority class; `PairedSampler`: balanced batches that
  hold clips with their parent or fakes (`train.pair_batches`, `pretrain.pair_batches`).
- `load_batch` / `iter_batches`: streaming reads, a batch of rows -> a batch of waves plus rejects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler, WeightedRandomSampler

from pipeline.audio import AudioError, check_audio, read_audio
from pipeline.chain import Chain, apply_chain
from pipeline.params import ConfigError, all_of, as_list, check_known_keys, mapping
from pipeline.schema import BASE_SPLITS, LABEL_INDEX, PARADIGMS

log = logging.getLogger(__name__)

POOL_KEYS = ("corpora", "paradigms", "systems", "splits")


def label_indices(labels: pd.Series | list[str]) -> np.ndarray:
    """Label strings -> int64 indices (spoof = 0, bonafide = 1); a clear error for anything else."""
    labels = pd.Series(labels, dtype=object)
    bad = ~labels.isin(list(LABEL_INDEX))
    if bad.any():
        raise ValueError(f"unknown label {labels[bad].iloc[0]!r}; expected one of {list(LABEL_INDEX)}")
    return labels.map(LABEL_INDEX).to_numpy(dtype=np.int64)


def check_pool(pool: dict[str, Any] | None, where: str = "pool") -> dict[str, Any]:
    """A teacher's pool filters, checked: known keys, lists (or one name), known paradigms and splits."""
    pool = mapping(where, pool)
    check_known_keys(where, pool, POOL_KEYS)
    for key, value in pool.items():
        if value is None:
            continue
        names = [value] if isinstance(value, str) else as_list(f"{where}.{key}", value)
        if key == "paradigms":
            all_of(f"{where}.paradigms", names, PARADIGMS)
        if key == "splits" and [s for s in names if s not in BASE_SPLITS]:
            raise ConfigError(f"params {where}.splits: {names} not allowed: a pool uses only {list(BASE_SPLITS)} "
                              "(never eval:*)")
    return pool


def select_pool(clips: pd.DataFrame, pool: dict[str, Any] | None) -> pd.DataFrame:
    """Rows of a teacher's pool: split in train/dev/test and matching the pool's filters.

    `pool` keys (each optional, a list of values; missing = all): `corpora`, `paradigms`, `systems`,
    and `splits` (a subset of train/dev/test). `systems` filters spoof rows only (bona fide rows have
    system "-"), so that `{systems: [hifigan_universal]}` keeps the real clips beside their fakes.
    The row order of `clips` is kept.
    """
    pool = check_pool(pool)

    def values(key: str) -> list[str] | None:
        v = pool.get(key)
        if v is None:
            return None
        if isinstance(v, str):
            v = [v]
        return [str(x) for x in v]

    splits = values("splits") or list(BASE_SPLITS)
    keep = clips["split"].isin(splits)
    corpora, paradigms, systems = values("corpora"), values("paradigms"), values("systems")
    if corpora is not None:
        keep &= clips["corpus"].isin(corpora)
    if paradigms is not None:
        keep &= clips["paradigm"].isin(paradigms)
    if systems is not None:
        keep &= (clips["label"] == "bonafide") | clips["system"].isin(systems)
    return clips[keep.to_numpy()].reset_index(drop=True)


def crop_or_tile(wave: np.ndarray, n_samples: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Exactly `n_samples`: a random crop when `rng` is given (else the start), tiled when the wave is shorter."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if n_samples <= 0:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    if wave.size == 0:
        raise AudioError("cannot crop an empty wave")
    if wave.size < n_samples:
        reps = -(-n_samples // wave.size)
        wave = np.tile(wave, reps)
        # A random start inside the tiled wave still varies the crop for short clips in training.
        start = int(rng.integers(0, wave.size - n_samples + 1)) if rng is not None and reps > 1 else 0
        return np.ascontiguousarray(wave[start:start + n_samples])
    start = int(rng.integers(0, wave.size - n_samples + 1)) if rng is not None else 0
    return np.ascontiguousarray(wave[start:start + n_samples])


def load_wave(path: str, sample_rate: int, chain: Chain | None = None, scored_s: float | None = None) -> np.ndarray:
    """Read and check one clip (AudioError when unusable); a raw file goes through `chain` (pipeline.chain), read up
    to the chain's bound (`scored_s`: the seconds used, for a chain without a length cap)."""
    if chain is None:
        wave, _ = read_audio(path, sample_rate)
    else:
        if chain.sample_rate != sample_rate:
            raise ValueError(f"chain rate {chain.sample_rate} Hz differs from the model's {sample_rate} Hz")
        raw, sr = read_audio(path, max_duration_s=chain.read_limit_s(scored_s))
        wave = apply_chain(raw, sr, chain)
    check_audio(wave, sample_rate, min_duration_s=0.01)
    return wave


# The last entry of the augmentation stream's seed [seed, epoch, index, AUGMENT_STREAM]: a stream of its
# own, so the crop stream [seed, epoch, index] (and every crop) is the same with augmentation on or off.
AUGMENT_STREAM = 0x61756721


class ClipDataset(Dataset):
    """(wave float32 [n_samples], label index) per clip-table row; random crops when `train`.

    `augment` (e.g. a pipeline.detector.augment.Augmenter; training only, both classes alike) maps a crop and
    a generator to the augmented crop; the label is never changed.
    """

    def __init__(self, clips: pd.DataFrame, sample_rate: int, seconds: float, train: bool, seed: int = 0,
                 augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None) -> None:
        if augment is not None and not train:
            raise ValueError("ClipDataset: augmentation applies to training crops only (train=True)")
        self.paths = clips["path"].astype(str).tolist()
        self.ids = clips["clip_id"].astype(str).tolist()
        self.labels = label_indices(clips["label"])
        self.sample_rate = int(sample_rate)
        self.n_samples = int(round(seconds * sample_rate))
        self.train = bool(train)
        self.seed = int(seed)
        self.epoch = 0
        self.augment = augment

    def set_epoch(self, epoch: int) -> None:
        """Change the random crops for a new epoch (training only)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        try:
            wave = load_wave(self.paths[i], self.sample_rate)
        except AudioError as exc:
            raise AudioError(f"clip {self.ids[i]!r} ({self.paths[i]}): {exc}") from exc
        rng = np.random.default_rng([self.seed, self.epoch, i]) if self.train else None
        crop = crop_or_tile(wave, self.n_samples, rng)
        if self.augment is not None:
            aug_rng = np.random.default_rng([self.seed, self.epoch, i, AUGMENT_STREAM])
            crop = np.ascontiguousarray(self.augment(crop, aug_rng), dtype=np.float32)
        return torch.from_numpy(crop), int(self.labels[i])


def class_weights(labels: np.ndarray | pd.Series, n_classes: int = 2) -> torch.Tensor:
    """Inverse-frequency class weights (mean 1 over the present classes) for a weighted loss."""
    idx = labels if isinstance(labels, np.ndarray) and labels.dtype.kind == "i" else label_indices(labels)
    counts = np.bincount(idx, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max(int((counts > 0).sum()), 1), 0.0)
    return torch.tensor(w, dtype=torch.float32)


def balanced_sampler(labels: np.ndarray | pd.Series, num_samples: int | None = None,
                     seed: int = 0) -> WeightedRandomSampler:
    """A sampler that draws each class equally often (with replacement); `num_samples` defaults to len(labels)."""
    idx = labels if isinstance(labels, np.ndarray) and labels.dtype.kind == "i" else label_indices(labels)
    if len(idx) == 0:
        raise ValueError("balanced_sampler: no labels")
    counts = np.bincount(idx)
    weights = 1.0 / counts[idx]
    gen = torch.Generator().manual_seed(int(seed))
    return WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double),
                                 num_samples=int(num_samples or len(idx)), replacement=True, generator=gen)


def parent_indices(clips: pd.DataFrame) -> np.ndarray:
    """For each row, the row number of its parent (`parent_id`) within `clips`, or -1 (no parent, or not here)."""
    pos = {cid: i for i, cid in enumerate(clips["clip_id"].astype(str))}
    parents = clips["parent_id"] if "parent_id" in clips.columns else pd.Series([None] * len(clips))
    return np.array([pos.get(p, -1) if isinstance(p, str) else -1 for p in parents], dtype=np.int64)


class PairedSampler(Sampler):
    """Class-balanced batches in which most clips come with their partner: a bona fide clip and one of its fakes.

    Each batch of `batch_size` draws batch_size / 2 anchors with equal class probability (with replacement, as
    balanced_sampler does) and adds each anchor's partner: for a fake, its parent; for a bona fide clip, one of
    its fakes; for a clip without one in the table, a random clip of the other class. So the loss must tell apart
    clips that differ only by the generator (the bona fide / vocoded pairs of Wang & Yamagishi, arXiv 2210.10570),
    and every batch holds as many bona fide as spoof clips. Only partners inside the table count (a manifest that
    kept a fake but not its parent gives that fake a random partner). Deterministic for a seed; each pass over
    the sampler (an epoch) draws new batches.
    """

    def __init__(self, labels: np.ndarray, parents: np.ndarray, num_samples: int, batch_size: int, seed: int = 0):
        if batch_size < 2 or batch_size % 2:
            raise ValueError(f"paired batches need an even batch size of at least 2, got {batch_size}")
        self.labels, self.parents = np.asarray(labels), np.asarray(parents)
        self.n_batches = max(1, int(num_samples) // batch_size)
        self.batch_size, self.seed, self.passes = int(batch_size), int(seed), 0
        by_class = [np.nonzero(self.labels == c)[0] for c in (0, 1)]
        if any(len(c) == 0 for c in by_class):
            raise ValueError("paired batches need clips of both classes")
        self.by_class = by_class
        self.children: dict[int, list[int]] = {}
        for child, parent in enumerate(self.parents):
            if parent >= 0 and self.labels[parent] != self.labels[child]:
                self.children.setdefault(int(parent), []).append(child)

    def pairs_found(self) -> int:
        """How many (parent, fake) pairs the table holds."""
        return sum(len(v) for v in self.children.values())

    def _partner(self, i: int, rng: np.random.Generator) -> int:
        parent = int(self.parents[i])
        if parent >= 0 and self.labels[parent] != self.labels[i]:
            return parent
        kids = self.children.get(i)
        if kids:
            return int(kids[int(rng.integers(len(kids)))])
        other = self.by_class[1 - int(self.labels[i])]
        return int(other[int(rng.integers(len(other)))])

    def indices(self, epoch: int = 0) -> list[int]:
        """The flat index list of one pass: n_batches blocks of batch_size (anchor, partner) pairs."""
        rng = np.random.default_rng([self.seed, epoch])
        out: list[int] = []
        for _ in range(self.n_batches):
            for _ in range(self.batch_size // 2):
                pool = self.by_class[int(rng.integers(2))]
                anchor = int(pool[int(rng.integers(len(pool)))])
                out += [anchor, self._partner(anchor, rng)]
        return out

    def __iter__(self) -> Iterator[int]:
        self.passes += 1
        return iter(self.indices(self.passes - 1))

    def __len__(self) -> int:
        return self.n_batches * self.batch_size


@dataclass
class WaveBatch:
    """One inference batch: the rows that loaded, their waves, and rejects for the rest."""

    clip_ids: list[str]
    waves: torch.Tensor               # [B, n_samples] float32
    labels: np.ndarray                # [B] label indices
    rejects: list[dict[str, Any]] = field(default_factory=list)


Transform = Callable[[np.ndarray, str], np.ndarray]  # (wave, clip_id) -> wave: an evaluation condition


def load_batch(rows: pd.DataFrame, sample_rate: int, n_samples: int, stage: str = "",
               chain: Chain | None = None, transform: Transform | None = None) -> WaveBatch:
    """Read a batch of clip-table rows as first-N-seconds (tiled) waves; unusable clips become rejects.

    `transform` (an evaluation condition: a channel round trip, deterministic per clip) applies to each whole
    clip before the crop, as a channel applies to a whole recording.

    `chain` goes to the rows whose `prepared` column is False (raw files); rows without that column
    are prepared clips (prepare or reconstruct wrote them) and are read as they are.
    """
    ids, waves, labels, rejects = [], [], [], []
    for row in rows.itertuples(index=False):
        try:
            raw = chain is not None and not getattr(row, "prepared", True)
            wave = load_wave(row.path, sample_rate, chain if raw else None, scored_s=n_samples / sample_rate)
            if transform is not None:
                wave = transform(wave, str(row.clip_id))
                check_audio(wave, sample_rate, min_duration_s=0.01)
            wave = crop_or_tile(wave, n_samples)
        except AudioError as exc:
            rejects.append({"clip_id": row.clip_id, "path": row.path, "corpus": row.corpus, "stage": stage,
                            "reason": str(exc)})
            continue
        ids.append(str(row.clip_id))
        waves.append(wave)
        labels.append(LABEL_INDEX[row.label])
    tensor = torch.from_numpy(np.stack(waves)) if waves else torch.zeros((0, n_samples), dtype=torch.float32)
    return WaveBatch(ids, tensor, np.asarray(labels, dtype=np.int64), rejects)


def iter_batches(clips: pd.DataFrame, batch_size: int, sample_rate: int, seconds: float,
                 stage: str = "", start: int = 0, prefetch: bool = True,
                 chain: Chain | None = None, transform: Transform | None = None) -> Iterator[tuple[int, WaveBatch]]:
    """Stream (batch number, WaveBatch) over `clips` in row order, from batch `start`; memory is two batches.

    With `prefetch`, a reader thread decodes the next batch while the caller runs the model on this
    one (libsndfile releases the GIL), which hides most of the FLAC decoding time.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n_samples = int(round(seconds * sample_rate))
    n_batches = -(-len(clips) // batch_size)

    def load(b: int) -> WaveBatch:
        return load_batch(clips.iloc[b * batch_size:(b + 1) * batch_size], sample_rate, n_samples, stage=stage,
                          chain=chain, transform=transform)

    if not prefetch:
        for b in range(start, n_batches):
            yield b, load(b)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clip-reader") as pool:
        pending = pool.submit(load, start) if start < n_batches else None
        for b in range(start, n_batches):
            batch = pending.result()
            pending = pool.submit(load, b + 1) if b + 1 < n_batches else None
            yield b, batch
