"""Explicit configuration of a pruning run (no globals, no defaults hidden in code paths)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from pruning.errors import InvalidConfig


class Criterion(StrEnum):
    SEED = "seed"  # drop j if |mean_j| < t_mean and std_j < t_std
    VARIANCE = "variance"  # low std alone; the mean is folded into the next layer


class Metric(StrEnum):
    ACCURACY = "accuracy"
    AGREEMENT = "agreement"  # same top-1 as the original model; needs no labels
    MSE = "mse"


@dataclass(frozen=True)
class Threshold:
    """Either absolute (`mean`, `std`) or relative (`fraction` of prunable neurons to drop)."""

    mean: float | None = None
    std: float | None = None
    fraction: float | None = None

    def __post_init__(self) -> None:
        if self.fraction is not None:
            if self.mean is not None or self.std is not None:
                raise InvalidConfig("a threshold is either {mean, std} or {fraction}, not both")
            if not 0.0 <= self.fraction < 1.0:
                raise InvalidConfig(f"fraction must be in [0, 1), got {self.fraction}")
        elif self.std is None:
            raise InvalidConfig("an absolute threshold needs 'std' (and 'mean' for criterion seed)")
        elif self.std < 0 or (self.mean is not None and self.mean < 0):
            raise InvalidConfig("threshold values must be >= 0")

    @property
    def is_fraction(self) -> bool:
        return self.fraction is not None

    def as_dict(self) -> dict[str, float]:
        if self.fraction is not None:
            return {"fraction": self.fraction}
        out: dict[str, float] = {}
        if self.mean is not None:
            out["mean"] = self.mean
        if self.std is not None:
            out["std"] = self.std
        return out

    def label(self) -> str:
        if self.fraction is not None:
            return f"f{self.fraction:g}"
        if self.mean is None:
            return f"std<{self.std:g}"
        return f"{self.mean:g}:{self.std:g}"


DEFAULT_FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def default_thresholds() -> tuple[Threshold, ...]:
    """The sweep used when a job names none: fractions, so it fits every model's scale."""
    return tuple(Threshold(fraction=f) for f in DEFAULT_FRACTIONS)


@dataclass(frozen=True)
class PruneConfig:
    criterion: Criterion = Criterion.SEED
    thresholds: tuple[Threshold, ...] = field(default_factory=default_thresholds)
    compensate: bool = False
    metric: Metric | None = None  # None: accuracy with labels, else agreement
    max_metric_drop: float = 0.005
    batch_size: int = 256
    device: str = "cpu"
    max_parameters: int | None = None  # a service limit; larger models are refused on reading

    def __post_init__(self) -> None:
        if not self.thresholds:
            raise InvalidConfig("give at least one threshold, or omit them for the default sweep")
        if self.batch_size < 1:
            raise InvalidConfig("batch_size must be >= 1")
        if self.max_metric_drop < 0:
            raise InvalidConfig("max_metric_drop must be >= 0")
        if self.criterion is Criterion.SEED:
            for t in self.thresholds:
                if not t.is_fraction and t.mean is None:
                    raise InvalidConfig(
                        "criterion 'seed' needs thresholds {mean, std} or {fraction}"
                    )


def parse_thresholds(text: str) -> tuple[Threshold, ...]:
    """Parse the CLI form: `MEAN:STD` pairs (`0.1:0.4,0.5:1`) or fractions (`f0.2,f0.4`).

    Raises:
        InvalidConfig: on any malformed item, naming it.
    """
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise InvalidConfig("--thresholds is empty")
    out: list[Threshold] = []
    for item in items:
        try:
            if item.startswith("f"):
                out.append(Threshold(fraction=float(item[1:])))
            elif ":" in item:
                mean, std = item.split(":", 1)
                out.append(Threshold(mean=float(mean), std=float(std)))
            else:
                out.append(Threshold(std=float(item)))
        except ValueError as exc:
            raise InvalidConfig(
                f"bad threshold {item!r}: use MEAN:STD (0.1:0.4), STD (0.4) or a fraction (f0.3)"
            ) from exc
    return tuple(out)
