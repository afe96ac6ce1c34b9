"""The pruning engine: pure PyTorch + NumPy, no web, no queue.

Reads a `torch.export` program safely, measures per-neuron activation statistics, selects
neurons to remove, cuts them out for real and evaluates every candidate. The service runs it
in a sandboxed process (`worker.engine_process`); it is also a library:

    from pruning import DataInput, PruneConfig, Threshold, run
    results = run(Path("model.pt2"), DataInput.of(x, y), None,
                  PruneConfig(thresholds=(Threshold(fraction=0.3),)), Path("out"))

The names below are the engine's public API; the modules behind them are its inside:
`reader/` (untrusted `.pt2` -> ExportedProgram), `graph/` (channel groups), the method's
steps (`stats`, `criteria`, `ranking`, `compensation`, `surgery`, `recovery`, `evaluate`,
`choice`), the run (`sweep`, `sweep_stages`, `candidates`, `search`, `holdout`) and
`report/` (published files and plots). docs/architecture.md has the map.

The names load on first use (PEP 562): `import pruning.config` stays free of torch, so the
CLI's parent process and the engine process's first steps stay light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.job_config import Allocation, Compensation, Criterion, Metric
    from pruning.config import PruneConfig, Recovery, Threshold, parse_thresholds
    from pruning.data import ArrayData, DataInput
    from pruning.describe import describe_model
    from pruning.errors import (
        Cancelled,
        InvalidConfig,
        InvalidDataset,
        PruningError,
        UnsafeModel,
        UnsupportedModel,
    )
    from pruning.reader import ArchiveLimits, read_program
    from pruning.results import Baseline, Candidate, LayerStats, Results
    from pruning.sweep import run

_HOMES: dict[str, str] = {
    "Allocation": "jobs.job_config",
    "ArchiveLimits": "pruning.reader",
    "ArrayData": "pruning.data",
    "Baseline": "pruning.results",
    "Cancelled": "pruning.errors",
    "Candidate": "pruning.results",
    "Compensation": "jobs.job_config",
    "Criterion": "jobs.job_config",
    "DataInput": "pruning.data",
    "InvalidConfig": "pruning.errors",
    "InvalidDataset": "pruning.errors",
    "LayerStats": "pruning.results",
    "Metric": "jobs.job_config",
    "PruneConfig": "pruning.config",
    "PruningError": "pruning.errors",
    "Recovery": "pruning.config",
    "Results": "pruning.results",
    "Threshold": "pruning.config",
    "UnsafeModel": "pruning.errors",
    "UnsupportedModel": "pruning.errors",
    "describe_model": "pruning.describe",
    "parse_thresholds": "pruning.config",
    "read_program": "pruning.reader",
    "run": "pruning.sweep",
}

__all__ = [
    "Allocation",
    "ArchiveLimits",
    "ArrayData",
    "Baseline",
    "Cancelled",
    "Candidate",
    "Compensation",
    "Criterion",
    "DataInput",
    "InvalidConfig",
    "InvalidDataset",
    "LayerStats",
    "Metric",
    "PruneConfig",
    "PruningError",
    "Recovery",
    "Results",
    "Threshold",
    "UnsafeModel",
    "UnsupportedModel",
    "describe_model",
    "parse_thresholds",
    "read_program",
    "run",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pruning' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
