"""The statistics pass against the bare forward it needs (issue 12's first ratio).

Both run over the same pre-built batches, alternately (A B A B ...) in one process, and the
ratio of their medians is printed with its spread: the machine is shared and noisy, so an
absolute time would say little. The statistics pass is the engine's own
(`pruning.stats.collect` with the taps and Gram matrices a default job asks for); the bare
forward is the exported module under `inference_mode`, the least a pass over the data costs.

    .venv/bin/python -m bench.stats_pass [--rounds 7] [--cnn] [--transformer]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import fx

from bench.common import (
    CNN,
    MLP,
    TRANSFORMER,
    Spec,
    alternate,
    bare_forward,
    prepare,
    ratios,
    spread,
)
from jobs.job_config import Criterion
from pruning.compensation import gram_taps
from pruning.config import PruneConfig
from pruning.data import ArrayData, Batch, Feeder
from pruning.graph import analyse
from pruning.reader import ArchiveLimits, read_program
from pruning.stats import collect


def _prepare(spec: Spec, folder: Path) -> tuple[fx.GraphModule, list[Batch], Callable[[], object]]:
    program_path = prepare(spec, folder).program
    program = read_program(program_path, ArchiveLimits())
    module = program.module()
    analysis = analyse(module)
    config = PruneConfig(criterion=Criterion.RECONSTRUCTION)
    feeder = Feeder(analysis.inputs, torch.device("cpu"), config.batch_size)
    x = torch.randn(spec.samples, *spec.sample).numpy()
    batches = list(feeder(ArrayData(x)))
    taps = {tap: g.width for g in analysis.prunable for tap in g.taps}
    gram = gram_taps(config, taps)

    def statistics_pass() -> object:
        return collect(module, taps, batches, gram=gram)

    return module, batches, statistics_pass


def measure(spec: Spec, rounds: int) -> list[float]:
    """Per-pair ratios statistics pass / bare forward, after one warm-up of both."""
    with tempfile.TemporaryDirectory() as tmp:
        module, batches, statistics_pass = _prepare(spec, Path(tmp))
        inputs = [batch.inputs[0] for batch in batches]
        bare, stats = alternate(
            [lambda: bare_forward(module, inputs), statistics_pass], rounds, True
        )
    return ratios(stats, bare)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="alternating pairs (default 7)")
    parser.add_argument("--cnn", action="store_true", help="also resnet18 at 64x64 (slower)")
    parser.add_argument("--transformer", action="store_true", help="also the transformer")
    args = parser.parse_args()
    specs = [MLP] + [CNN] * args.cnn + [TRANSFORMER] * args.transformer
    for spec in specs:
        found = spread(measure(spec, args.rounds))
        print(f"{spec.name:12s} statistics pass / bare forward: {found}")


if __name__ == "__main__":
    main()
