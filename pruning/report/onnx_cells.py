"""A model's ONNX copy (`onnx` in results.json) as columns of results.csv.

The columns are always there, empty when the job did not ask for ONNX or the copy was not
written (the notes say why), so a reader of the CSV sees one header whatever the job's formats.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

ONNX_COLUMNS: Final = ("onnx_file", "onnx_bytes", "onnx_max_abs_diff", "onnx_tolerance")


def onnx_cells(onnx: Mapping[str, Any] | None) -> list[object]:
    """The `ONNX_COLUMNS` cells; empty (None) where there is no copy."""
    if onnx is None:
        return [None] * len(ONNX_COLUMNS)
    return [onnx["file"], onnx["bytes"], onnx["max_abs_diff"], onnx["tolerance"]]
