"""A ConvNeXt-style 2-D net over the spectrogram (Liu et al. 2022, "A ConvNet for the 2020s"), small.

Layout: patchify stem (k x k conv, stride k, LayerNorm) -> stage 1 -> [LayerNorm + 2x2 conv stride 2
-> stage k]... Each block: 7x7 depthwise conv -> LayerNorm -> 1x1 expand (x4) -> GELU -> 1x1 project,
scaled by a learnable per-channel layer scale, plus the identity. Stages are named layer1..layerN.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pipeline.models.base import Detector


class ChannelNorm(nn.Module):
    """LayerNorm over the channel axis of a [B, C, F, T] map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 conv, LayerNorm, inverted-bottleneck MLP, layer scale, residual."""

    def __init__(self, dim: int, kernel: int = 7, expansion: int = 4, layer_scale: float = 1e-2) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, expansion * dim)
        self.act = nn.GELU()
        self.pw2 = nn.Linear(expansion * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pw2(self.act(self.pw1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ConvNeXt(Detector):
    """ConvNeXt-style teacher/detector on a log-mel or LFCC front end."""

    arch = "convnext"
    defaults: dict[str, Any] = {"blocks": [1, 1, 1], "stem_stride": 4, "kernel": 7}

    def build_trunk(self, config: dict[str, Any]) -> None:
        width, blocks, k = int(config["width"]), config["blocks"], int(config["kernel"])
        stem = int(config["stem_stride"])
        if not blocks:
            raise ValueError("convnext: blocks must be a non-empty list")
        self.stem = nn.Sequential(nn.Conv2d(1, width, stem, stride=stem), ChannelNorm(width))
        downs, stages, dims = [], [], []
        c_in = width
        for i, n in enumerate(blocks):
            c_out = width * 2**i
            downs.append(nn.Identity() if i == 0 else
                         nn.Sequential(ChannelNorm(c_in), nn.Conv2d(c_in, c_out, 2, stride=2)))
            stages.append(nn.Sequential(*[ConvNeXtBlock(c_out, kernel=k) for _ in range(int(n))]))
            dims.append(c_out)
            c_in = c_out
        self.downs = nn.ModuleList(downs)
        self.set_stages(stages, dims)
        self.final_norm = ChannelNorm(dims[-1])

    def trunk(self, spec: torch.Tensor) -> list[torch.Tensor]:
        # Small maps (a short clip) must survive the 2x2 downsamplings: pad to at least 2 x 2 first.
        x = self.stem(spec)
        out = []
        for i, (down, stage) in enumerate(zip(self.downs, self.stages)):
            if i > 0 and (x.shape[2] < 2 or x.shape[3] < 2):
                x = nn.functional.pad(x, (0, max(0, 2 - x.shape[3]), 0, max(0, 2 - x.shape[2])))
            x = stage(down(x))
            out.append(x)
        out[-1] = self.final_norm(out[-1])
        return out
