"""The job's vocabulary, once: what a job may ask for, its defaults, and the files it publishes.

`JobConfig` is a job's configuration on its way from the request to the engine: the API's
schemas build it, the job's row stores its JSON, the engine reads it back. The schemas, the
record, the worker and the engine all take these names from here. This module is a leaf: it
imports only the standard library, so the API can use it without torch and the engine
(`pruning`) without the service (tests/test_architecture.py checks both).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol

# The enums' comments are not docstrings: a docstring would become the enum's description in
# the API's OpenAPI document, which is public.


# How neurons are scored for removal.
class Criterion(StrEnum):
    SEED = "seed"  # drop j if |mean_j| < t_mean and std_j < t_std
    VARIANCE = "variance"  # low std alone; the mean is folded into the next layer
    # The error a removal leaves in the next layer's output after linear compensation
    # (greedy, from the Gram matrix and the consumers' weights); fractions only.
    RECONSTRUCTION = "reconstruction"


# What the consumers of removed channels get in their place.
class Compensation(StrEnum):
    NONE = "none"  # nothing: the cut equals zeroing the channels
    MEAN = "mean"  # the removed channels' means, folded into the consumers' bias
    # The least-squares reconstruction of the removed channels from the kept ones (from the
    # Gram matrix), folded into the consumers' kept columns and bias. Exact whenever the
    # removed channels are affine in the kept ones; reduces to MEAN for constant channels.
    LINEAR = "linear"

    @classmethod
    def parse(cls, value: object) -> Compensation:
        """`true`/`false` (the first API's boolean) mean `mean`/`none`.

        Raises:
            ValueError: naming the accepted values.
        """
        if isinstance(value, bool):
            return cls.MEAN if value else cls.NONE
        try:
            return cls(str(value))
        except ValueError:
            raise ValueError(
                f"compensate must be one of none, mean, linear (or true/false), got {value!r}"
            ) from None


# How a fraction of neurons to drop is spread across the groups.
class Allocation(StrEnum):
    GLOBAL = "global"  # one ranking over every group: scores decide how much each loses
    UNIFORM = "uniform"  # every group loses the same fraction of its own neurons
    # With `search` only: search with both, and let the evaluation choose (twice the probes).
    AUTO = "auto"


# How a candidate is scored against the original.
class Metric(StrEnum):
    ACCURACY = "accuracy"
    AGREEMENT = "agreement"  # same top-1 as the original model; needs no labels
    MSE = "mse"

    @property
    def needs_labels(self) -> bool:
        return self in (Metric.ACCURACY, Metric.MSE)

    @property
    def higher_is_better(self) -> bool:
        return self is not Metric.MSE


# The files each candidate is written as. The `.pt2` always: every number a job reports is
# measured on it; ONNX is a copy checked against it (`pruning.onnx_export`).
class Format(StrEnum):
    PT2 = "pt2"
    ONNX = "onnx"

    @classmethod
    def parse_all(cls, values: Iterable[object]) -> tuple[Format, ...]:
        """A job's formats, in this enum's order, each once; `pt2` must be among them.

        Raises:
            ValueError: an unknown format, or no `pt2`, naming what is accepted.
        """
        given: set[Format] = set()
        for value in values:
            try:
                given.add(cls(str(value)))
            except ValueError:
                raise ValueError(f"formats are pt2 and onnx, got {value!r}") from None
        if cls.PT2 not in given:
            raise ValueError(
                'formats must include "pt2": every candidate\'s numbers are measured on its '
                ".pt2 file, and other formats are checked against it"
            )
        return tuple(f for f in cls if f in given)


DEFAULT_COMPENSATION: Final = Compensation.LINEAR
DEFAULT_ALLOCATION: Final = Allocation.GLOBAL
DEFAULT_MAX_METRIC_DROP: Final = 0.005
DEFAULT_FORMATS: Final[tuple[Format, ...]] = (Format.PT2,)
# Samples per forward pass: a worker setting (DEADWEIGHT_BATCH_SIZE), `deadweight prune
# --batch-size`, and the engine's default when used as a library.
DEFAULT_BATCH_SIZE: Final = 256
DEFAULT_FRACTIONS: Final[tuple[float, ...]] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
MAX_RECOVERY_EPOCHS: Final = 100
# With recovery and no separate evaluation data, this share of the data is held out (seeded).
HOLDOUT_FRACTION: Final = 0.2


class ThresholdLike(Protocol):
    """A threshold in any of its forms: the API's body, the job's, the engine's."""

    @property
    def mean(self) -> float | None: ...
    @property
    def std(self) -> float | None: ...
    @property
    def fraction(self) -> float | None: ...


def criterion_for(thresholds: Iterable[ThresholdLike] | None) -> Criterion:
    """The criterion when a job names none: the one its thresholds are written for —
    `reconstruction` for fractions (or no thresholds), `seed` for {mean, std}, `variance`
    for {std} alone."""
    absolute = [t for t in thresholds or () if t.fraction is None]
    if not absolute:
        return Criterion.RECONSTRUCTION
    return Criterion.SEED if any(t.mean is not None for t in absolute) else Criterion.VARIANCE


def resolve_metric(metric: Metric | None, eval_has_labels: bool) -> Metric:
    """The job's metric: the one it names, else accuracy with labels and agreement without.

    Raises:
        ValueError: a metric that needs labels, on evaluation data without them.
    """
    if metric is None:
        return Metric.ACCURACY if eval_has_labels else Metric.AGREEMENT
    if metric.needs_labels and not eval_has_labels:
        raise ValueError(
            f"metric '{metric}' needs labels (y) in the evaluation data; "
            "use 'agreement' or add labels"
        )
    return metric


# -- a job's configuration, as the API checked it and the job's row stores it ---------------
@dataclass(frozen=True)
class ThresholdSpec:
    """One threshold as a job gives it: absolute (`mean`, `std`) or relative (`fraction` of
    the prunable neurons to drop). Checked by the API's schema and by the engine's
    `pruning.config.Threshold`, which extends it."""

    mean: float | None = None
    std: float | None = None
    fraction: float | None = None

    def as_dict(self) -> dict[str, float]:
        """The stored form: the fields that are set (`{"fraction"}` alone for a fraction)."""
        if self.fraction is not None:
            return {"fraction": self.fraction}
        out: dict[str, float] = {}
        if self.mean is not None:
            out["mean"] = self.mean
        if self.std is not None:
            out["std"] = self.std
        return out


@dataclass(frozen=True)
class RecoverySpec:
    """Fine-tuning after the cut, as a job asks for it (checked by `pruning.config.Recovery`)."""

    epochs: int = 3
    lr: float = 1e-3
    max_seconds: float | None = None  # per candidate; training stops early past it
    # Small batches take more steps per epoch, which a few epochs need; a model exported
    # with a fixed batch size trains at that size.
    batch_size: int = 32

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "epochs": self.epochs,
            "lr": self.lr,
            "max_seconds": self.max_seconds,
            "batch_size": self.batch_size,
        }


