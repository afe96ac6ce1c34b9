"""Frontier: the fewest parameters each pruning mode keeps within 0.5 accuracy points.

Trains two small models on scikit-learn's digits (`bench.digits`: an MLP and a CNN), exports
them as users upload them, and for every mode of MODES runs the engine's whole sweep
(`pruning.sweep.run`) over fractions 0.05 ... 0.95, calibrating on the calibration split and
measuring accuracy on the held-out test split. For each (model, mode) it prints the
candidate with the largest size reduction whose accuracy drop is at most 0.5 points.

The modes and how each becomes a PruneConfig are in `bench.frontier_modes`; a mode that the
current PruneConfig cannot build is reported as unavailable, not an error.

    make frontier
    .venv/bin/python -m bench.frontier --models mlp --quick --json frontier.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench import digits
from bench.frontier_modes import FULL_FRACTIONS, MODES, QUICK_FRACTIONS, make_config
from jobs.job_config import DEFAULT_MAX_METRIC_DROP
from pruning.data import ArrayData
from pruning.results import Results
from pruning.sweep import DataInput, run

MAX_DROP = DEFAULT_MAX_METRIC_DROP  # 0.5 accuracy points
SEED = 0


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[], nn.Module]
    sample_shape: tuple[int, ...]
    epochs: int
    lr: float
    augmented: bool


MODELS: dict[str, ModelSpec] = {
    "mlp": ModelSpec(digits.MLP, (64,), epochs=20, lr=3e-3, augmented=True),
    "cnn": ModelSpec(digits.CNN, (1, 8, 8), epochs=20, lr=1e-3, augmented=False),
}


@dataclass
class Row:
    model: str
    mode: str
    status: str  # "ok", "unavailable: ...", "failed: ..."
    baseline_accuracy: float | None = None
    parameters: int | None = None
    best_fraction: float | None = None
    best_size_reduction: float | None = None  # 0.0 when no candidate stays within MAX_DROP
    best_parameters: int | None = None
    best_accuracy: float | None = None
    seconds: float = 0.0
    # Every candidate of the sweep: fraction, size_reduction, accuracy, metric_drop (JSON only).
    candidates: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def line(self) -> str:
        head = f"{self.model:5} {self.mode:24}"
        if self.status != "ok":
            return f"{head} {self.status}"
        base = f"{_pct(self.baseline_accuracy):>7} {self.parameters or 0:>8,}"
        if self.best_fraction is None:
            best = f"{'none':>6} {'-':>8} {'-':>7} {'-':>5}"
        else:
            best = (
                f"{_pct(self.best_size_reduction):>6} {self.best_parameters or 0:>8,} "
                f"{_pct(self.best_accuracy):>7} {self.best_fraction:>5g}"
            )
        return f"{head} {base} {best} {self.seconds:>6.1f}"


HEADER = (
    f"{'model':5} {'mode':24} {'base':>7} {'params':>8} {'cut':>6} {'kept':>8} {'acc':>7} "
    f"{'frac':>5} {'secs':>6}"
)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def best_within(results: Results, max_drop: float = MAX_DROP) -> Any:
    """The candidate with the largest size reduction whose metric drop is at most `max_drop`."""
    within = [c for c in results.candidates if c.metric_drop <= max_drop + 1e-9]
    return max(within, key=lambda c: (c.size_reduction, c.metric), default=None)


def prepare(
    name: str, spec: ModelSpec, splits: digits.Splits, work: Path
) -> tuple[Path, DataInput, DataInput, float, float]:
    """Train and export `name`; returns (program path, calibration, evaluation, train seconds,
    test accuracy of the trained model)."""
    model = spec.build()
    x_train, y_train = splits.x_train, splits.y_train
    started = time.monotonic()
    if spec.augmented:
        x_train, y_train = digits.augment(x_train, y_train, SEED)
    digits.train(model, digits.as_input(model, x_train), y_train, spec.epochs, SEED, lr=spec.lr)
    seconds = time.monotonic() - started
    # What a user has: the data the model was trained on (without augmentation) and a
    # calibration split; statistics and recovery use both, the test split only evaluates.
    x_cal = digits.as_input(model, np.concatenate([splits.x_train, splits.x_cal]))
    y_cal = np.concatenate([splits.y_train, splits.y_cal])
    x_test = digits.as_input(model, splits.x_test)
    accuracy = digits.accuracy(model, x_test, splits.y_test)
    path = digits.export(model, work / f"{name}.pt2", spec.sample_shape)
    calibration = DataInput(ArrayData(x_cal, y_cal), len(x_cal), has_labels=True)
    evaluation = DataInput(ArrayData(x_test, splits.y_test), len(x_test), has_labels=True)
    return path, calibration, evaluation, seconds, accuracy


def measure(
    model: str,
    mode: str,
    overrides: dict[str, Any],
    path: Path,
    calibration: DataInput,
    evaluation: DataInput,
    fractions: tuple[float, ...],
    work: Path,
) -> Row:
    try:
        config = make_config(overrides, fractions)
    except Exception as exc:
        return Row(model, mode, f"unavailable: {type(exc).__name__}: {exc}")
    out = work / f"{model}-{mode}".replace("+", "_")
    out.mkdir()
    started = time.monotonic()
    try:
        results = run(path, calibration, evaluation, config, out)
    except Exception as exc:  # one failing mode is a row of the table, not a crash
        seconds = time.monotonic() - started
        return Row(model, mode, f"failed: {type(exc).__name__}: {exc}", seconds=seconds)
    seconds = time.monotonic() - started
    row = Row(
        model,
        mode,
        "ok",
        baseline_accuracy=results.baseline.metric,
        parameters=results.baseline.parameters,
        best_size_reduction=0.0,
        seconds=seconds,
        candidates=[
            {
                "fraction": c.threshold.get("fraction"),
                "size_reduction": c.size_reduction,
                "accuracy": c.metric,
                "metric_drop": c.metric_drop,
            }
            for c in results.candidates
        ],
    )
    best = best_within(results)
    if best is not None:
        row.best_fraction = best.threshold.get("fraction")
        row.best_size_reduction = best.size_reduction
        row.best_parameters = best.parameters
        row.best_accuracy = best.metric
    return row


def main(argv: list[str] | None = None) -> int:
    args, models, modes = _parse(argv)
    fractions = QUICK_FRACTIONS if args.quick else FULL_FRACTIONS

    # One thread: these models are too small to gain from more, and torch's spinning
    # intra-op threads slow down a hundredfold when another process shares the cores.
    torch.set_num_threads(args.threads)
    started = time.monotonic()
    splits = digits.digits_splits(SEED)
    rows: list[Row] = []
    trained: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="deadweight-frontier-") as tmp:
        work = Path(tmp)
        prepared = {}
        for name in models:
            path, calibration, evaluation, train_s, acc = prepare(name, MODELS[name], splits, work)
            prepared[name] = (path, calibration, evaluation)
            trained[name] = {"train_seconds": train_s, "test_accuracy": acc}
            print(f"trained {name} in {train_s:.1f} s: test accuracy {_pct(acc)}", flush=True)
        print(
            f"\nmax drop {100 * MAX_DROP:g} points; fractions {fractions[0]:g} ... "
            f"{fractions[-1]:g} ({len(fractions)}); calibration "
            f"{len(splits.x_train) + len(splits.x_cal)}, "
            f"test {len(splits.x_test)} samples\n"
        )
        print(HEADER, flush=True)
        for name, (path, calibration, evaluation) in prepared.items():
            for mode in modes:
                row = measure(
                    name, mode, MODES[mode], path, calibration, evaluation, fractions, work
                )
                rows.append(row)
                print(row.line(), flush=True)
    wall = time.monotonic() - started
    print(f"\nwall {wall:.1f} s")
    if args.json:
        document = {
            "max_metric_drop": MAX_DROP,
            "fractions": list(fractions),
            "models": trained,
            "rows": [dataclasses.asdict(r) for r in rows],
            "wall_seconds": wall,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 1 if any(r.status.startswith("failed") for r in rows) else 0


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str], list[str]]:
    """The command line; returns the arguments, the models and the modes to measure."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}"
    )
    parser.add_argument(
        "--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}"
    )
    parser.add_argument("--quick", action="store_true", help="fractions 0.2 ... 0.9 only")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", type=Path, help="also write the table as JSON to this path")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS] + [m for m in modes if m not in MODES]
    if unknown or not models or not modes:
        parser.error(f"unknown or missing models/modes: {', '.join(unknown) or '(none)'}")
    return args, models, modes


if __name__ == "__main__":
    sys.exit(main())
