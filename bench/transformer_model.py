"""The benchmark's transformer: patch projection, two pre-LN encoder blocks, a linear head.

Small on purpose (issue 12 asks for "a transformer block model", not a large one): 16 tokens
of 48 features each (a 4 x 4 grid of 4 x 4 patches of a 3 x 16 x 16 image), width 128, four
heads, an MLP of 4 x the width. The attention is written out with nn.Linear projections,
as many vision and language models do, so that both the engine and Torch-Pruning see plain
Linear layers; the MLP's hidden layer is the part a structured pruner can cut without
touching the residual stream.
"""

from __future__ import annotations

import torch
from torch import nn

IMAGE = (3, 16, 16)
PATCH = 4
WIDTH = 128
HEADS = 4
CLASSES = 10


class Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.v = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        # -1, not the input's width: a pruner may narrow the residual stream (the input) and
        # the projections independently.
        shape = (b, t, self.heads, -1)
        q, k, v = (p(x).reshape(shape).transpose(1, 2) for p in (self.q, self.k, self.v))
        y = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, t, -1))  # type: ignore[no-any-return]


class Block(nn.Module):
    """Pre-LN: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attention = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, 4 * width)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))  # type: ignore[no-any-return]


class TinyTransformer(nn.Module):
    def __init__(self, width: int = WIDTH, heads: int = HEADS, classes: int = CLASSES) -> None:
        super().__init__()
        channels, size, _ = IMAGE
        tokens = (size // PATCH) ** 2
        self.patch = nn.Linear(channels * PATCH * PATCH, width)
        self.position = nn.Parameter(torch.randn(1, tokens, width) * 0.02)
        self.blocks = nn.Sequential(Block(width, heads), Block(width, heads))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b, c, h, w = images.shape
        # (b, c, h, w) -> (b, tokens, c * PATCH * PATCH): non-overlapping patches, flattened.
        patches = images.reshape(b, c, h // PATCH, PATCH, w // PATCH, PATCH)
        patches = patches.permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * PATCH * PATCH)
        x = self.blocks(self.patch(patches) + self.position)
        return self.head(self.norm(x).mean(dim=1))  # type: ignore[no-any-return]
