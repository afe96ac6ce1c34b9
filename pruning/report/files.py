"""The files a job publishes: the sweep table and statistics (JSON, CSV), and the plain-text
table the CLI prints. The plots (PNG) are drawn in `pruning.report.plots`.

Every file is written under a temporary name and renamed into place: a reader never sees
half a file.
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
from typing import Any, Final

from jobs.job_config import RESULTS_CSV, RESULTS_JSON, STATS_CSV, STATS_JSON
from pruning.choice import higher_is_better
from pruning.results import LayerStats, Results

MAX_TABLE_LAYERS: Final = 8  # more layers than this: one "kept" column instead of one per layer

# --- labels and small helpers ----------------------------------------------------------------


def threshold_label(threshold: dict[str, float]) -> str:
    """The short form users type on the CLI: `0.1:0.4`, `std<0.4` or `f0.3`."""
    if "fraction" in threshold:
        return f"f{threshold['fraction']:g}"
    if set(threshold) == {"mean", "std"}:
        return f"{threshold['mean']:g}:{threshold['std']:g}"
    if set(threshold) == {"std"}:
        return f"std<{threshold['std']:g}"
    return ",".join(f"{k}={v:g}" for k, v in threshold.items())


def layer_widths(results: Results) -> dict[str, int]:
    """Each layer's original width, recovered from a candidate's kept counts and fractions."""
    widths: dict[str, int] = {}
    for candidate in results.candidates:
        for layer, kept in candidate.kept.items():
            fraction = candidate.kept_fraction.get(layer, 0.0)
            if layer not in widths and fraction > 0:
                widths[layer] = round(kept / fraction)
    return widths


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


# --- tables: JSON and CSV --------------------------------------------------------------------


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


# --- the CLI's table -------------------------------------------------------------------------


def _abbreviate(name: str, width: int = 10) -> str:
    return name if len(name) <= width else f"{name[: width - 6]}~{name[-5:]}"


def format_table(results: Results) -> str:
    """The sweep as fixed-width text: one row per candidate under the baseline, `*` marking
    the Pareto front and `<- recommended` the choice, then a legend."""
    up = higher_is_better(results.metric_name)
    value = "{:.4f}".format if up else "{:.4g}".format
    drop = "{:+.4f}".format if up else "{:+.4g}".format
    widths = layer_widths(results)
    per_layer = len(results.layers) <= MAX_TABLE_LAYERS
    kept_header = [_abbreviate(n) for n in results.layers] if per_layer else ["kept"]
    recovered = any(c.metric_before_recovery is not None for c in results.candidates)
    before = ["before recovery"] if recovered else []
    header = ["#", "threshold", results.metric_name, "drop", *before, "params", "reduction"]
    header += kept_header
    b = results.baseline
    base_kept = [str(widths.get(n, "?")) for n in results.layers] if per_layer else ["100%"]
    blank = [""] if recovered else []
    rows = [["-", "baseline", value(b.metric), "", *blank, f"{b.parameters:,}", "", *base_kept, ""]]
    for c in results.candidates:
        if per_layer:
            kept = [str(c.kept.get(n, "?")) for n in results.layers]
        else:
            total = sum(widths.values())
            kept = [f"{sum(c.kept.values()) / total:.0%}" if total else "?"]
        marks = ("*" if c.index in results.pareto else " ") + (
            " <- recommended" if c.index == results.recommended else ""
        )
        if c.same_as is not None:
            marks += f" (= #{c.same_as})"
        was = (
            []
            if not recovered
            else ["" if c.metric_before_recovery is None else value(c.metric_before_recovery)]
        )
        label = threshold_label(c.threshold)
        if results.allocation == "auto":  # the search tried both: say which this probe used
            label += f" {c.allocation}"
        rows.append(
            [
                *(str(c.index), label, value(c.metric)),
                *(drop(c.metric_drop), *was, f"{c.parameters:,}", f"{c.size_reduction:.1%}"),
                *kept,
                marks,
            ]
        )
    lines = _align([[*header, ""], *rows], left={1, len(header)})
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines + _legend(results, per_layer)) + "\n"


def _align(rows: list[list[str]], left: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(w) if i in left else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def _legend(results: Results, per_layer: bool) -> list[str]:
    kept = (
        "neurons kept per layer" if per_layer else "neurons kept overall (per layer: results.csv)"
    )
    lines = ["", f"kept: {kept}; * on the Pareto front ({results.metric_name} vs. parameters)"]
    change = "drop" if higher_is_better(results.metric_name) else "increase"
    budget = f"{results.metric_name} {change} is at most {results.max_metric_drop:g}"
    chosen = next((c for c in results.candidates if c.index == results.recommended), None)
    if chosen is None:
        lines.append(f"recommended: none, no candidate's {budget}")
    else:
        lines.append(
            f"recommended: #{chosen.index} ({threshold_label(chosen.threshold)}), "
            f"the smallest candidate whose {budget}"
        )
    return lines
