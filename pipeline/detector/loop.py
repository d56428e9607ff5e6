"""The one training loop of every model the pipeline fits: the teachers (pretrain), the detector (train) and
the generators (fit_codec, fit_diffusion, through pipeline.resynth.fitting.fit_steps).

Reads nothing; writes only through what it is handed: the best state's checkpoint (`Phase.checkpoint`,
e.g. pipeline.models.checkpointer(path, extra)) and a dvclive log (`live_log`: dvcyaml=False and no experiment
commits, so DVC sees only the stage's own outs).

A stage describes a run as one or more `Phase`s. A phase supplies what differs between stages: its
batches per epoch, its per-batch `step` (batch -> loss) and its dev `evaluate` (-> `EpochResult`: a
key, lower is better, the metrics to log and a history row). `fit` does the rest, the same way for
every stage: train/eval mode, the optimiser step (`optimizer_step`: zero_grad, backward, optional
gradient clipping, step, scheduler), the dev evaluation after each epoch, a copy of the state dict
at the lowest key (ties keep the earlier epoch), the checkpoint of that best state, early stopping
after `patience` epochs without improvement, and the best state loaded back at the end. `RunState`
carries what lasts across epochs and phases (model, optimiser, counters, best state), so a second
phase (train's SupCon head on the frozen encoder) continues the epoch and step numbering.
The generators run their steps as one epoch whose evaluation is their running loss (no dev split), so
their best state is their last. The split follows the structure of audiocraft's solvers (a base class with
run_epoch, best state and should_stop; a solver overrides only its step) and DAC's `State` dataclass; the
code is ours.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipeline.logs import progress

log = logging.getLogger(__name__)

__all__ = ["EpochResult", "Phase", "RunState", "fit", "live_log", "open_live", "optimizer_step",
           "run_epoch"]


@dataclass
class RunState:
    """What a training run passes around: model, optimiser, counters and the best state so far."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any = None                 # stepped after every optimiser step (e.g. OneCycleLR)
    epoch: int = 0                        # epochs run so far over all phases = the next epoch's number
    step: int = 0                         # optimiser steps taken
    best_key: Any = None                  # lowest dev key of the current phase (None before its first epoch)
    best_epoch: int = -1                  # epoch number of best_key
    best_state: dict[str, torch.Tensor] | None = None
    stale: int = 0                        # epochs since the last improvement
    step_times: list[float] = field(default_factory=list)  # seconds per step (data transfer + step)
    history: list[dict[str, Any]] = field(default_factory=list)  # EpochResult.record of every epoch


@dataclass(frozen=True)
class EpochResult:
    """A phase's dev evaluation of one epoch."""

    key: Any                              # comparable; lower is better (a float, or a tuple for tie-breaks)
    metrics: dict[str, Any]               # dvclive metrics, logged in this order; None values are left out
    record: dict[str, Any]                # the row appended to RunState.history


@dataclass
class Phase:
    """What a stage supplies for one phase of training; `fit` runs it."""

    name: str                                           # log and progress-bar label
    epochs: int
    batches: Callable[[int], Iterable[Any]]             # epoch number -> that epoch's batches
    step: Callable[[Any], torch.Tensor]                 # one batch -> its loss (the loop steps the optimiser)
    evaluate: Callable[[int, list[float]], EpochResult]  # (epoch number, per-step losses) -> dev result
    patience: int = 0                                   # stop after this many epochs without improvement; 0 = never
    train_mode: bool = True                             # False: the model stays in eval mode (a frozen encoder)
    max_norm: float | None = None                       # clip the gradient norm to this; None = no clipping
    checkpoint: Callable[[torch.nn.Module], None] | None = None  # called with the model at each improvement


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, *, scheduler: Any = None,
                   max_norm: float | None = None) -> float | None:
    """zero_grad, backward, clip the gradient norm (when `max_norm`), step, scheduler step.

    Returns the total gradient norm before clipping, or None when not clipping.
    """
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = None
    if max_norm is not None:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return norm


def run_epoch(state: RunState, phase: Phase) -> list[float]:
    """Train one epoch (number `state.epoch`) of `phase`; return the per-step losses."""
    batches = phase.batches(state.epoch)
    state.model.train(phase.train_mode)
    losses = []
    for batch in progress(batches, desc=f"{phase.name} epoch {state.epoch}", unit="batch"):
        t0 = time.perf_counter()
        loss = phase.step(batch)
        optimizer_step(state.optimizer, loss, scheduler=state.scheduler, max_norm=phase.max_norm)
        state.step_times.append(time.perf_counter() - t0)
        state.step += 1
        losses.append(float(loss.detach()))
    return losses


def update_best(state: RunState, key: Any, epoch: int) -> bool:
    """Keep a copy of the model's state when `key` beats the phase's best; True when it did."""
    if state.best_key is not None and not key < state.best_key:
        state.stale += 1
        return False
    state.best_key, state.best_epoch, state.stale = key, epoch, 0
    state.best_state = copy.deepcopy(state.model.state_dict())
    return True


def should_stop(state: RunState, patience: int) -> bool:
    """True after `patience` epochs without improvement (never when patience is 0)."""
    return patience > 0 and state.stale >= patience


def fit(state: RunState, phase: Phase, live: Any = None) -> int:
    """Run `phase` epoch by epoch with early stopping; load its best state back; return the epochs run."""
    state.best_key, state.best_epoch, state.stale = None, -1, 0
    first = state.epoch
    for epoch in range(first, first + phase.epochs):
        result = phase.evaluate(epoch, run_epoch(state, phase))
        if update_best(state, result.key, epoch) and phase.checkpoint is not None:
            phase.checkpoint(state.model)
        _log_epoch(state, live, phase.name, epoch, result)
        state.epoch += 1
        if should_stop(state, phase.patience):
            log.info("%s: early stop after epoch %d, %d epochs without a better dev result (best epoch %d)",
                     phase.name, epoch, state.stale, state.best_epoch)
            break
    if state.best_state is not None:
        state.model.load_state_dict(state.best_state)
    return state.epoch - first


def _log_epoch(state: RunState, live: Any, name: str, epoch: int, result: EpochResult) -> None:
    state.history.append(result.record)
    shown = " ".join(f"{k}={_fmt(v)}" for k, v in result.record.items())
    log.info("%s epoch %d (step %d): %s", name, epoch, state.step, shown)
    if live is not None:
        for k, v in result.metrics.items():
            if v is not None:
                live.log_metric(k, v)
        live.next_step()


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def open_live(path: str | Path) -> Any:
    """A dvclive logger that writes only under `path` (no dvc.yaml edits, no experiment commits, no report)."""
    try:
        from dvclive import Live
    except ImportError:  # dvclive is a dependency, but training must not need it
        log.warning("dvclive not installed: no training curves")
        return None
    return Live(dir=str(path), dvcyaml=False, save_dvc_exp=False, report=None)


@contextmanager
def live_log(path: str | Path, params: dict[str, Any] | None = None, enabled: bool = True) -> Iterator[Any]:
    """`open_live(path)` with `params` logged, ended when the block ends (None when disabled or unavailable)."""
    live = open_live(path) if enabled else None
    try:
        if live is not None and params is not None:
            live.log_params(params)
        yield live
    finally:
        if live is not None:
            live.end()
