"""What the benchmarks of issue 12 share: the three models, their files, alternation, spread.

The machine is shared and noisy, so no benchmark reports an absolute time: each runs the
things it compares alternately (A B A B ..., or A B C A B C ...) and reports, per round, the
ratio of two of them, summarised as the median with its range.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.transformer_model import IMAGE, TinyTransformer

REPO = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


@dataclass(frozen=True)
class Spec:
    """One benchmark model: how to build it, one sample's shape, how many samples."""

    name: str
    title: str  # the table's column heading
    build: Callable[[], nn.Module]
    sample: tuple[int, ...]
    samples: int


def _mlp() -> nn.Module:
    """Issue 12's MLP: 100 -> 256 x 3 -> 10."""
    layers: list[nn.Module] = [nn.Linear(100, 256), nn.ReLU()]
    for _ in range(2):
        layers += [nn.Linear(256, 256), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(256, 10))


def _resnet18() -> nn.Module:
    """torchvision's resnet18, randomly initialised (BatchNorm calibrated in `prepare`)."""
    from bench.torchvision_models import build

    return build("resnet18", 64)


MLP = Spec("mlp", "MLP 100→256×3→10, 4,000 samples", _mlp, (100,), 4000)
CNN = Spec("resnet18", "resnet18 at 64×64, 512 samples", _resnet18, (3, 64, 64), 512)
TRANSFORMER = Spec(
    "transformer",
    "transformer (2 pre-LN blocks, width 128, 16 tokens), 2,048 samples",
    TinyTransformer,
    IMAGE,
    2048,
)
SPECS = {spec.name: spec for spec in (MLP, CNN, TRANSFORMER)}


@dataclass(frozen=True)
class Prepared:
    """A model on disk as a user has it: the exported program, its weights, its data."""

    spec: Spec
    model: nn.Module
    program: Path  # model.pt2, exported with a dynamic batch dimension
    weights: Path  # the state dict, for scripts that rebuild the module from its code
    data: Path  # data.npz: x, and y = the model's own top-1 (accuracy starts at 1.0)


def prepare(spec: Spec, folder: Path, samples: int | None = None, seed: int = 0) -> Prepared:
    """Build, calibrate, label, export and save `spec`'s model and data into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = spec.build().eval()
    x = torch.randn(samples or spec.samples, *spec.sample)
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        from bench.torchvision_models import calibrate_batchnorm

        calibrate_batchnorm(model, x)  # fresh BatchNorms are the identity: not a real model
    with torch.inference_mode():
        y = torch.cat([model(x[i : i + 256]) for i in range(0, len(x), 256)]).argmax(1)
    program, weights, data = folder / "model.pt2", folder / "weights.pt", folder / "data.npz"
    example = (x[:2],)
    dynamic = ({0: torch.export.Dim("batch", min=1)},)
    torch.export.save(torch.export.export(model, example, dynamic_shapes=dynamic), program)
    torch.save(model.state_dict(), weights)
    np.savez(data, x=x.numpy(), y=y.numpy())
    return Prepared(spec, model, program, weights, data)


def batches(data: Path, batch_size: int) -> list[torch.Tensor]:
    """The inputs of `data` as float32 batches, decoded once."""
    with np.load(data) as npz:
        x = torch.from_numpy(np.ascontiguousarray(npz["x"], dtype=np.float32))
    return [x[i : i + batch_size] for i in range(0, len(x), batch_size)]


def bare_forward(module: Callable[..., object], inputs: Sequence[torch.Tensor]) -> None:
    """The least one pass over the data costs: the module under inference_mode."""
    with torch.inference_mode():
        for batch in inputs:
            module(batch)


def alternate(steps: Sequence[Callable[[], object]], rounds: int, warm: bool) -> list[list[float]]:
    """Seconds of each step, run in turn (A B C A B C ...); one list per step.

    `warm` runs every step once first, unmeasured (imports, caches, first allocations).
    """
    if warm:
        for step in steps:
            step()
    seconds: list[list[float]] = [[] for _ in steps]
    for _ in range(rounds):
        for i, step in enumerate(steps):
            start = time.perf_counter()
            step()
            seconds[i].append(time.perf_counter() - start)
    return seconds


def ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """The per-round ratios of two alternated steps."""
    return [n / d for n, d in zip(numerator, denominator, strict=True)]


def spread(values: Sequence[float], unit: str = "x", digits: int = 2) -> str:
    """`median (min-max, n pairs)`, the form every ratio of the suite is reported in."""
    if not values:
        return "n/a"
    median = statistics.median(values)
    low, high = min(values), max(values)
    pairs = f"{len(values)} pair" + ("s" if len(values) != 1 else "")
    return f"{median:.{digits}f}{unit} ({low:.{digits}f}-{high:.{digits}f}, {pairs})"


def machine() -> str:
    """Cores, torch's threads and the CPU model, for the table's caption."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0))
    return (
        f"{cores} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, {model}"
    )
