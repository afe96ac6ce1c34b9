"""The job's vocabulary, once: what a job may ask for, its defaults, and the files it publishes.

The API's schemas, the stored job record, the worker and the engine all take these names from
here. This module is a leaf: it imports only the standard library, so the API can use it
without torch and the engine (`pruning`) without the service (tests/test_architecture.py
checks both).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Final


class Criterion(StrEnum):
    """How neurons are scored for removal."""

    SEED = "seed"  # drop j if |mean_j| < t_mean and std_j < t_std
    VARIANCE = "variance"  # low std alone; the mean is folded into the next layer
    # The error a removal leaves in the next layer's output after linear compensation
    # (greedy, from the Gram matrix and the consumers' weights); fractions only.
    RECONSTRUCTION = "reconstruction"


class Compensation(StrEnum):
    """What the consumers of removed channels get in their place."""

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


class Allocation(StrEnum):
    """How a fraction of neurons to drop is spread across the groups."""

    GLOBAL = "global"  # one ranking over every group: scores decide how much each loses
    UNIFORM = "uniform"  # every group loses the same fraction of its own neurons
    # With `search` only: search with both, and let the evaluation choose (twice the probes).
    AUTO = "auto"


class Metric(StrEnum):
    """How a candidate is scored against the original."""

    ACCURACY = "accuracy"
    AGREEMENT = "agreement"  # same top-1 as the original model; needs no labels
    MSE = "mse"

    @property
    def needs_labels(self) -> bool:
        return self in (Metric.ACCURACY, Metric.MSE)

    @property
    def higher_is_better(self) -> bool:
        return self is not Metric.MSE


DEFAULT_MAX_METRIC_DROP: Final = 0.005
DEFAULT_FRACTIONS: Final[tuple[float, ...]] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
MAX_RECOVERY_EPOCHS: Final = 100
# With recovery and no separate evaluation data, this share of the data is held out (seeded).
HOLDOUT_FRACTION: Final = 0.2


def criterion_for(thresholds: Iterable[Mapping[str, float | None]] | None) -> Criterion:
    """The criterion when a job names none: the one its thresholds are written for —
    `reconstruction` for fractions (or no thresholds), `seed` for {mean, std}, `variance`
    for {std} alone. Thresholds are given as their fields (`{"mean", "std", "fraction"}`)."""
    absolute = [t for t in thresholds or () if t.get("fraction") is None]
    if not absolute:
        return Criterion.RECONSTRUCTION
    return (
        Criterion.SEED if any(t.get("mean") is not None for t in absolute) else Criterion.VARIANCE
    )


def resolve_metric(metric: Metric | None, eval_has_labels: bool) -> Metric:
    """The job's metric: the one it names, else accuracy with labels and agreement without.

    Raises:
        ValueError: a metric that needs labels, on evaluation data without them.
    """
    if metric is None:
        return Metric.ACCURACY if eval_has_labels else Metric.AGREEMENT
    if metric.needs_labels and not eval_has_labels:
        raise ValueError(
            f"metric {metric.value!r} needs labels, but the evaluation data has none; "
            "use 'agreement' or give labelled evaluation data"
        )
    return metric


# -- the files a job publishes (the engine writes them, the API serves them) ------------------
RESULTS_JSON: Final = "results.json"
RESULTS_CSV: Final = "results.csv"
STATS_JSON: Final = "stats.json"
STATS_CSV: Final = "stats.csv"
STATS_PNG: Final = "stats.png"
TRADEOFF_PNG: Final = "tradeoff.png"


def pruned_model_name(index: int) -> str:
    """The file of candidate `index` (its position in the results table)."""
    return f"pruned-{index}.pt2"
