"""Plain and branching convnets: VGG, ResNet basic and bottleneck blocks, DenseNet,
Inception, a 1-D convnet. Convolutions, BatchNorm, pooling, flatten into Linear layers,
residual adds, concatenations and splits along the channels."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class VGGish(nn.Module):
    """conv-BN-ReLU stacks, max-pooling, flatten of a feature map into Linear layers."""

    input_shape = (3, 16, 16)

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(3, 8), nn.MaxPool2d(2), conv_bn(8, 12), nn.MaxPool2d(2), conv_bn(12, 10)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(10 * 4 * 4, 24), nn.ReLU(), nn.Dropout(0.1), nn.Linear(24, 5)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, 16, 16)
        return self.classifier(self.features(x))  # features: (N, 10, 4, 4)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv_bn(cin, cout, stride=stride)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn2(self.conv2(self.conv1(x))) + self.shortcut(x))


class ResNetish(nn.Module):
    """Residual adds couple the stem, the block outputs and the shortcuts into one group."""

    input_shape = (3, 16, 16)

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 8)
        self.layer1 = BasicBlock(8, 8)
        self.layer2 = BasicBlock(8, 12, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(h), 1))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand, with a projection shortcut (ResNet-50 style)."""

    input_shape = (6, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.reduce = conv_bn(6, 4, k=1)
        self.conv = conv_bn(4, 4)
        self.expand = nn.Sequential(nn.Conv2d(4, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.project = nn.Sequential(nn.Conv2d(6, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.expand(self.conv(self.reduce(x))) + self.project(x))
        return self.head(h.mean(dim=(2, 3)))


class DenseNetish(nn.Module):
    """Each layer's output is concatenated onto its input: consumers read groups at offsets."""

    input_shape = (3, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 6)
        self.l1 = conv_bn(6, 4)
        self.l2 = conv_bn(10, 4)
        self.transition = conv_bn(14, 8, k=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = torch.cat([h, self.l1(h)], dim=1)  # (N, 10, 8, 8)
        h = torch.cat([h, self.l2(h)], dim=1)  # (N, 14, 8, 8)
        h = nn.functional.avg_pool2d(self.transition(h), 2)
        return self.fc(nn.functional.adaptive_avg_pool2d(h, 1).flatten(1))


class Conv1dNet(nn.Module):
    input_shape = (4, 32)

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(4, 10, 5, padding=2)
        self.bn = nn.BatchNorm1d(10)
        self.c2 = nn.Conv1d(10, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 4, 32)
        h = nn.functional.max_pool1d(torch.relu(self.bn(self.c1(x))), 2)  # (N, 10, 16)
        h = nn.functional.max_pool1d(torch.relu(self.c2(h)), 2)  # (N, 6, 8)
        return self.fc(h.reshape(h.shape[0], -1))


class Inceptionish(nn.Module):
    """GoogLeNet/SqueezeNet: parallel branches concatenated, then split back by sizes/chunks."""

    input_shape = (3, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.squeeze = conv_bn(3, 6, k=1)
        self.b1 = conv_bn(6, 4, k=1)
        self.b3 = conv_bn(6, 6, k=3)
        self.pool_proj = conv_bn(6, 2, k=1)
        self.left = conv_bn(4, 5, k=1)
        self.right = conv_bn(8, 5, k=1)
        self.c1 = conv_bn(5, 3, k=1)
        self.c2 = conv_bn(5, 3, k=1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        pooled = self.pool_proj(nn.functional.max_pool2d(s, 3, 1, 1))
        h = torch.cat([self.b1(s), self.b3(s), pooled], dim=1)  # (N, 12, 8, 8)
        left, right = h.split([4, 8], dim=1)  # along segment edges
        u = torch.cat([self.left(left), self.right(right)], dim=1)  # (N, 10, 8, 8)
        p, q = u.chunk(2, dim=1)  # equal halves: one layer each
        return self.fc(torch.cat([self.c1(p), self.c2(q)], dim=1).mean((2, 3)))
