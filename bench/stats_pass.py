"""The statistics pass against the bare forward it needs (issue 12's first ratio).

Both run over the same pre-built batches, alternately (A B A B ...) in one process, and the
ratio of their medians is printed with its spread: the machine is shared and noisy, so an
absolute time would say little. The statistics pass is the engine's own
(`pruning.stats.collect` with the taps and Gram matrices a default job asks for); the bare
forward is the exported module under `inference_mode`, the least a pass over the data costs.

    .venv/bin/python -m bench.stats_pass [--rounds 7] [--cnn]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import fx, nn

from jobs.job_config import Criterion
from pruning.compensation import gram_taps
from pruning.config import PruneConfig
from pruning.data import ArrayData, Batch, Feeder
from pruning.graph import analyse
from pruning.reader import ArchiveLimits, read_program
from pruning.stats import collect


def _mlp() -> tuple[nn.Module, tuple[int, ...], int]:
    """Issue 12's MLP: 100 -> 256 x 3 -> 10, 4,000 samples."""
    layers: list[nn.Module] = [nn.Linear(100, 256), nn.ReLU()]
    for _ in range(2):
        layers += [nn.Linear(256, 256), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(256, 10)), (100,), 4000


def _cnn() -> tuple[nn.Module, tuple[int, ...], int]:
    """resnet18 at 64 x 64, 512 samples (torchvision's definition, no weights)."""
    from bench.torchvision_models import build

    return build("resnet18", 64), (3, 64, 64), 512


def _prepare(
    model: nn.Module, sample: tuple[int, ...], samples: int, folder: Path
) -> tuple[fx.GraphModule, list[Batch], Callable[[], object]]:
    torch.manual_seed(0)
    model.eval()
    example = (torch.randn(2, *sample),)
    dynamic = ({0: torch.export.Dim("batch", min=1)},)
    path = folder / "model.pt2"
    torch.export.save(torch.export.export(model, example, dynamic_shapes=dynamic), path)
    program = read_program(path, ArchiveLimits())
    module = program.module()
    analysis = analyse(module)
    config = PruneConfig(criterion=Criterion.RECONSTRUCTION)
    feeder = Feeder(analysis.inputs, torch.device("cpu"), config.batch_size)
    x = torch.randn(samples, *sample).numpy()
    batches = list(feeder(ArrayData(x)))
    taps = {tap: g.width for g in analysis.prunable for tap in g.taps}
    gram = gram_taps(config, taps)

    def statistics_pass() -> object:
        return collect(module, taps, batches, gram=gram)

    return module, batches, statistics_pass


def _alternate(a: Callable[[], object], b: Callable[[], object], rounds: int) -> list[float]:
    """Ratios b/a of one A B pair each, after one warm-up of both."""
    a()
    b()
    ratios = []
    for _ in range(rounds):
        start = time.perf_counter()
        a()
        middle = time.perf_counter()
        b()
        ratios.append((time.perf_counter() - middle) / (middle - start))
    return ratios


def measure(
    name: str, make: Callable[[], tuple[nn.Module, tuple[int, ...], int]], rounds: int
) -> str:
    model, sample, samples = make()
    with tempfile.TemporaryDirectory() as tmp:
        module, batches, statistics_pass = _prepare(model, sample, samples, Path(tmp))

        def bare_forward() -> object:
            with torch.inference_mode():
                for batch in batches:
                    module(*batch.inputs)
            return None

        ratios = _alternate(bare_forward, statistics_pass, rounds)
    low, high = min(ratios), max(ratios)
    return (
        f"{name:8s} statistics pass / bare forward: median {statistics.median(ratios):.2f}x "
        f"(min {low:.2f}, max {high:.2f}, {rounds} alternating pairs, "
        f"{torch.get_num_threads()} threads)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="alternating pairs (default 7)")
    parser.add_argument("--cnn", action="store_true", help="also resnet18 at 64x64 (slower)")
    args = parser.parse_args()
    print(measure("mlp", _mlp, args.rounds))
    if args.cnn:
        print(measure("resnet18", _cnn, args.rounds))


if __name__ == "__main__":
    main()