@dataclass(frozen=True)
class JobConfig:
    """What a job asks the engine to do; its JSON form is what the job's row stores.

    The API builds it from a checked request (`service.submission`), `deadweight prune` from
    its flags; the engine turns it into a `PruneConfig` (`pruning.config.PruneConfig.of`).
    """

    criterion: Criterion  # resolved: `criterion_for` the thresholds when a request names none
    thresholds: tuple[ThresholdSpec, ...] | None = None  # None: DEFAULT_FRACTIONS
    compensate: Compensation = DEFAULT_COMPENSATION
    allocation: Allocation = DEFAULT_ALLOCATION
    recovery: RecoverySpec | None = None
    search: bool = False  # find the largest fraction within max_metric_drop (no thresholds)
    seed: int = 0  # hold-out split, recovery's shuffling and initialisation
    metric: Metric | None = None  # None: resolved by the engine (`resolve_metric`)
    max_metric_drop: float = DEFAULT_MAX_METRIC_DROP
    # A second budget for the recommendation: the measured batch-1 median latency, in ms, of
    # the candidate recommended is at most this (`pruning.choice.recommend`); None: none.
    max_latency_ms: float | None = None
    formats: tuple[Format, ...] = DEFAULT_FORMATS  # files per candidate (`Format.parse_all`)

    def to_json(self) -> dict[str, Any]:
        """The stored form (its keys in this order, as every release has stored them)."""
        return {
            "criterion": self.criterion.value,
            "thresholds": None
            if self.thresholds is None
            else [t.as_dict() for t in self.thresholds],
            "compensate": self.compensate.value,
            "allocation": self.allocation.value,
            "recovery": None if self.recovery is None else self.recovery.as_dict(),
            "search": self.search,
            "seed": self.seed,
            "metric": None if self.metric is None else self.metric.value,
            "max_metric_drop": self.max_metric_drop,
            # Only when set: the rows of jobs without a latency budget keep their stored form.
            **({} if self.max_latency_ms is None else {"max_latency_ms": self.max_latency_ms}),
            # Likewise only beyond the default (the .pt2 alone).
            **(
                {}
                if self.formats == DEFAULT_FORMATS
                else {"formats": [f.value for f in self.formats]}
            ),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobConfig:
        """A stored configuration, of this release or an earlier one.

        Raises:
            ValueError: a value outside the vocabulary (rows are checked when written).
            TypeError: a threshold or recovery with a field this release does not know.
        """
        raw = data.get("thresholds")
        recovery = data.get("recovery")
        metric = data.get("metric")
        max_latency = data.get("max_latency_ms")
        # Jobs stored before a field existed ran with what was then the behaviour: criterion
        # seed, compensation a boolean (false), global allocation, no recovery, no search.
        return cls(
            criterion=Criterion(data.get("criterion", Criterion.SEED)),
            thresholds=tuple(ThresholdSpec(**{k: float(v) for k, v in t.items()}) for t in raw)
            if raw
            else None,
            compensate=Compensation.parse(data.get("compensate", False)),
            allocation=Allocation(data.get("allocation", Allocation.GLOBAL)),
            recovery=None if recovery is None else RecoverySpec(**recovery),
            search=bool(data.get("search", False)),
            seed=int(data.get("seed", 0)),
            metric=Metric(metric) if metric else None,
            max_metric_drop=float(data.get("max_metric_drop", DEFAULT_MAX_METRIC_DROP)),
            max_latency_ms=None if max_latency is None else float(max_latency),
            formats=Format.parse_all(data.get("formats", DEFAULT_FORMATS)),
        )


# -- the files a job publishes (the engine writes them, the API serves them) ------------------
RESULTS_JSON: Final = "results.json"
RESULTS_CSV: Final = "results.csv"
STATS_JSON: Final = "stats.json"
STATS_CSV: Final = "stats.csv"
STATS_PNG: Final = "stats.png"
TRADEOFF_PNG: Final = "tradeoff.png"
# One self-contained page for a person: the recommendation, charts, tables, links to the rest.
REPORT_HTML: Final = "report.html"
# Which neurons each candidate dropped, per group: for debugging and for re-cutting a model.
PLANS_JSON: Final = "plans.json"
# The original program's ONNX copy (formats with onnx), beside the candidates' pruned-<k>.onnx.
BASELINE_ONNX: Final = "baseline.onnx"


def pruned_model_name(index: int) -> str:
    """The file of candidate `index` (its position in the results table)."""
    return f"pruned-{index}.pt2"


def onnx_model_name(index: int) -> str:
    """Candidate `index`'s ONNX copy, written when the job's formats include onnx."""
    return f"pruned-{index}.onnx"
