"""A small trained model and data to try Deadweight with (`deadweight example --out DIR`).

An MLP trained for a few seconds on scikit-learn's bundled handwritten digits (8x8 images,
10 classes; nothing is downloaded). Wide hidden layers leave many neurons that barely vary,
which is what the service finds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


class ExampleMLP(nn.Module):
    def __init__(self, hidden: tuple[int, int] = (256, 128)) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.drop = nn.Dropout(0.1)
        self.out = nn.Linear(hidden[1], 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, 64)
        h = torch.relu(self.fc1(x))  # (N, 256)
        h = self.drop(torch.relu(self.fc2(h)))  # (N, 128)
        out: torch.Tensor = self.out(h)  # (N, 10)
        return out


def digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train/eval split of the digits, features scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)  # (1797, 64)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.8 * len(x))
    train, test = order[:cut], order[cut:]
    return x[train], y[train], x[test], y[test]


def train_example(
    epochs: int = 40, seed: int = 0
) -> tuple[ExampleMLP, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = digits_split(seed)
    model = ExampleMLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    # One thread: batches of 64 rows are too small to share, and on a busy machine extra
    # threads spin waiting for each other (several times slower than one thread).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _train(model, opt, xt, yt, epochs)
    finally:
        torch.set_num_threads(threads)
    return model.eval(), x_train, y_train, x_test, y_test


def _train(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    xt: torch.Tensor,
    yt: torch.Tensor,
    epochs: int,
) -> None:
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for start in range(0, len(xt), 64):
            idx = perm[start : start + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()


def write_example(out: Path) -> list[Path]:
    """Write `model.pt2`, `data.npz` (calibration) and `eval.npz` into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    model, x_train, y_train, x_test, y_test = train_example()
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(
        model, (torch.from_numpy(x_train[:4]),), dynamic_shapes=({0: batch},)
    )
    paths = [out / "model.pt2", out / "data.npz", out / "eval.npz"]
    torch.export.save(program, paths[0])
    np.savez(paths[1], x=x_train, y=y_train)
    np.savez(paths[2], x=x_test, y=y_test)
    return paths
