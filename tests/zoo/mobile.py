"""Efficient convnets: MobileNetV2/V3 (depthwise convs, squeeze-and-excitation), ResNeXt /
RegNet-Y (grouped convs), ShuffleNet V2 (channel split and shuffle)."""

from __future__ import annotations

import torch
from torch import nn

from tests.zoo.convnets import conv_bn


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = nn.functional.adaptive_avg_pool2d(x, 1)
        return x * nn.functional.hardsigmoid(self.expand(torch.relu(self.reduce(s))))


class InvertedResidual(nn.Module):
    """MobileNetV2/V3: 1x1 expand, depthwise 3x3, squeeze-and-excitation, 1x1 project, add."""

    input_shape = (8, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(8, 8, k=1)
        self.expand = conv_bn(8, 24, k=1)
        self.depthwise = nn.Sequential(
            nn.Conv2d(24, 24, 3, 1, 1, groups=24), nn.BatchNorm2d(24), nn.Hardswish()
        )
        self.se = SqueezeExcite(24, 6)
        self.project = nn.Sequential(nn.Conv2d(24, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = h + self.project(self.se(self.depthwise(self.expand(h))))
        return self.fc(h.mean((2, 3)))


class ResNeXtish(nn.Module):
    """ResNeXt / RegNet-Y: 1x1 reduce, grouped 3x3 (4 groups), SE, 1x1 expand, residual add;
    a grouped 1x1 after it reads a plain layer's channels in 2 groups."""

    input_shape = (8, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(8, 16, k=1)
        self.reduce = conv_bn(16, 12, k=1)
        self.grouped = conv_bn(12, 16, k=3, groups=4)
        self.se = SqueezeExcite(16, 4)
        self.expand = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.head = nn.Conv2d(16, 6, 1, groups=2)
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = torch.relu(h + self.expand(self.se(self.grouped(self.reduce(h)))))
        return self.fc(torch.relu(self.head(h)).mean((2, 3)))


class ShuffleNetish(nn.Module):
    """ShuffleNet V2's blocks: two branches concatenated and shuffled (its stride-2 block),
    then blocks that split the channels in halves, pass the second half through a branch
    and shuffle the result; the second such block splits the runs the first shuffle
    interleaved, and a depthwise conv reads them (its shuffle is `nn.ChannelShuffle`)."""

    input_shape = (4, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.left = conv_bn(4, 4, k=1)
        self.right = conv_bn(4, 4, k=1)
        self.branch1 = conv_bn(4, 4, k=1)
        self.branch2 = nn.Sequential(
            nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False), nn.BatchNorm2d(4), conv_bn(4, 4, 1)
        )
        self.shuffle = nn.ChannelShuffle(2)
        self.after = conv_bn(8, 6, k=1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = _shuffled(torch.cat([self.left(x), self.right(x)], dim=1))  # (N, 8, H, W)
        a, b = h.chunk(2, dim=1)
        h = _shuffled(torch.cat([a, self.branch1(b)], dim=1))
        a, b = h.chunk(2, dim=1)
        h = self.shuffle(torch.cat([a, self.branch2(b)], dim=1))
        return self.fc(self.after(h).mean((2, 3)))


def _shuffled(h: torch.Tensor) -> torch.Tensor:
    """torchvision's channel shuffle in 2 groups: view, swap, view back."""
    n, c, hh, ww = h.shape
    return h.view(n, 2, c // 2, hh, ww).transpose(1, 2).contiguous().view(n, -1, hh, ww)
