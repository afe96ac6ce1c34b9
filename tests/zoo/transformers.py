"""Token models: a transformer MLP block, ConvNeXt (channels-last LayerNorm, pointwise
Linear layers, layer scale), a ViT block (class token, position embedding, attention heads)."""

from __future__ import annotations

import torch
from torch import nn


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
