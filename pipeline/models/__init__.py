"""Detector architectures (one per file), built from a config dict; checkpoints; the bona fide score.

Used by pretrain (teachers), embed, train (the student detector), evaluate and score.
A model config is a flat dict: `arch` (a key of ARCHITECTURES), front-end keys (`frontend`:
logmel | lfcc, `sample_rate`, `n_bins`, `win_ms`, `hop_ms`), `width`, `embedding_dim`, `dropout`
and architecture keys (`blocks`, `strides`, ...); missing keys take defaults, others are a ConfigError.
A checkpoint (model.pt) stores the resolved config beside the weights, so it loads on its own.

Label index: spoof = 0, bonafide = 1. The score (higher = bona fide) follows the model's `score_rule`:
"margin" = logit[bonafide] - logit[spoof] (the project's detectors), "bonafide_logit" = logit[bonafide]
(imported AASIST / AASIST-L: the authors' own scoring, so their scores and EERs are reproduced).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pipeline.io import write_torch_atomic
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
SCORE_RULES = ("margin", "bonafide_logit")

__all__ = ["ARCHITECTURES", "CheckpointError", "Detector", "LABEL_INDEX", "bonafide_score", "build_model",
           "check_config", "checkpointer", "load_checkpoint", "save_checkpoint"]


class CheckpointError(ValueError):
    """A checkpoint that is missing, not ours, or of another architecture than expected."""


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
    except Exception as exc:  # torch raises several types for a file that is not a checkpoint
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a hardset detector checkpoint (format {CHECKPOINT_FORMAT!r} expected)")
    missing = [k for k, kind in (("arch", str), ("config", dict), ("state_dict", dict))
               if not isinstance(payload.get(k), kind)]
    if missing:
        raise CheckpointError(f"{path} is a damaged hardset checkpoint: {missing} missing or of the wrong type "
                              "(expected keys format, arch, config, state_dict; re-run the stage that wrote it)")
    arch = payload["arch"]
    if expected_arch is not None and arch != expected_arch:
        raise CheckpointError(f"{path} holds a {arch!r} model, but architecture {expected_arch!r} was expected "
                              f"(fix the teacher's `arch` or its `checkpoint` path)")
    config = {**(payload.get("extra") or {}), **payload["config"]}
    try:
        model = build_model(payload["config"])
        model.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path}: weights do not fit a {arch!r} model of its own config: {exc}") from exc
    return model.to(device).eval(), config


def bonafide_score(logits: torch.Tensor, rule: str = "margin") -> torch.Tensor:
    """Score [B], higher = more bona fide: logit[bonafide] - logit[spoof] ("margin") or logit[bonafide]."""
    if rule == "bonafide_logit":
        return logits[:, LABEL_INDEX["bonafide"]]
    if rule != "margin":
        raise ValueError(f"unknown score rule {rule!r}; known: {list(SCORE_RULES)}")
    return logits[:, LABEL_INDEX["bonafide"]] - logits[:, LABEL_INDEX["spoof"]]
