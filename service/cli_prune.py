"""`deadweight prune`: the service's job, run locally (part of the CLI's composition root).

Only `service.cli` imports this module, inside the `prune` command: it is the one place in
`service/` that reaches the engine, so the API process never imports torch.
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from pathlib import Path

from jobs.datasets import open_dataset
from pruning import report
from pruning.config import (
    Allocation,
    Compensation,
    Criterion,
    Metric,
    PruneConfig,
    Recovery,
    criterion_for,
    default_thresholds,
    parse_thresholds,
)
from pruning.errors import InvalidConfig
from pruning.sweep import DataInput, run


def prune_locally(args: argparse.Namespace) -> str:
    """Run the job described by the CLI arguments; returns the printed table.

    Raises:
        PruningError, InvalidDataset, OSError: bad input, reported with exit status 2.
    """
    if not args.model.is_file():
        raise InvalidConfig(f"{args.model}: no such file")
    if args.search and args.thresholds:
        raise InvalidConfig("--search finds the fraction itself: drop --thresholds")
    recovery = None
    if args.recover_epochs is not None:
        recovery = Recovery(
            epochs=args.recover_epochs, lr=args.recover_lr, max_seconds=args.recover_max_seconds
        )
    thresholds = parse_thresholds(args.thresholds) if args.thresholds else None
    config = PruneConfig(
        criterion=Criterion(args.criterion) if args.criterion else criterion_for(thresholds),
        thresholds=thresholds or default_thresholds(),
        compensate=Compensation(args.compensate),
        allocation=Allocation(args.allocation),
        recovery=recovery,
        search=args.search,
        seed=args.seed,
        metric=Metric(args.metric) if args.metric else None,
        max_metric_drop=args.max_metric_drop,
        batch_size=args.batch_size,
        device=args.device,
    )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:

        def data_input(path: Path) -> DataInput:
            if not path.is_file():
                raise InvalidConfig(f"{path}: no such file")
            ds = stack.enter_context(open_dataset(path, label_column=args.label_column))
            return DataInput(source=ds, samples=ds.info.samples, has_labels=ds.info.has_labels)

        calibration = data_input(args.data)
        evaluation = data_input(args.eval_data) if args.eval_data else None
        results = run(args.model, calibration, evaluation, config, out)
    return report.format_table(results) + f"\nfiles written to {out}/"
