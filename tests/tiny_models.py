"""Tiny models for the engine tests, and helpers to export and save them."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class MLP(nn.Module):
    """Linear -> BN -> act -> Dropout -> Linear -> act -> Linear: every supported op in a row."""

    def __init__(
        self,
        d_in: int = 6,
        h1: int = 12,
        h2: int = 10,
        d_out: int = 4,
        act: type[nn.Module] = nn.ReLU,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, h1)
        self.bn = nn.BatchNorm1d(h1)
        self.act1 = act()
        self.drop = nn.Dropout(0.2)
        self.fc2 = nn.Linear(h1, h2, bias=bias)
        self.act2 = act()
        self.out = nn.Linear(h2, d_out, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, d_in)
        h = self.drop(self.act1(self.bn(self.fc1(x))))  # (N, h1): what fc2 sees
        h = self.act2(self.fc2(h))  # (N, h2): what out sees
        return self.out(h)  # (N, d_out)


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics, so slicing them matters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


def export_to(
    model: nn.Module, path: Path, d_in: int | tuple[int, ...] = 6, dynamic: bool = True
) -> Path:
    """Export with a dynamic batch dim (or fixed at 4) and save; `d_in`: per-sample shape."""
    model.eval()
    shape = (d_in,) if isinstance(d_in, int) else d_in
    example = (torch.randn(4, *shape),)
    shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic else None
    torch.export.save(torch.export.export(model, example, dynamic_shapes=shapes), path)
    return path
