"""Fine-tuning from a pretrained detector: `train.init`, `train.init_mode` (used by train; stamped by init_model).

`train.init: DIR` is a model directory (an `import_model` output, a `train` output or a teacher of
`pretrain`); train then starts the student from its weights instead of from scratch, and the model
config (architecture, sizes) is the init model's: `train.arch` must equal its architecture
or be null (follow the init); train.width / embedding_dim / frontend / model are not used.
`train.init_mode`:
- `all`: every parameter the architecture trains is fine-tuned (a frozen SSL model stays frozen);
- `backend`: the front part is frozen (requires_grad off, kept in eval mode so its batch-norm
  statistics do not move; the optimiser gets only the rest). The back end per architecture:
  resnet / convnext / lcnn: the embedding layer + classifier (front end, stem and stages frozen);
  aasist / aasist-l: the graph part after the encoder (positional embedding, spectral and temporal
  graph attention, graph pooling, both HS-GAL branches, master nodes, readout layer); the sinc front
  end, its batch norm and the residual encoder are frozen; ssl: everything after the SSL model
  (layer weights and the linear or graph back end).
What carries over to the trained model directory (so `score` and `evaluate` treat it as the init):
the model config, the init's `eval_s` and `preprocessing` note when it records them, and an `init`
block (dir, sha256 of its model.pt, mode, arch). The preprocessing chain recorded is the one the
fine-tuning data went through (prepare's, from params): a different chain in the init is logged as a warning.
DVC: train.init is a params value, so the stage `init_model` (pipeline/init_model.py) stamps the init
dir's content into data/models/init.json, a dep of train (no dvc.yaml edit when train.init changes).

Reads the init model dir (pipeline.models.load_checkpoint); writes nothing.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pipeline.params import ConfigError, Section, one_of

log = logging.getLogger("pipeline.detector.finetune")

INIT_MODES = ("all", "backend")
CNN_BACKEND = ("embed", "dropout", "classifier")  # Detector's common head (pipeline/models/base.py)
CARRIED = ("eval_s", "preprocessing")             # init config keys a fine-tuned model keeps


@dataclass(frozen=True)
class InitParams(Section):
    """The init keys of params `train` (`init`, `init_mode`): parsed by train with the rest of its section, and
    alone by init_model (`InitParams.from_part(train_section)`)."""

    NAME: ClassVar[str] = "train"
    init: str | None = None     # a model dir to start from (null = from scratch)
    init_mode: str = "all"      # all | backend (front part frozen)

    def check(self) -> None:
        one_of(f"{self.where}.init_mode", self.init_mode, INIT_MODES)
        if self.init is not None and not (isinstance(self.init, str) and self.init):
            raise ConfigError(f"params {self.where}.init: a model directory path or null, not {self.init!r}")


def init_files(init_dir: str | Path) -> list[Path]:
    """The files that define an init model: model.pt and, when present, config.json."""
    d = Path(init_dir)
    return [f for f in (d / "model.pt", d / "config.json") if f.is_file()]


def init_digest(init_dir: str | Path) -> dict[str, str]:
    """{file name: sha256} of the init dir's defining files."""
    out = {}
    for f in init_files(init_dir):
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        out[f.name] = h.hexdigest()
    return out


def front_names(model: Any) -> list[str]:
    """Top-level submodules frozen by init_mode `backend` (the rest is the back end, trained)."""
    from pipeline.models.aasist import AASIST
    from pipeline.models.ssl import SSLDetector

    if isinstance(model, AASIST):
        return ["first_bn", "encoder"]
    if isinstance(model, SSLDetector):
        return ["ssl"]
    return [name for name, _ in model.named_children() if name not in CNN_BACKEND]


def freeze_front(model: Any) -> list[str]:
    """Freeze the front part of `model` (no gradients, always eval mode); return the frozen module names.

    The model's `train()` is wrapped on the instance so that fit's `model.train()` and the scoring
    path's mode restore leave the frozen part in eval mode (batch-norm statistics fixed, no dropout).
    """
    names = front_names(model)
    for name in names:
        getattr(model, name).requires_grad_(False)
    cls_train = type(model).train

    def train(mode: bool = True):
        cls_train(model, mode)
        for name in names:
            getattr(model, name).eval()
        return model

    model.train = train
    model.train(model.training)
    return names


def load_init(init_dir: str | Path, mode: str, arch: str | None, sample_rate: int,
              chain: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """The student model started from `init_dir` (frozen front in mode backend) and what its config records.

    Returns (model in train mode, extra config keys: `init` and the CARRIED keys). A missing or
    corrupt dir, an architecture other than `arch`, or another sample rate is a ConfigError.
    """
    from pipeline.models import CheckpointError, load_checkpoint

    if mode not in INIT_MODES:
        raise ConfigError(f"params train.init_mode: {mode!r} is not one of {list(INIT_MODES)}")
    if not Path(init_dir).is_dir():
        raise ConfigError(f"params train.init: {init_dir} is not a model directory (import_model or train output)")
    try:
        model, config = load_checkpoint(init_dir)
    except CheckpointError as exc:
        raise ConfigError(f"params train.init: {str(exc).splitlines()[0]}") from None
    if arch is not None and arch != model.arch:
        raise ConfigError(f"params train.arch: {arch!r} but train.init {init_dir} holds a {model.arch!r} model; "
                          f"set train.arch to {model.arch!r} or null (follow the init)")
    if int(config.get("sample_rate", sample_rate)) != int(sample_rate):
        raise ConfigError(f"params train.init: {init_dir} is a {config['sample_rate']} Hz model but "
                          f"audio.sample_rate is {sample_rate}")
    if chain is not None and config.get("chain") not in (None, chain):
        log.warning("train.init %s was trained on another preprocessing chain %s; the fine-tuned model records "
                    "this run's %s", init_dir, config["chain"], chain)
    frozen = freeze_front(model) if mode == "backend" else []
    model.train()
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    log.info("train.init %s: %s model, mode %s, %d of %d parameters trained (frozen: %s)", init_dir, model.arch,
             mode, n_train, n_all, frozen or "none")
    info = {"dir": str(init_dir), "mode": mode, "arch": model.arch, "sha256": init_digest(init_dir),
            "frozen": frozen, "trained_parameters": n_train, "parameters": n_all}
    return model, {"init": info, **{k: config[k] for k in CARRIED if k in config}}
