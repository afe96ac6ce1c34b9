"""Measured latency: how long one forward of a model takes on the run's device.

Parameters and MACs do not predict speed (a pruned resnet18 with a third of the MACs ran at
0.64-0.94x the original's time on this project's CPU runs), so every distinct model of a run
is timed: the in-memory module that the saved `.pt2` runs, on the job's device, under
`torch.inference_mode`, on real evaluation rows, once at batch size 1 and once at the job's
batch size. Each timing warms up first (allocator, kernel choice, caches), then repeats the
forward until a time budget or a count cap is reached and reports the median and the 90th
percentile. On CUDA every forward is bracketed by `torch.cuda.synchronize` so the clock sees
the kernels, not their launch.

The figures are those of this machine, this thread count and whatever else runs on it: they
compare candidates of one run with each other and with the baseline; they are not a
prediction for another runtime or device.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import torch

from pruning.data import BatchSource, Feeder
from pruning.errors import InvalidDataset

WARMUP_RUNS: Final = 3
MIN_RUNS: Final = 5  # timed runs per batch size, whatever the budget (a p90 needs a few)
MAX_RUNS: Final = 50  # timed runs per batch size, at most
BUDGET_SECONDS: Final = 0.3  # per model and batch size: runs stop past it (after MIN_RUNS)


@dataclass(frozen=True)
class Timing:
    """One batch size's figure: milliseconds per forward, over `runs` timed forwards."""

    size: int  # rows per forward
    median: float
    p90: float
    runs: int

    def as_dict(self) -> dict[str, float | int]:
        return {"size": self.size, "median": self.median, "p90": self.p90, "runs": self.runs}


@dataclass(frozen=True)
class Latency:
    """A model's measured latency: at batch size 1 (None where the model was exported with
    a fixed batch size other than 1) and at the job's batch size."""

    batch_1: Timing | None
    batch: Timing

    def as_dict(self) -> dict[str, Any]:
        one = None if self.batch_1 is None else self.batch_1.as_dict()
        if one is not None:
            del one["size"]  # always 1
        return {"batch_1": one, "batch": self.batch.as_dict()}


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0..100) of `values`, linearly interpolated (NumPy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def time_forward(
    forward: Callable[[], object],
    sync: Callable[[], None],
    *,
    warmup: int = WARMUP_RUNS,
    min_runs: int = MIN_RUNS,
    max_runs: int = MAX_RUNS,
    budget_seconds: float = BUDGET_SECONDS,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Milliseconds of each timed call of `forward`, after up to `warmup` untimed ones (one
    when it alone outlasts the budget: a slow model is warm after one call): at least
    `min_runs`, at most `max_runs`, and no new run once `budget_seconds` have passed."""
    for _ in range(warmup):
        before = clock()
        forward()
        sync()
        if clock() - before > budget_seconds:
            break
    times: list[float] = []
    start = clock()
    while len(times) < max_runs and (len(times) < min_runs or clock() - start < budget_seconds):
        before = clock()
        forward()
        sync()
        times.append((clock() - before) * 1000.0)
    return times


@dataclass
class LatencyMeter:
    """Times modules on one device with fixed inputs: `rows`, real evaluation rows at the
    job's batch size (a whole batch where the model's batch dimension is fixed)."""

    rows: tuple[torch.Tensor, ...]
    static_batch: int | None  # the model's fixed batch dimension; None: dynamic
    budget_seconds: float = BUDGET_SECONDS
    # Called before each measurement: waits for the run's own background work (a plot being
    # drawn, a file being published), which would otherwise share the cores being timed.
    quiet: Callable[[], object] = lambda: None

    @classmethod
    def of(
        cls, feeder: Feeder, source: BatchSource, quiet: Callable[[], object] = lambda: None
    ) -> LatencyMeter:
        """A meter on the first batch of `source` as `feeder` makes it (the job's batch
        size, or fewer rows where the data has fewer).

        Raises:
            InvalidDataset: `source` is empty.
        """
        first = next(iter(feeder(source)), None)
        if first is None:
            raise InvalidDataset("the evaluation dataset is empty")
        rows = len(first.inputs[0]) if feeder.static_batch is not None else first.valid
        return cls(tuple(t[:rows] for t in first.inputs), feeder.static_batch, quiet=quiet)

    def measure(self, module: Callable[..., object]) -> Latency:
        """The module's latency at batch size 1 and at the rows' batch size."""
        self.quiet()
        sync = _synchronizer(self.rows[0].device)
        one = None
        if self.static_batch in (None, 1):
            one = self._timing(module, tuple(t[:1] for t in self.rows), sync)
        full = one if len(self.rows[0]) == 1 else None
        return Latency(batch_1=one, batch=full or self._timing(module, self.rows, sync))

    def settings(self) -> dict[str, Any]:
        """How the figures were taken, for the results (`latency` there)."""
        device = self.rows[0].device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        return {
            "device": str(device),
            "device_name": name,
            "threads": torch.get_num_threads(),
            "warmup_runs": WARMUP_RUNS,
            "min_runs": MIN_RUNS,
            "max_runs": MAX_RUNS,
            "budget_seconds": self.budget_seconds,
            "statistic": "median and p90 of the timed runs, milliseconds per forward",
            "budget_figure": "batch_1.median (batch.median for a fixed-batch model)",
        }

    def _timing(
        self,
        module: Callable[..., object],
        inputs: tuple[torch.Tensor, ...],
        sync: Callable[[], None],
    ) -> Timing:
        with torch.inference_mode():
            times = time_forward(lambda: module(*inputs), sync, budget_seconds=self.budget_seconds)
        return Timing(
            size=int(inputs[0].shape[0]),
            median=round(statistics.median(times), 4),
            p90=round(percentile(times, 90), 4),
            runs=len(times),
        )


def _synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None
