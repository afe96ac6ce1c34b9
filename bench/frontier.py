"""Frontier: the fewest parameters each pruning mode keeps within 0.5 accuracy points.

Trains two small models on scikit-learn's digits (`bench.digits`: an MLP and a CNN), exports
them as users upload them, and for every mode of MODES runs the engine's whole sweep
(`pruning.sweep.run`) over fractions 0.05 ... 0.95, calibrating on the calibration split and
measuring accuracy on the held-out test split. For each (model, mode) it prints the
candidate with the largest size reduction whose accuracy drop is at most 0.5 points.

A mode is a row of PruneConfig keyword overrides. Strings name enum members and dicts build
dataclasses, by the field's type in PruneConfig (`{"criterion": "variance"}`); a mode that
the current PruneConfig cannot build (a field or value it does not know yet) is reported as
unavailable, not an error.

    make frontier
    .venv/bin/python -m bench.frontier --models mlp --quick --json frontier.json
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import sys
import tempfile
import time
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench import digits
from pruning.config import Metric, PruneConfig, Threshold
from pruning.data import ArrayData
from pruning.results import Results
from pruning.sweep import DataInput, run

MAX_DROP = 0.005  # 0.5 accuracy points
SEED = 0

# PruneConfig keyword overrides per mode; extend as the engine gains options, e.g.
#   "variance+linear": {"criterion": "variance", "compensate": "linear"},
#   "reconstruction+recovery": {"criterion": "reconstruction", "recovery": {"epochs": 3}},
_REC = {"epochs": 3}
MODES: dict[str, dict[str, Any]] = {
    # The first release's recipes: statistics-only criteria, mean folding at most.
    "seed": {"criterion": "seed", "compensate": "none"},
    "variance+mean": {"criterion": "variance", "compensate": "mean"},
    # Compensation, with the default criterion (reconstruction) and allocation (global).
    "none": {"compensate": "none"},
    "mean": {"compensate": "mean"},
    "linear": {"compensate": "linear"},
    "linear uniform": {"compensate": "linear", "allocation": "uniform"},
    "variance+linear": {"criterion": "variance", "compensate": "linear"},
    # Recovery with 0 epochs: BatchNorm statistics re-estimated, no training.
    "linear+batchnorm": {"compensate": "linear", "recovery": {"epochs": 0}},
    # The same with recovery: 3 epochs of distillation + cross-entropy on the calibration data.
    "none+recovery": {"compensate": "none", "recovery": _REC},
    "mean+recovery": {"compensate": "mean", "recovery": _REC},
    "linear+recovery": {"compensate": "linear", "recovery": _REC},
    "linear uniform+recovery": {
        "compensate": "linear",
        "allocation": "uniform",
        "recovery": _REC,
    },
    # The budget search (its probes, not the sweep) with both allocations: 12 evaluations.
    "search auto": {"search": True, "allocation": "auto"},
    "search auto+recovery": {"search": True, "allocation": "auto", "recovery": _REC},
}

FULL_FRACTIONS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))
QUICK_FRACTIONS: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(2, 10))


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


def _config_types() -> dict[str, Any]:
    try:
        return typing.get_type_hints(PruneConfig)
    except Exception:  # an annotation this process cannot resolve: take values as given
        return {}


def _coerce(value: Any, hint: Any) -> Any:
    """A table value as the field's type: a string names an enum member, a dict builds a
    dataclass; anything else goes to PruneConfig as given (it parses some, e.g. booleans),
    except a value of the wrong type for a plain bool, int, float or str field, which
    PruneConfig would take silently. Raises TypeError or ValueError on a misfit."""
    if hint is None or hint is Any:
        return value
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        errors = []
        for option in options:
            try:
                return _coerce(value, option)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise TypeError("; ".join(errors))
    if not isinstance(hint, type):  # tuple[...], dict[...]: as given
        return value
    if issubclass(hint, enum.Enum):
        return hint(value) if isinstance(value, str) else value  # ValueError: no such member
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return hint(**value)
    if hint in (bool, int, float, str) and not isinstance(value, hint):
        raise TypeError(f"{value!r} is not a {hint.__name__}")
    return value


def make_config(overrides: dict[str, Any], fractions: tuple[float, ...]) -> PruneConfig:
    """PruneConfig for one mode: accuracy, the sweep's fractions, and the mode's overrides.

    Raises:
        Exception: whatever the current PruneConfig raises for an override it cannot take.
    """
    hints = _config_types()
    kwargs: dict[str, Any] = {"metric": Metric.ACCURACY}
    for key, value in overrides.items():
        if hints and key not in hints:
            raise TypeError(f"PruneConfig has no field {key!r}")
        kwargs[key] = _coerce(value, hints.get(key))
    kwargs["thresholds"] = tuple(Threshold(fraction=f) for f in fractions)
    return PruneConfig(**kwargs)


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


if __name__ == "__main__":
    sys.exit(main())
