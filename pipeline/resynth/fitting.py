"""What the generator fit stages (fit_codec, fit_diffusion) share: their params base (and the check of their model
overrides against the defaults, check_like_defaults), their training audio and their pass over the one training loop.

Reads the audio of the bona fide train clips (`read_waves`); writes nothing (each stage saves its own model).
Both stages train on the loop of every fitted model, pipeline.detector.loop.fit: `fit_steps` runs a stage's
`steps` optimiser steps as the one epoch of one phase, so the optimiser step (zero_grad, backward, gradient
clipping, step), the best state, early stopping and the epoch log are the detectors'. A stage supplies its
batch (the random draws of one step, in step order), its step (batch -> loss) and its evaluation: the running
loss terms it logs. There is no dev split of generator training and one epoch has nothing to stop early, so
the best state is the last step's, and the saved weights are those of the last step.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipeline.audio import AudioError, check_audio, read_audio
from pipeline.detector.loop import EpochResult, Phase, RunState, fit
from pipeline.io import write_json_atomic
from pipeline.logs import StageError, log_some, stage_timer
from pipeline.params import (
    Common,
    ConfigError,
    Section,
    as_list,
    check_known_keys,
    flag,
    number,
    stage_parser,
)
from pipeline.runtime.devices import setup_torch
from pipeline.schema import read_clips

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitParams(Section):
    """The keys every fit_* section has; a stage's class adds its own (and its defaults)."""

    steps: int = 300
    batch_size: int = 8
    lr: float = 2e-3
    max_clips: int | None = None   # null = every bona fide train clip

    def check(self) -> None:
        number(f"{self.where}.steps", self.steps, low=1, integer=True)
        number(f"{self.where}.batch_size", self.batch_size, low=1, integer=True)
        number(f"{self.where}.lr", self.lr, low=0, low_open=True)
        number(f"{self.where}.max_clips", self.max_clips, low=1, integer=True, allow_none=True)


def like_default(name: str, value: Any, default: Any) -> Any:
    """Check a value of a free-form params block (a fit stage's model overrides) against its default's kind.

    bool -> true/false; int -> an integer (>= 1 when the default is, else >= 0); float -> a number (> 0 when the
    default is); list -> a list whose items are each like the default's first item; str -> a string. A bool is never
    a number here either (YAML reads `yes` as true, and true would silently be 1).
    """
    if isinstance(default, bool):
        return flag(name, value)
    if isinstance(default, int):
        return number(name, value, low=1 if default >= 1 else 0, integer=True)
    if isinstance(default, float):
        return number(name, value, low=0, low_open=default > 0)
    if isinstance(default, (list, tuple)):
        items = as_list(name, value)
        for i, item in enumerate(items):
            if default:
                like_default(f"{name}[{i}]", item, default[0])
        return items
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"params {name}: expected a string, got {value!r}")
    return value


