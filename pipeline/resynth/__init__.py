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

from pipeline.params import ConfigError, as_list, check_known_keys, mapping, number
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
# The keys of each paradigm's params block (reconstruct.<paradigm>) that its backend reads.
SETTING_KEYS: dict[str, tuple[str, ...]] = {
    "vocoder": vocoder.SETTING_KEYS,
    "codec": codec.SETTING_KEYS,
    "diffusion": diffusion.SETTING_KEYS,
}

__all__ = ["BUILDERS", "PARADIGMS", "SETTING_KEYS", "Resynthesizer", "build", "check_settings", "list_systems",
           "logmel_distance", "resynthesize", "snr_db"]


def _check(paradigm: str) -> None:
    if paradigm not in BUILDERS:
        raise ValueError(f"unknown paradigm {paradigm!r}; known: {list(PARADIGMS)}")


def check_settings(paradigm: str, block: dict | None, plan_keys: Sequence[str] = ()) -> dict:
    """Params reconstruct.<paradigm>, checked: known keys, system names and values (a ConfigError naming the key)."""
    where = f"reconstruct.{paradigm}"
    block = mapping(where, block)
    check_known_keys(where, block, [*plan_keys, *SETTING_KEYS[paradigm]])
    for key in ("systems", "strengths"):
        if key in block:
            as_list(f"{where}.{key}", block[key])
    try:
        systems = list_systems(paradigm, block)
    except ValueError as exc:
        raise ConfigError(f"params {where}: {exc}") from None
    number(f"{where}.parent_fraction", block.get("parent_fraction", 1.0), low=0, high=1, low_open=True)
    number(f"{where}.systems_per_parent", block.get("systems_per_parent"), low=1, high=len(systems), integer=True,
           allow_none=True)
    for key in ("griffinlim_iters", "ddim_steps"):
        number(f"{where}.{key}", block.get(key, 1), low=1, integer=True)
    number(f"{where}.world_frame_period_ms", block.get("world_frame_period_ms", 5.0), low=0, low_open=True)
    return block


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
