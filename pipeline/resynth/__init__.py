"""Resynthesis backends, one module per paradigm, chosen through literal name -> callable dicts.

Each backend module exposes `SYSTEMS`, `systems(cfg) -> list[str]` and
`build(system, cfg, device) -> Resynthesizer`; a Resynthesizer turns a batch of real waves into
reconstructions of the same length (see pipeline.resynth.common). `cfg` holds the paradigm's
params section plus `sample_rate`, `seed` and `generator` (the fitted model directory, if any).
No file I/O beyond loading model weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from pipeline.resynth import codec, diffusion, vocoder
from pipeline.resynth.common import Resynthesizer, logmel_distance, snr_db

BUILDERS: dict[str, Callable[[str, dict, torch.device | str], Resynthesizer]] = {
    "vocoder": vocoder.build,
    "codec": codec.build,
    "diffusion": diffusion.build,
}
SYSTEM_LISTS: dict[str, Callable[[dict], list[str]]] = {
    "vocoder": vocoder.systems,
    "codec": codec.systems,
    "diffusion": diffusion.systems,
}
PARADIGMS = tuple(BUILDERS)

__all__ = ["BUILDERS", "PARADIGMS", "Resynthesizer", "build", "list_systems", "logmel_distance", "resynthesize",
           "snr_db"]


def _check(paradigm: str) -> None:
    if paradigm not in BUILDERS:
        raise ValueError(f"unknown paradigm {paradigm!r}; known: {list(PARADIGMS)}")


def list_systems(paradigm: str, cfg: dict) -> list[str]:
    """The system names a paradigm's config asks for."""
    _check(paradigm)
    return SYSTEM_LISTS[paradigm](cfg)


def build(paradigm: str, system: str, cfg: dict, device: torch.device | str = "cpu") -> Resynthesizer:
    """The Resynthesizer of one system of one paradigm."""
    _check(paradigm)
    return BUILDERS[paradigm](system, cfg, device)


def resynthesize(paradigm: str, system: str, waves: Sequence[np.ndarray], sample_rate: int, cfg: dict | None = None,
                 device: torch.device | str = "cpu") -> list[np.ndarray]:
    """Build a system and run it once over `waves` (convenience for notebooks and tests)."""
    resynth = build(paradigm, system, {**(cfg or {}), "sample_rate": sample_rate}, device)
    return resynth(list(waves))