def check_like_defaults(name: str, block: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """Known keys (check_known_keys), then each value like its default (like_default)."""
    check_known_keys(name, block, defaults)
    for key, value in block.items():
        like_default(f"{name}.{key}", value, defaults[key])


def fit_parser(stage: str, description: str, out_help: str):
    """The command line of a fit stage: --clips (the clip table) and --out (the generator directory)."""
    parser = stage_parser(stage, description)
    parser.add_argument("--clips", required=True, help="clip table (data/clips.parquet)")
    parser.add_argument("--out", required=True, help=f"output directory ({out_help})")
    parser.add_argument("--metrics", default=None,
                        help=f"where the fit's cost goes (default metrics/{stage}.json; kept out of --out, whose "
                             "hash must not change with the time a run took)")
    return parser


def run_fit(stage: str, run: Callable[..., dict], p: FitParams, clips_path: str, out: str, common: Common,
            metrics_path: str | None = None) -> dict:
    """What a fit stage's main does after parsing: torch set up from `common`, the clip table read, `run` timed
    (steps/s) and its metrics logged; returns them. What the fit cost (source, steps, clips, seconds) goes to
    `metrics_path` (metrics/<stage>.json), which the report reads to say what was fitted on the corpus and how long."""
    device = setup_torch(common)
    clips = read_clips(clips_path, stage=stage)
    stage_log = logging.getLogger(f"pipeline.{stage}")
    start = time.perf_counter()
    with stage_timer(stage_log, stage, unit_key="steps") as stats:
        metrics = run(clips, Path(out), p, common.sample_rate, common.seed, device)
        stats.add("steps", p.steps if metrics.get("trained") else 0)
    stage_log.info("%s: %s", stage, {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
    config = json.loads((Path(out) / "config.json").read_text()) if (Path(out) / "config.json").is_file() else {}
    cost = {"stage": stage, "source": config.get("source", "fitted"), "trained": bool(metrics.get("trained")),
            "steps": p.steps if metrics.get("trained") else 0, "clips": metrics.get("clips"),
            "seconds": round(time.perf_counter() - start, 1), "threads": common.runtime.threads, "device": str(device)}
    write_json_atomic(cost, metrics_path or f"metrics/{stage}.json")
    return metrics


def read_waves(clips: pd.DataFrame, sample_rate: int, max_clips: int | None = None,
               rng: np.random.Generator | None = None) -> tuple[list[np.ndarray], list[str]]:
    """Read the audio of a clip table (optionally a seeded subset) -> (waves, clip_ids); unusable clips skipped."""
    rows = clips
    if max_clips and len(rows) > max_clips:
        pick = (rng or np.random.default_rng(0)).choice(len(rows), size=max_clips, replace=False)
        rows = rows.iloc[np.sort(pick)]
    waves, ids, skipped = [], [], []
    for path, clip_id in zip(rows["path"].tolist(), rows["clip_id"].tolist()):
        try:
            wave, _ = read_audio(path, sample_rate)
            check_audio(wave, sample_rate)
        except AudioError as exc:
            skipped.append((clip_id, str(exc)))
            continue
        waves.append(wave)
        ids.append(clip_id)
    log_some(log, skipped, "skipping")
    return waves, ids


def training_waves(clips: pd.DataFrame, stage: str, sample_rate: int, max_clips: int | None,
                   rng: np.random.Generator) -> list[np.ndarray]:
    """The audio of the bona fide train clips (a seeded subset of `max_clips`); a ValueError when there is none."""
    train = clips[(clips["label"] == "bonafide") & (clips["split"] == "train")]
    if train.empty:
        raise StageError(f"{stage}: no bona fide train clips to train on (the clip table has none in split train)")
    waves, _ = read_waves(train, sample_rate, max_clips, rng)
    if not waves:
        raise StageError(f"{stage}: none of the bona fide train clips could be read")
    return waves


def random_segments(waves: Sequence[np.ndarray], n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """n random crops of `length` samples (short clips zero-padded) -> float32 [n, length]."""
    out = np.zeros((n, length), dtype=np.float32)
    for k, i in enumerate(rng.integers(0, len(waves), size=n)):
        w = waves[i]
        if len(w) > length:
            start = int(rng.integers(0, len(w) - length + 1))
            out[k] = w[start: start + length]
        else:
            out[k, : len(w)] = w
    return out


def fit_steps(name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int,
              batch: Callable[[], Any], step: Callable[[Any], torch.Tensor], terms: Callable[[], dict[str, float]],
              max_norm: float) -> RunState:
    """`steps` optimiser steps of `step(batch())` as one epoch of the one training loop; returns its RunState.

    `batch()` is called right before each step, so its random draws come in step order; `terms()` gives the
    loss terms logged after the epoch; the gradient norm over the optimiser's parameters is clipped to `max_norm`.
    """
    state = RunState(model=model, optimizer=optimizer)

    def evaluate(epoch: int, losses: list[float]) -> EpochResult:
        logged = terms()
        return EpochResult(float(np.mean(losses)), logged, {"epoch": epoch, "steps": state.step, **logged})

    fit(state, Phase(name, 1, lambda epoch: _Steps(batch, steps), step, evaluate, max_norm=max_norm))
    return state


class _Steps:
    """`steps` calls of `batch()`, drawn as the loop asks for them; sized, so progress shows done/total and an ETA."""

    def __init__(self, batch: Callable[[], Any], steps: int) -> None:
        self.batch, self.steps = batch, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        return (self.batch() for _ in range(self.steps))
