"""Small models covering the architectural patterns the channel-group engine must handle.

Each is a miniature of a well-known family (VGG, ResNet basic and bottleneck blocks,
DenseNet, MobileNetV2/V3 with squeeze-and-excitation, 1-D convnets, transformer MLPs), with
randomised BatchNorm statistics so that slicing them matters.
"""

from __future__ import annotations

import torch
from torch import nn

from tests.tiny_models import randomize_bn


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


class TransformerMLP(nn.Module):
    """A pre-norm transformer MLP sub-block over tokens: Linear -> GELU -> Linear + residual."""

    input_shape = (5, 12)

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(12)
        self.fc1 = nn.Linear(12, 32)
        self.fc2 = nn.Linear(32, 12)
        self.head = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, D)
        h = x + self.fc2(nn.functional.gelu(self.fc1(self.norm(x))))
        return self.head(h.mean(dim=1))


class ConvNeXtish(nn.Module):
    """Depthwise 7x7, channels-last LayerNorm, pointwise MLP as Linear layers, layer scale."""

    input_shape = (3, 16, 16)

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 4, 4)
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.rand(dim) + 0.5)
        self.head = nn.Linear(dim, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (N, C, 4, 4)
        h = self.dwconv(x).permute(0, 2, 3, 1)  # (N, H, W, C)
        h = self.pwconv2(nn.functional.gelu(self.pwconv1(self.norm(h))))
        x = x + (self.gamma * h).permute(0, 3, 1, 2)
        return self.head(x.mean((2, 3)))


class ViTish(nn.Module):
    """Patch embedding, class token, position embedding, one pre-norm encoder block."""

    input_shape = (3, 8, 8)

    def __init__(self, dim: int = 12, heads: int = 3) -> None:
        super().__init__()
        self.heads = heads
        self.patch = nn.Conv2d(3, dim, 4, 4)  # 4 patches
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
        self.pos = nn.Parameter(torch.randn(1, 5, dim) * 0.1)
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)  # (N, 4, D)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1) + self.pos  # (N, 5, D)
        n, length, d = t.shape
        q, k, v = (
            self.qkv(self.norm1(t))
            .reshape(n, length, 3, self.heads, d // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        a = nn.functional.scaled_dot_product_attention(q, k, v)  # (N, H, T, d)
        t = t + self.proj(a.transpose(1, 2).reshape(n, length, d))
        t = t + self.fc2(nn.functional.gelu(self.fc1(self.norm2(t))))
        return self.head(self.norm(t)[:, 0])


class ShuffleNetish(nn.Module):
    """Channel split and channel shuffle: groups that the engine must freeze, not miscut."""

    input_shape = (4, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(4, 8, k=1)
        self.branch = conv_bn(4, 4, k=1)
        self.after = conv_bn(8, 6, k=1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        a, b = h.chunk(2, dim=1)
        h = torch.cat([a, self.branch(b)], dim=1)  # (N, 8, H, W)
        n, c, hh, ww = h.shape
        h = h.view(n, 2, c // 2, hh, ww).transpose(1, 2).reshape(n, c, hh, ww)  # shuffle
        return self.fc(self.after(h).mean((2, 3)))


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


ZOO: dict[str, type[nn.Module]] = {
    "vgg": VGGish,
    "resnet": ResNetish,
    "bottleneck": Bottleneck,
    "densenet": DenseNetish,
    "mobilenet": InvertedResidual,
    "conv1d": Conv1dNet,
    "transformer_mlp": TransformerMLP,
    "convnext": ConvNeXtish,
    "vit": ViTish,
    "shufflenet": ShuffleNetish,
    "inception": Inceptionish,
    "resnext": ResNeXtish,
}


def build(name: str, seed: int = 0) -> nn.Module:
    """A zoo model in eval mode with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = ZOO[name]()
    randomize_bn(model, seed)
    return model.eval()
