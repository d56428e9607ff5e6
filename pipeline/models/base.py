"""The Detector interface shared by every architecture (teachers and the student detector).

A Detector maps a waveform batch [B, T] (float32 at `audio.sample_rate`) to logits [B, 2]
(index 0 = spoof, 1 = bonafide). An architecture only supplies `trunk(spec)`, the list of its
stage outputs; the front end, pooling, embedding layer and classifier are common. `features`
returns the time-frequency-pooled output of every named layer plus "penultimate", the input of
the final linear classifier (the layer where neural collapse is measured).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pipeline.models.frontend import FRONTEND_DEFAULTS, build_frontend
from pipeline.params import check_known_keys

COMMON_DEFAULTS: dict[str, Any] = {
    **FRONTEND_DEFAULTS,
    "width": 16,            # channels of the first stage; stage k has width * 2**k
    "embedding_dim": 128,   # size of the penultimate layer
    "dropout": 0.1,
}


class Detector(nn.Module):
    """Front end -> architecture trunk -> pooled embedding -> 2-way linear classifier."""

    arch: str = ""
    defaults: dict[str, Any] = {}

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = resolve_config(type(self), config)
        self.frontend = build_frontend(self.config)
        self.layer_names: list[str] = []
        self.build_trunk(self.config)
        c = self.config
        self.embed = nn.Sequential(nn.Linear(self.trunk_dim, int(c["embedding_dim"])),
                                   nn.BatchNorm1d(int(c["embedding_dim"])), nn.ReLU())
        self.dropout = nn.Dropout(float(c["dropout"]))
        self.classifier = nn.Linear(int(c["embedding_dim"]), 2)

    # Architectures implement build_trunk (calling set_stages); trunk is stem -> stages unless overridden.
    def build_trunk(self, config: dict[str, Any]) -> None:
        """Create `self.stem` and the stages, then call `set_stages`."""
        raise NotImplementedError

    def set_stages(self, stages: list[nn.Module], dims: list[int]) -> None:
        """Register the trunk's stages and their channel counts (named layer1, layer2, ...)."""
        self.stages = nn.ModuleList(stages)
        self.layer_names = [f"layer{k + 1}" for k in range(len(stages))]
        self._stage_dims = list(dims)
        self.trunk_dim = dims[-1]

    def trunk(self, spec: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps [B, C, F, T] of each stage named in `layer_names`, in order."""
        x = self.stem(spec)
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out

    @property
    def embedding_dim(self) -> int:
        """Size of the penultimate embedding."""
        return int(self.config["embedding_dim"])

    def layer_dims(self) -> dict[str, int]:
        """Pooled size of each layer that `features` returns."""
        dims = dict(zip(self.layer_names, self._stage_dims))
        dims["penultimate"] = self.embedding_dim
        return dims

    def forward_with_features(self, wave: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits [B, 2] and the pooled features {layer: [B, C]} (with "penultimate") in one pass."""
        maps = self.trunk(self.frontend(wave))
        feats = {name: m.mean(dim=(2, 3)) for name, m in zip(self.layer_names, maps)}
        pen = self.embed(feats[self.layer_names[-1]])
        feats["penultimate"] = pen
        return self.classifier(self.dropout(pen)), feats

    def features(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pooled features per layer {name: [B, D]}; always has "penultimate"."""
        return self.forward_with_features(wave)[1]

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.forward_with_features(wave)[0]


def resolve_config(cls: type[Detector], config: dict[str, Any]) -> dict[str, Any]:
    """The full model config: common and architecture defaults overridden by `config` (unknown keys: ConfigError)."""
    defaults = {**COMMON_DEFAULTS, **cls.defaults}
    unknown_arch = config.get("arch", cls.arch)
    if unknown_arch != cls.arch:
        raise ValueError(f"config is for architecture {unknown_arch!r}, not {cls.arch!r}")
    check_known_keys(f"model ({cls.arch})", config, ["arch", *defaults])
    out = {k: config.get(k, v) for k, v in defaults.items()}
    for k, v in defaults.items():  # YAML gives lists; keep them lists (tuples do not survive JSON)
        if isinstance(v, (list, tuple)):
            out[k] = list(out[k])
    out["arch"] = cls.arch
    return out
