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
"""

from pruning.config import (
    Allocation,
    Compensation,
    Criterion,
    Metric,
    PruneConfig,
    Recovery,
    Threshold,
    parse_thresholds,
)
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
