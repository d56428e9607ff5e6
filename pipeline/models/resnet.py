"""A small 2-D ResNet over the spectrogram (basic blocks, He et al. 2016), sized for CPU embedding.

Layout: stem conv (stride `stem_stride`) -> layer1..layerN, stage k with width * 2**(k-1) channels,
`blocks[k]` basic blocks and stride `strides[k]` in its first block. Striding early keeps the
default (width 16, three stages, strides 2) near 15 M multiply-adds for a 4 s clip, so that
embedding runs at hundreds of clips/s on two CPU cores.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pipeline.models.base import Detector


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm and a (projected when needed) identity shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act = nn.ReLU(inplace=True)
        self.short = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act(y + self.short(x))


class ResNet(Detector):
    """Small ResNet teacher/detector on a log-mel or LFCC front end."""

    arch = "resnet"
    defaults: dict[str, Any] = {"blocks": [1, 1, 1], "strides": [2, 2, 2], "stem_stride": 2}

    def build_trunk(self, config: dict[str, Any]) -> None:
        width, blocks, strides = int(config["width"]), config["blocks"], config["strides"]
        if len(blocks) != len(strides) or not blocks:
            raise ValueError(f"resnet: blocks {blocks} and strides {strides} must be non-empty and of equal length")
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, stride=int(config["stem_stride"]), padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        stages, c_in, dims = [], width, []
        for k, (n, s) in enumerate(zip(blocks, strides)):
            c_out = width * 2**k
            layers = [BasicBlock(c_in if i == 0 else c_out, c_out, int(s) if i == 0 else 1) for i in range(int(n))]
            stages.append(nn.Sequential(*layers))
            c_in = c_out
            dims.append(c_out)
        self.set_stages(stages, dims)
