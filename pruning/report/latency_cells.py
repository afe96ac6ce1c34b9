"""A model's measured latency (`latency_ms` in results.json) as columns of results.csv."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

LATENCY_COLUMNS: Final = (
    "latency_1_median_ms",
    "latency_1_p90_ms",
    "latency_batch_size",
    "latency_batch_median_ms",
    "latency_batch_p90_ms",
)


def latency_cells(latency_ms: Mapping[str, Any] | None) -> list[object]:
    """The `LATENCY_COLUMNS` cells; empty (None) where nothing was measured, and the batch-1
    pair empty for a model exported with a fixed batch size."""
    if latency_ms is None:
        return [None] * len(LATENCY_COLUMNS)
    one = latency_ms.get("batch_1") or {}
    batch = latency_ms["batch"]
    return [one.get("median"), one.get("p90"), batch["size"], batch["median"], batch["p90"]]
