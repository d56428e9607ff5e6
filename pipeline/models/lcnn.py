"""A light CNN (LCNN) with max-feature-map activations, the ASVspoof 2019 LFCC-LCNN baseline's trunk, small.

Max-feature-map (Wu et al. 2018): a conv with 2C output channels followed by the element-wise max
of its two halves. Layout: MFM 5x5 conv -> maxpool -> stages layer1..layerN, each an MFM 1x1 conv,
an MFM 3x3 conv, batch norm and a 2x2 max pool; stage k has width * 2**(k-1) channels.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pipeline.models.base import Detector


class MFMConv(nn.Module):
    """Conv2d to 2C channels, then the max of the two halves (max-feature-map)."""

    def __init__(self, c_in: int, c_out: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, 2 * c_out, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.conv(x).chunk(2, dim=1)
        return torch.maximum(a, b)


class LCNN(Detector):
    """LCNN teacher/detector on a log-mel or LFCC front end."""

    arch = "lcnn"
    defaults: dict[str, Any] = {"stages": 3}

    def build_trunk(self, config: dict[str, Any]) -> None:
        width, n = int(config["width"]), int(config["stages"])
        if n < 1:
            raise ValueError("lcnn: stages must be >= 1")
        self.stem = nn.Sequential(MFMConv(1, width, 5), nn.MaxPool2d(2, ceil_mode=True))
        stages, dims, c_in = [], [], width
        for k in range(n):
            c_out = width * 2**k
            stages.append(nn.Sequential(MFMConv(c_in, c_in, 1), nn.BatchNorm2d(c_in), MFMConv(c_in, c_out, 3),
                                        nn.BatchNorm2d(c_out), nn.MaxPool2d(2, ceil_mode=True)))
            dims.append(c_out)
            c_in = c_out
        self.set_stages(stages, dims)
