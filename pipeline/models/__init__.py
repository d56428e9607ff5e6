"""Detector architectures (one per file), built from a config dict; checkpoints; the bona fide score.

Used by pretrain (teachers), embed, train (the student detector), evaluate and score.
A model config is a flat dict: `arch` (a key of ARCHITECTURES), front-end keys (`frontend`:
logmel | lfcc, `sample_rate`, `n_bins`, `win_ms`, `hop_ms`), `width`, `embedding_dim`, `dropout`
and architecture keys (`blocks`, `strides`, ...); missing keys take defaults, others are a ConfigError.
A checkpoint (model.pt) stores the resolved config beside the weights, so it loads on its own.

Label index: spoof = 0, bonafide = 1. One score rule for every model, trained, fine-tuned or imported
(`bonafide_score`): logit[bonafide] - logit[spoof], higher = more bona fide.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pipeline.io import write_torch_atomic
from pipeline.logs import StageError
from pipeline.models.aasist import AASIST, AASISTL
from pipeline.models.base import Detector, resolve_config
from pipeline.models.convnext import ConvNeXt
from pipeline.models.frontend import FRONTENDS
from pipeline.models.lcnn import LCNN
from pipeline.models.resnet import ResNet
from pipeline.models.ssl import SSLDetector
from pipeline.params import ConfigError, number, one_of
from pipeline.schema import LABEL_INDEX

ARCHITECTURES: dict[str, type[Detector]] = {"resnet": ResNet, "convnext": ConvNeXt, "lcnn": LCNN,
                                             "aasist": AASIST, "aasist-l": AASISTL, "ssl": SSLDetector}
CHECKPOINT_FORMAT = "hardset.detector/1"
CHECKPOINT_NAME = "model.pt"
DEFAULT_EVAL_S = 4.0  # seconds scored per clip when a model folder records no eval_s (score, the model card)
SCORE_RULE = "logit[bonafide] - logit[spoof]"  # what config.json and the model card say the score is
# A config key of checkpoints written before the one rule (imported AASIST: "bonafide_logit"); dropped on load.
LEGACY_KEYS = ("score_rule",)

__all__ = ["ARCHITECTURES", "CheckpointError", "DEFAULT_EVAL_S", "Detector", "LABEL_INDEX", "SCORE_RULE",
           "bonafide_score", "build_model", "check_config", "check_finite", "checkpointer", "load_checkpoint",
           "save_checkpoint"]


class CheckpointError(StageError):
    """A checkpoint that is missing, not ours, of another architecture than expected or than its weights, or with
    weights that are not finite (printed as one line: pipeline.logs.StageError)."""


def build_model(config: dict[str, Any]) -> Detector:
    """A Detector of `config["arch"]` with the config's settings (a clear error for an unknown arch)."""
    arch = config.get("arch")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](config)


def check_config(config: dict[str, Any], where: str) -> dict[str, Any]:
    """The resolved model config of params block `where` (no model built); unknown keys or arch: ConfigError."""
    arch = config.get("arch")
    if arch not in ARCHITECTURES:
        raise ConfigError(f"params {where}.arch: unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    try:
        resolved = resolve_config(ARCHITECTURES[arch], config)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("params model", f"params {where}", 1)) from None
    one_of(f"{where}.frontend", resolved["frontend"], FRONTENDS)
    for key in ("width", "embedding_dim"):
        number(f"{where}.{key}", resolved[key], low=1, integer=True)
    return resolved


def save_checkpoint(model: Detector, config: dict[str, Any] | None, path: str | Path) -> Path:
    """Save weights + resolved model config (+ `config`'s extra keys under "extra") atomically; return the path."""
    path = Path(path)
    if path.suffix != ".pt":
        path = path / CHECKPOINT_NAME
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "arch": model.arch, "config": dict(model.config),
               "extra": {k: v for k, v in (config or {}).items() if k not in model.config}, "state_dict": state}
    write_torch_atomic(payload, path)
    return path


def checkpointer(path: str | Path, extra: dict[str, Any] | None = None) -> Callable[[torch.nn.Module], None]:
    """A `Phase.checkpoint` of pipeline.detector.loop: saves the model (with `extra` config keys) to `path`."""

    def save(model: torch.nn.Module) -> None:
        save_checkpoint(model, extra, path)

    return save


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                    expected_arch: str | None = None) -> tuple[Detector, dict[str, Any]]:
    """Load a checkpoint (a model.pt or a directory holding one) in eval mode; return (model, config).

    Raises CheckpointError when the file is missing or not a hardset checkpoint, when its
    architecture differs from `expected_arch`, or when its weights do not fit its config.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a file that is not a checkpoint (or pickles code)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable torch checkpoint (weights only, no pickled code): "
                              f"{first}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a hardset detector checkpoint (format {CHECKPOINT_FORMAT!r} expected)")
    missing = [k for k, kind in (("arch", str), ("config", dict), ("state_dict", dict))
               if not isinstance(payload.get(k), kind)]
    if missing:
        raise CheckpointError(f"{path} is a damaged hardset checkpoint: {missing} missing or of the wrong type "
                              "(expected keys format, arch, config, state_dict; re-run the stage that wrote it)")
    arch = payload["arch"]
    if payload["config"].get("arch", arch) != arch:
        raise CheckpointError(f"{path} records architecture {arch!r} but its model config (and weights) say "
                              f"{payload['config']['arch']!r}: a damaged or hand-edited checkpoint")
    if expected_arch is not None and arch != expected_arch:
        raise CheckpointError(f"{path} holds a {arch!r} model, but architecture {expected_arch!r} was expected "
                              f"(fix the teacher's `arch` or its `checkpoint` path)")
    check_finite(payload["state_dict"], str(path))
    model_config = {k: v for k, v in payload["config"].items() if k not in LEGACY_KEYS}
    config = {**(payload.get("extra") or {}), **model_config}
    try:
        model = build_model(model_config)
        model.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path}: weights do not fit a {arch!r} model of its own config: {exc}") from exc
    return model.to(device).eval(), config


def check_finite(state: dict[str, Any], where: str) -> None:
    """CheckpointError when a weight tensor holds NaN or infinity (a diverged run or a damaged file): such a model
    scores NaN for every clip, which no later step can tell from a real score."""
    bad = [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        shown = ", ".join(bad[:3]) + (f" ... and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise CheckpointError(f"{where}: {len(bad)} weight tensors hold NaN or infinite values ({shown}): a diverged "
                              "training run or a damaged file; refusing to load it")


def bonafide_score(logits: torch.Tensor) -> torch.Tensor:
    """Score [B] of [B, 2] logits, the one rule of every model: logit[bonafide] - logit[spoof], higher = bona fide.

    Why this rule: it is the log-odds log p(bonafide) / p(spoof) of the model's own softmax, the only function of
    the two logits that the softmax defines (adding a constant to both logits changes no probability and not this
    score, but it moves logit[bonafide] alone), so every model, and one model before and after fine-tuning, scores
    on the same scale; 0 is the model's own decision (p = 0.5); and it is the log-likelihood ratio at equal priors
    that calibration starts from. The official AASIST code scores logit[bonafide] alone: its EERs under this rule
    differ a little (README, "Pretrained detectors"); its logits are reproduced exactly.
    """
    return logits[:, LABEL_INDEX["bonafide"]] - logits[:, LABEL_INDEX["spoof"]]
