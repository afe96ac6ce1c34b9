"""Explicit configuration of a pruning run (no globals, no defaults hidden in code paths)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from jobs.job_config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_FRACTIONS,
    MAX_RECOVERY_EPOCHS,
    Allocation,
    Compensation,
    Criterion,
    Format,
    JobConfig,
    Metric,
    RecoverySpec,
    ThresholdSpec,
)
from pruning.errors import InvalidConfig


@dataclass(frozen=True)
class Threshold(ThresholdSpec):
    """A job's threshold, checked: absolute (`mean`, `std`) or relative (`fraction`)."""

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

    def label(self) -> str:
        if self.fraction is not None:
            return f"f{self.fraction:g}"
        if self.mean is None:
            return f"std<{self.std:g}"
        return f"{self.mean:g}:{self.std:g}"


def default_thresholds() -> tuple[Threshold, ...]:
    """The sweep used when a job names none: fractions, so it fits every model's scale."""
    return tuple(Threshold(fraction=f) for f in DEFAULT_FRACTIONS)


@dataclass(frozen=True)
class Recovery(RecoverySpec):
    """Fine-tuning after the cut, checked: distillation from the original (plus cross-entropy
    with labels), after the BatchNorm statistics are re-estimated."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise InvalidConfig("recovery batch_size must be >= 1")
        if not 0 <= self.epochs <= MAX_RECOVERY_EPOCHS:
            raise InvalidConfig(f"recovery epochs must be in [0, {MAX_RECOVERY_EPOCHS}]")
        if not 0 < self.lr <= 1:
            raise InvalidConfig(f"recovery lr must be in (0, 1], got {self.lr}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise InvalidConfig("recovery max_seconds must be > 0")


@dataclass(frozen=True)
class PruneConfig(JobConfig):
    """A run's configuration, checked: a job's configuration (`jobs.job_config.JobConfig`,
    whose fields it inherits; `PruneConfig.of` converts one) with its
    thresholds and recovery checked, plus the worker's settings (batch size, device, limit).
    Its defaults are the engine's: a sweep of fractions, criterion reconstruction."""

    criterion: Criterion = Criterion.RECONSTRUCTION
    thresholds: tuple[Threshold, ...] = field(default_factory=default_thresholds)
    recovery: Recovery | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    device: str = "cpu"
    max_parameters: int | None = None  # a service limit; larger models are refused on reading
    # Time every distinct model's forwards (`pruning.latency`); off: no `latency_ms` figures.
    measure_latency: bool = True

    @classmethod
    def of(
        cls,
        job: JobConfig,
        batch_size: int,
        device: str,
        max_parameters: int | None = None,
        *,
        measure_latency: bool = True,
    ) -> PruneConfig:
        """The engine's configuration of a job (as the API stored it, or as the CLI's flags
        describe it), checked.

        Raises:
            InvalidConfig: a setting the engine refuses, naming it.
        """
        given: dict[str, Any] = {f.name: getattr(job, f.name) for f in fields(JobConfig)}
        given["thresholds"] = (
            tuple(Threshold(t.mean, t.std, t.fraction) for t in job.thresholds)
            if job.thresholds
            else default_thresholds()
        )
        given["recovery"] = None if job.recovery is None else Recovery(**asdict(job.recovery))
        return cls(
            **given,
            batch_size=batch_size,
            device=device,
            max_parameters=max_parameters,
            measure_latency=measure_latency,
        )

    def __post_init__(self) -> None:
        # `compensate` was a boolean in the first API: True and False still mean mean/none.
        try:
            object.__setattr__(self, "compensate", Compensation.parse(self.compensate))
        except ValueError as exc:
            raise InvalidConfig(str(exc)) from None
        try:
            object.__setattr__(self, "formats", Format.parse_all(self.formats))
        except ValueError as exc:
            raise InvalidConfig(str(exc)) from None
        # Library callers may pass names ("uniform"); an unknown one is refused, never run
        # as a default (a plain string would not compare equal to any enum member below).
        self._coerce("criterion", Criterion)
        self._coerce("allocation", Allocation)
        if self.metric is not None:
            self._coerce("metric", Metric)
        if not self.thresholds:
            raise InvalidConfig("give at least one threshold, or omit them for the default sweep")
        if self.batch_size < 1:
            raise InvalidConfig("batch_size must be >= 1")
        if self.max_metric_drop < 0:
            raise InvalidConfig("max_metric_drop must be >= 0")
        if self.max_latency_ms is not None and not self.max_latency_ms > 0:
            raise InvalidConfig("max_latency_ms must be > 0")
        if self.max_latency_ms is not None and not self.measure_latency:
            raise InvalidConfig(
                "max_latency_ms needs measured latency, and latency measurement is off "
                "(DEADWEIGHT_MEASURE_LATENCY=false, or deadweight prune --no-latency)"
            )
        if self.allocation is Allocation.AUTO and not self.search:
            raise InvalidConfig(
                "allocation 'auto' searches with both allocations: it needs search; "
                "for a sweep, choose global or uniform"
            )
        if self.criterion is Criterion.RECONSTRUCTION and not all(
            t.is_fraction for t in self.thresholds
        ):
            raise InvalidConfig(
                "criterion 'reconstruction' takes fractions ({fraction}, f0.3); "
                "absolute thresholds are for 'seed' and 'variance'"
            )
        if self.criterion is Criterion.SEED:
            for t in self.thresholds:
                if not t.is_fraction and t.mean is None:
                    raise InvalidConfig(
                        "criterion 'seed' needs thresholds {mean, std} or {fraction}"
                    )

    def _coerce(self, name: str, kind: type[StrEnum]) -> None:
        value = getattr(self, name)
        try:
            object.__setattr__(self, name, kind(value))
        except ValueError:
            choices = ", ".join(m.value for m in kind)
            raise InvalidConfig(f"{name} {value!r} is not one of: {choices}") from None


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
