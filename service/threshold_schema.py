"""One threshold of a job's sweep, as a request writes it, and the forms it may take.

Every refusal of a threshold lists the accepted forms: a client that sent `{"frac": 0.3}` or
a bare number learns what to write instead of "Extra inputs are not permitted".
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import Field, model_validator

from jobs.job_config import ThresholdSpec
from service.schemas import InputSchema

_THRESHOLD_KEYS = ("mean", "std", "fraction")
THRESHOLD_FORMS = (
    'a threshold is {"fraction": f} with 0 <= f < 1 (any criterion: that share of the '
    'prunable neurons goes), {"mean": m, "std": s} (criterion seed) or {"std": s} '
    "(criterion variance)"
)


class ThresholdIn(InputSchema):
    """Absolute (`mean`, `std`; `variance` needs `std` only) or relative (`fraction`)."""

    mean: float | None = Field(None, ge=0)
    std: float | None = Field(None, ge=0)
    fraction: float | None = Field(
        None, ge=0, lt=1, description="share of prunable neurons to drop, lowest scores first"
    )

    @model_validator(mode="before")
    @classmethod
    def _known_form(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError(f"got {type(value).__name__} {str(value)[:40]}; {THRESHOLD_FORMS}")
        unknown = sorted(str(k)[:40] for k in value if k not in _THRESHOLD_KEYS)
        if unknown:
            raise ValueError(f"unknown key {', '.join(map(repr, unknown))}; {THRESHOLD_FORMS}")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if self.fraction is not None:
            if self.mean is not None or self.std is not None:
                raise ValueError(f"fraction given with mean or std; {THRESHOLD_FORMS}")
        elif self.std is None:
            raise ValueError(f"no std and no fraction; {THRESHOLD_FORMS}")
        return self

    def spec(self) -> ThresholdSpec:
        return ThresholdSpec(mean=self.mean, std=self.std, fraction=self.fraction)
