"""report.html: one self-contained page per job, for a person to read (offline, or as an
e-mail attachment): the recommendation, the charts, the full table, the neurons kept per
layer, the statistics per layer, the frozen groups and links to every published file.

Drawn from the same data the job publishes (results.json and stats.json, read back from the
folder) and written last, so it links every file the run wrote. No script, no external URL:
styles are inline, charts are inline SVG (`pruning.report.svg_charts`), links are relative
file names (they resolve in the job's folder and under `/v1/jobs/{id}/artifacts/`). Every
text from the data is escaped: layer and file names are the user's.
"""

from __future__ import annotations

import json
import math
import os
import stat
from html import escape
from pathlib import Path
from typing import Any, Final

from jobs.job_config import REPORT_HTML, RESULTS_JSON, STATS_JSON, Metric
from pruning.report.files import write_atomic
from pruning.report.labels import threshold_label
from pruning.report.report_tables import (
    candidates_table,
    drop_format,
    files_list,
    frozen_table,
    kept_heatmap,
    latency,
    latency_label,
    link,
    number,
)
from pruning.report.svg_charts import Distribution, Point, stats_chart, tradeoff_chart

_STYLE: Final = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;
max-width:1100px;padding:0 16px;color:#1b1b1b}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
.summary{background:#f4f8fd;border-left:4px solid #1f63b5;padding:8px 14px}
.dim{color:#666}svg{max-width:100%;height:auto;display:block;margin:8px 0}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 8px;border:1px solid #e3e3e3}
th{background:#f6f6f6;text-align:left}.numbers td{text-align:right;white-space:nowrap}
tr.recommended td{font-weight:600;background:#fff3e0}tr.baseline td{color:#444}
.heatmap th.layer{font-weight:normal;font-family:monospace}.wide{overflow-x:auto}
"""


def write_report(out_dir: Path) -> Path:
    """Write `report.html` into `out_dir` from its results.json and stats.json, linking every
    file the folder publishes. Call it after the run's other files are written.

    Returns:
        The report's path.
    """
    results = json.loads((out_dir / RESULTS_JSON).read_text(encoding="utf-8"))
    stats_path = out_dir / STATS_JSON
    stats = json.loads(stats_path.read_text(encoding="utf-8")) if stats_path.exists() else {}
    files = {n: s for n, s in _published(out_dir).items() if n != REPORT_HTML}
    page = render_report(results, stats.get("layers", []), files)

    def write(tmp: Path) -> None:
        tmp.write_text(page, encoding="utf-8", newline="")

    return write_atomic(out_dir / REPORT_HTML, write)


def _published(folder: Path) -> dict[str, int]:
    """The files the folder publishes, by name, with their sizes: regular files not named
    with a dot (a dot-name is a file still being written), as `jobs.manifest` seals them."""
    files = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            info = entry.stat(follow_symlinks=False)
            if not entry.name.startswith(".") and stat.S_ISREG(info.st_mode):
                files[entry.name] = info.st_size
    return dict(sorted(files.items()))


def render_report(
    results: dict[str, Any], layers: list[dict[str, Any]], files: dict[str, int]
) -> str:
    """The page, from results.json's and stats.json's data and the files to link."""
    widths = {str(layer["name"]): int(layer["neurons"]) for layer in layers}
    sections = [
        f"<h1>Pruning report</h1><p class=dim>{escape(_setup(results))}</p>",
        f'<div class="summary" id="recommendation">{_summary(results, files)}</div>',
        "<h2>Trade-off</h2>",
        *_charts(results),
        '<h2>Candidates</h2><div class="wide">',
        candidates_table(results, list(files), widths),
        "</div><h2>Neurons kept per layer</h2>",
        "<p class=dim>Kept neurons per layer and candidate (hover for the fraction).</p>",
        f'<div class="wide">{kept_heatmap(results, widths)}</div>',
        "<h2>Statistics per layer</h2>",
        _stats(results, layers),
        "<h2>Frozen groups</h2>",
        frozen_table(results.get("frozen") or []),
        *_notes(results.get("notes") or []),
        f"<h2>Files</h2>{files_list(files)}",
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Deadweight pruning report</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )


def _setup(results: dict[str, Any]) -> str:
    parts = [
        f"criterion {results.get('criterion')}",
        f"metric {results.get('metric')}",
        f"compensation {results.get('compensate')}",
        f"allocation {results.get('allocation')}",
    ]
    if results.get("search"):
        parts.append("search")
    recovery = results.get("recovery")
    if recovery:
        limit = recovery.get("max_seconds")
        parts.append(
            f"recovery {recovery.get('epochs')} epochs at lr {recovery.get('lr'):g}"
            + (f" (at most {limit:g} s)" if limit else "")
        )
    data = results.get("data") or {}
    for use in ("statistics", "evaluation", "training"):
        if data.get(use):
            parts.append(f"{use} on {data[use]}")
    holdout = data.get("holdout")
    if holdout:
        parts.append(
            f"held out {holdout.get('samples')} rows ({holdout.get('fraction', 0):.0%}, "
            f"seed {holdout.get('seed')})"
        )
    return " · ".join(parts)


def _change(results: dict[str, Any]) -> str:
    """What `metric_drop` measures: a drop, or for a lower-is-better metric an increase."""
    return "drop" if Metric(results["metric"]).higher_is_better else "increase"


def _budget(results: dict[str, Any]) -> str:
    return f"{results['metric']} {_change(results)} of at most {results['max_metric_drop']:g}"


def _summary(results: dict[str, Any], files: dict[str, int]) -> str:
    candidates = results["candidates"]
    b = results["baseline"]
    counts = (
        f"{len(candidates)} candidates, {len(results['pareto'])} on the Pareto front; "
        f"{len(results['layers'])} prunable layers, {len(results.get('frozen') or [])} frozen "
        f"groups. Baseline: {results['metric']} {number(b['metric'])}, "
        f"{b['parameters']:,} parameters."
    )
    chosen = next((c for c in candidates if c["index"] == results["recommended"]), None)
    if chosen is None:
        verdict = f"No candidate is recommended: none has a {escape(_budget(results))}."
    else:
        artifact = chosen.get("artifact") or ""
        download = f" File: {link(artifact)}." if artifact in files else ""
        facts = (
            f"{results['metric']} {number(chosen['metric'])} ({_change(results)} "
            f"{number(chosen['metric_drop'], drop_format(results))}), "
            f"{chosen['parameters']:,} parameters "
            f"({number(chosen['size_reduction'], '{:.1%}')} smaller)"
        )
        verdict = (
            f"Recommended: <strong>candidate #{int(chosen['index'])}</strong> "
            f"({escape(threshold_label(chosen['threshold']))}): {escape(facts)}, "
            f"the smallest candidate with a {escape(_budget(results))}.{download}"
        )
    return f"<p>{verdict}</p><p>{escape(counts)}</p>"


def _points(results: dict[str, Any], x_of: Any) -> list[Point]:
    """The baseline and every candidate with a finite metric and x, as chart points."""
    metric = results["metric"]
    base = results["baseline"]
    points = []
    if _finite(base.get("metric")) and _finite(x_of(base)):
        tip = f"baseline: {metric} {number(base['metric'])}, {base['parameters']:,} parameters"
        points.append(Point(x_of(base), base["metric"], "baseline", tip, "baseline"))
    for c in results["candidates"]:
        if not (_finite(c.get("metric")) and _finite(x_of(c))):
            continue
        role = "candidate"
        if c["index"] in results["pareto"]:
            role = "front"
        if c["index"] == results["recommended"]:
            role = "recommended"
        tip = (
            f"#{c['index']} ({threshold_label(c['threshold'])}): {metric} {number(c['metric'])},"
            f" {c['parameters']:,} parameters"
        )
        if latency(c) is not None:
            tip += f", {latency(c):.3g} ms"
        points.append(Point(x_of(c), c["metric"], f"#{c['index']}", tip, role))
    return points


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _charts(results: dict[str, Any]) -> list[str]:
    metric = results["metric"]
    up = Metric(metric).higher_is_better
    base = results["baseline"]["metric"]
    budget = None
    if _finite(base):
        budget = base - results["max_metric_drop"] if up else base + results["max_metric_drop"]
    y_label = f"{metric} ({'higher' if up else 'lower'} is better)"
    charts = [
        tradeoff_chart(
            _points(results, lambda e: e.get("parameters")),
            title=f"{metric} vs. parameters",
            x_label="parameters",
            y_label=y_label,
            budget_y=budget,
        )
    ]
    # The latency panel only when the job measured latency (the baseline and a candidate).
    if latency(results["baseline"]) is not None and any(
        latency(c) is not None for c in results["candidates"]
    ):
        charts.append(
            tradeoff_chart(
                _points(results, latency),
                title=f"{metric} vs. latency",
                x_label=latency_label(results),
                y_label=y_label,
                budget_y=budget,
            )
        )
    return charts


def _stats(results: dict[str, Any], layers: list[dict[str, Any]]) -> str:
    if not layers:
        return "<p>No prunable layer: no statistics.</p>"
    rows = [
        (
            str(layer["name"]),
            {
                "std": Distribution.of(layer.get("std") or []),
                "|mean|": Distribution.of(layer.get("abs_mean") or []),
            },
        )
        for layer in layers
    ]
    thresholds = [c["threshold"] for c in results["candidates"]]
    lines = {
        "std": sorted({t["std"] for t in thresholds if "std" in t}),
        "|mean|": sorted({t["mean"] for t in thresholds if "mean" in t}),
    }
    return stats_chart(rows, lines)


def _notes(notes: list[str]) -> list[str]:
    if not notes:
        return []
    items = "".join(f"<li>{escape(str(n))}</li>" for n in notes)
    return [f"<h2>Notes</h2><ul>{items}</ul>"]
