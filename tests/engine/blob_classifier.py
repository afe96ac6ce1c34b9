"""The model the recovery, hold-out, search and candidate tests prune: a classifier, 8 -> 64
-> 64 -> 4, trained for a moment on four Gaussian blobs; and the helpers those tests share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from pruning.data import ArrayData, DataInput
from pruning.graph import analyse
from pruning.reader import read_program
from pruning.surgery import apply_plan
from tests.tiny_models import export_to

Trained = tuple[Path, np.ndarray, np.ndarray]  # the exported model, x (800, 8), y (800,)


class Wide(nn.Module):
    """8 -> 64 -> 64 -> 4: wide enough that a deep cut hurts and recovery can help."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(8, 64), nn.Linear(64, 64), nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def train_blob_classifier(folder: Path) -> Trained:
    """Four Gaussian blobs, a classifier trained on them for a moment."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 8)) * 2
    y = rng.integers(0, 4, size=800)
    x = (centers[y] + rng.normal(size=(800, 8))).astype(np.float32)
    model = Wide()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt.step()
    return export_to(model.eval(), folder / "m.pt2", d_in=8), x, y


def data(x: np.ndarray, y: np.ndarray | None) -> DataInput:
    """Arrays as a run's data input; `y` None: unlabelled."""
    return DataInput(ArrayData(x, y), len(x), y is not None)


def cut(path: Path, x: np.ndarray, keep: int) -> tuple[torch.fx.GraphModule, ...]:
    """The original and a copy cut to `keep` neurons per layer, without compensation."""
    gm = read_program(path).module()
    analysis = analyse(gm)
    plan = {g.name: list(range(keep)) for g in analysis.prunable}
    return gm, apply_plan(gm, analysis, plan), analysis  # type: ignore[return-value]
