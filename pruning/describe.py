"""What a model upload holds, for `GET /v1/models/{id}`: inputs, prunable and frozen groups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pruning.evaluate import count_parameters
from pruning.graph import analyse
from pruning.reader import ArchiveLimits, read_program


def describe_model(path: Path, max_parameters: int | None = None) -> dict[str, Any]:
    """Read a `.pt2` safely and describe it.

    Returns:
        {"parameters", "inputs": [{"name", "shape", "dtype"}], "layers": [{"name", "width",
        "kind"}], "frozen": [{"name", "width", "kind", "reason"}]}.

    Raises:
        UnsafeModel: the file is refused by the safe reader, or has more parameters than
            `max_parameters`.
    """
    program = read_program(path, ArchiveLimits(max_parameters=max_parameters))
    analysis = analyse(program.module())
    return {
        "parameters": count_parameters(program),
        "inputs": [{"name": i.name, "shape": i.shape, "dtype": i.dtype} for i in analysis.inputs],
        "layers": [g.describe() for g in analysis.prunable],
        "frozen": [g.describe() for g in analysis.frozen],
    }
