"""The files a job publishes: the sweep table and the statistics, as JSON and CSV.

Every file is written under a temporary name and renamed into place (`write_atomic`): a
reader never sees half a file. The file names are the job's vocabulary (`jobs.job_config`);
the plots (PNG) are drawn in `pruning.report.stats_plot` and `pruning.report.tradeoff_plot`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from jobs.job_config import RESULTS_CSV, RESULTS_JSON, STATS_CSV, STATS_JSON
from pruning.report.labels import layer_widths, threshold_label
from pruning.report.latency_cells import LATENCY_COLUMNS, latency_cells
from pruning.report.onnx_cells import ONNX_COLUMNS, onnx_cells
from pruning.results import LayerStats, Results


def _json_safe(value: Any) -> Any:
    """NaN and infinity are not JSON: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Write `path` through `write(tmp)` on a temporary name, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # unique per writer
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_text(path: Path, text: str) -> Path:
    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8", newline="")

    return write_atomic(path, write)


def _write_json(path: Path, data: Any) -> Path:
    return _write_text(path, json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n")


def _write_csv(path: Path, header: list[str], rows: Iterable[Sequence[object]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else _csv_cell(v) for v in row])
    return _write_text(path, buffer.getvalue())


def _csv_cell(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return value


def write_results(results: Results, out_dir: Path) -> list[Path]:
    """Write `results.json` (the API's results body) and `results.csv` (one row per candidate,
    the baseline first, then one `kept:<layer>` column per layer).

    Returns:
        The paths written.
    """
    header = [
        "index",
        "threshold",
        "threshold_mean",
        "threshold_std",
        "threshold_fraction",
        "metric",
        "metric_drop",
        "metric_before_recovery",
        "parameters",
        "bytes",
        "macs",
        "size_reduction",
        "artifact",
        "same_as",
        "pareto",
        "recommended",
        "allocation",
        *LATENCY_COLUMNS,
        *ONNX_COLUMNS,
    ] + [f"kept:{layer}" for layer in results.layers]
    rows = _results_rows(results)
    return [
        _write_json(out_dir / RESULTS_JSON, results.as_dict()),
        _write_csv(out_dir / RESULTS_CSV, header, rows),
    ]


def _results_rows(results: Results) -> list[list[object]]:
    layers = results.layers
    widths = layer_widths(results)
    b = results.baseline
    rows: list[list[object]] = [
        [
            *("baseline", "", None, None, None, b.metric, 0.0, None),
            *(b.parameters, b.bytes, b.macs),
            *(0.0, None, None, None, None, None),
            *latency_cells(b.latency_ms),
            *onnx_cells(b.onnx),
            *(widths.get(layer) for layer in layers),
        ]
    ]
    for c in results.candidates:
        t = c.threshold
        rows.append(
            [c.index, threshold_label(t), t.get("mean"), t.get("std"), t.get("fraction")]
            + [c.metric, c.metric_drop, c.metric_before_recovery]
            + [c.parameters, c.bytes, c.macs, c.size_reduction]
            + [c.artifact, c.same_as, c.index in results.pareto, c.index == results.recommended]
            + [c.allocation]
            + latency_cells(c.latency_ms)
            + onnx_cells(c.onnx)
            + [c.kept.get(layer) for layer in layers]
        )
    return rows


def write_stats(layers: list[LayerStats], out_dir: Path) -> list[Path]:
    """Write `stats.json` (`{"layers": [...]}`) and `stats.csv` (one row per neuron).

    Returns:
        The paths written.
    """
    header = ["layer", "neuron", "mean", "std", "abs_mean", "zero_fraction", "min", "max"]
    rows = (
        [s.name, j, s.mean[j], s.std[j], s.abs_mean[j], s.zero_fraction[j], s.min[j], s.max[j]]
        for s in layers
        for j in range(s.neurons)
    )
    return [
        _write_json(out_dir / STATS_JSON, {"layers": [s.as_dict() for s in layers]}),
        _write_csv(out_dir / STATS_CSV, header, rows),
    ]
