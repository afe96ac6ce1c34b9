"""Two small models on scikit-learn's digits (8x8 images, 10 classes), for pruning benchmarks.

The data is bundled with scikit-learn (no download). `digits_splits` gives fixed train,
calibration and test splits; `MLP` and `CNN` train in seconds on a couple of CPU cores;
`export` writes a `torch.export` program with a dynamic batch dimension, as users upload.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn


@dataclass(frozen=True)
class Splits:
    """x as float32 (N, 64) in [0, 1], y as int64 (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_cal: np.ndarray
    y_cal: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def digits_splits(seed: int = 0) -> Splits:
    """The 1797 digits, scaled to [0, 1], shuffled with `seed` into 60 % / 20 % / 20 %."""
    data = load_digits()
    x = (np.asarray(data.data, dtype=np.float32) / 16.0).astype(np.float32)
    y = np.asarray(data.target, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_train = round(0.6 * len(x))
    n_cal = round(0.2 * len(x))
    train, cal, test = np.split(order, [n_train, n_train + n_cal])
    return Splits(x[train], y[train], x[cal], y[cal], x[test], y[test])


def augment(
    x: np.ndarray, y: np.ndarray, seed: int, copies: int = 3, noise: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """The originals plus `copies` shifted (up to 1 pixel each way) and noisy copies.

    Args:
        x: (N, 64) images in [0, 1].
        y: (N,) labels.
        seed: for the shifts and the noise.
        copies: augmented copies per original (3: 4x the samples in all).
        noise: standard deviation of the Gaussian noise; the result is clipped to [0, 1].
    """
    rng = np.random.default_rng(seed)
    images = x.reshape(-1, 8, 8)
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    xs, ys = [x.astype(np.float32)], [y]
    for _ in range(copies):
        dy = rng.integers(0, 3, size=len(x))
        dx = rng.integers(0, 3, size=len(x))
        rows = dy[:, None] + np.arange(8)[None, :]  # (N, 8)
        cols = dx[:, None] + np.arange(8)[None, :]
        shifted = padded[np.arange(len(x))[:, None, None], rows[:, :, None], cols[:, None, :]]
        noisy = shifted + rng.normal(0.0, noise, size=shifted.shape)
        xs.append(np.clip(noisy, 0.0, 1.0).reshape(len(x), 64).astype(np.float32))
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


class MLP(nn.Module):
    """64 -> 256 -> 256 -> 256 -> 10, ReLU; input (N, 64)."""

    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class CNN(nn.Module):
    """Input (N, 1, 8, 8): conv 32, conv 64, max-pool 2x2, conv 64 (3x3, BatchNorm, ReLU),
    then flatten and a Linear to 10."""

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 64)) -> None:
        super().__init__()
        a, b, c = widths

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(1, a), *block(a, b), nn.MaxPool2d(2), *block(b, c), nn.Flatten()
        )
        self.head = nn.Linear(c * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out


def as_input(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Flat (N, 64) images in the shape `model` takes: (N, 1, 8, 8) for the CNN."""
    if isinstance(model, CNN):
        return np.ascontiguousarray(x.reshape(-1, 1, 8, 8), dtype=np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


def train(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    seed: int,
    batch_size: int = 64,
    lr: float = 1e-3,
) -> nn.Module:
    """Adam with a cosine learning-rate decay. The weights are first re-initialised from `seed`,
    so the result depends on the seed alone. `x` is already in the model's input shape.
    Returns the model, in eval mode."""
    torch.manual_seed(seed)
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    generator = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * -(-len(xt) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), batch_size):
            idx = order[start : start + batch_size]
            optimiser.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            optimiser.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of `model` (in eval mode) on `x` already in its input shape."""
    model.eval()
    predicted = model(torch.from_numpy(x)).argmax(1).numpy()
    return float((predicted == y).mean())


def export(model: nn.Module, path: Path, sample_shape: tuple[int, ...]) -> Path:
    """Export `model` in eval mode with a dynamic batch dimension and save it to `path`."""
    model.eval()
    example = (torch.zeros((2, *sample_shape)),)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, example, dynamic_shapes=({0: batch},))
    torch.export.save(program, path)
    return path
