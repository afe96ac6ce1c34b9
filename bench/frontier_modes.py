"""The modes the frontier benchmark compares, and how each becomes a PruneConfig.

A mode is a row of PruneConfig keyword overrides. Strings name enum members and dicts build
dataclasses, by the field's type in PruneConfig (`{"criterion": "variance"}`); a mode that
the current PruneConfig cannot build (a field or value it does not know yet) raises here,
and `bench.frontier` reports it as unavailable, not an error.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any

from jobs.job_config import Metric
from pruning.config import PruneConfig, Threshold

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
