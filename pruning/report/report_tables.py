"""The HTML report's tables: the candidates, the neurons kept per layer (a heatmap), the
frozen groups and the job's files. Input is results.json's and stats.json's data as
published; every text from it goes through `html.escape` (layer and file names are the
user's), every link is a relative URL of a published file's name."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from pruning.report.labels import threshold_label
from pruning.report.svg_canvas import short_number


def link(name: str) -> str:
    """A link to a published file, relative: it resolves beside the report, in the job's
    folder or under `/v1/jobs/{id}/artifacts/`. Quoting every reserved character keeps any
    name a path segment (`javascript:x` becomes `javascript%3Ax`)."""
    return f'<a href="{escape(quote(name, safe=""), quote=True)}">{escape(name)}</a>'


def _timing(entry: dict[str, Any]) -> dict[str, Any]:
    # At batch size 1; a model exported with a fixed batch size is timed at that size only.
    measured = entry.get("latency_ms") or {}
    timing = measured.get("batch_1") or measured.get("batch") or {}
    return timing if isinstance(timing, dict) else {}


def latency(entry: dict[str, Any]) -> float | None:
    """The median latency (ms) at batch size 1, or at the model's fixed batch size; None
    when the job did not measure it."""
    value = _timing(entry).get("median")
    return float(value) if isinstance(value, int | float) else None


def latency_label(results: dict[str, Any]) -> str:
    """What `latency` gives for this job's entries, in words."""
    measured = results["baseline"].get("latency_ms") or {}
    size = 1 if measured.get("batch_1") else (measured.get("batch") or {}).get("size", "?")
    return f"latency, ms (batch {size}, median)"


def drop_format(results: dict[str, Any]) -> str:
    """As the CLI's table: accuracy-like metrics to 4 decimals, others to 4 figures."""
    return "{:+.4f}" if results["metric"] != "mse" else "{:+.4g}"


def number(value: object, fmt: str = "{:.4g}") -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    return fmt.format(value)


def candidates_table(results: dict[str, Any], files: Sequence[str], widths: dict[str, int]) -> str:
    """One row for the baseline, then one per candidate, in the job's order."""
    has_latency = any(latency(c) is not None for c in results["candidates"])
    recovered = any(c.get("metric_before_recovery") is not None for c in results["candidates"])
    head = ["#", "threshold", results["metric"], "drop"]
    head += ["before recovery"] if recovered else []
    head += [latency_label(results)] if has_latency else []
    head += ["parameters", "reduction", "MACs", "bytes", "neurons kept", "file", ""]
    b = results["baseline"]
    total = sum(widths.get(layer, 0) for layer in results["layers"])
    rows = [
        _row(
            ["baseline", "", number(b["metric"]), ""]
            + ([""] if recovered else [])
            + ([number(latency(b), "{:.3g}")] if has_latency else [])
            + [f"{b['parameters']:,}", "", short_number(b.get("macs") or 0), f"{b['bytes']:,}"]
            + ["100%", "", ""],
            'class="baseline"',
        )
    ]
    for c in results["candidates"]:
        marks = []
        if c["index"] == results["recommended"]:
            marks.append("recommended")
        if c["index"] in results["pareto"]:
            marks.append("Pareto front")
        if c.get("same_as") is not None:
            marks.append(f"same cut as #{c['same_as']}")
        kept = sum(c["kept"].values())
        cells = [str(c["index"]), threshold_label(c["threshold"])]
        cells += [number(c["metric"]), number(c["metric_drop"], drop_format(results))]
        cells += [number(c.get("metric_before_recovery"))] if recovered else []
        cells += [number(latency(c), "{:.3g}")] if has_latency else []
        cells += [f"{c['parameters']:,}", number(c["size_reduction"], "{:.1%}")]
        cells += [short_number(c.get("macs") or 0), f"{c['bytes']:,}"]
        cells += [f"{kept / total:.0%}" if total else str(kept)]
        artifact = c.get("artifact") or ""
        escaped = [escape(x) for x in cells]
        escaped.append(link(artifact) if artifact in files else escape(artifact))
        escaped.append(escape(", ".join(marks)))
        attrs = f'data-candidate="{int(c["index"])}"'
        if c["index"] == results["recommended"]:
            attrs += ' class="recommended"'
        rows.append(_row(escaped, attrs, escaped_cells=True))
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(rows)
    return f'<table class="numbers"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>'


def _row(cells: list[str], attrs: str, escaped_cells: bool = False) -> str:
    body = "".join(f"<td>{c if escaped_cells else escape(c)}</td>" for c in cells)
    return f"<tr {attrs}>{body}</tr>"


def kept_heatmap(results: dict[str, Any], widths: dict[str, int]) -> str:
    """Layers down, candidates across: the neurons each keeps, shaded by the kept fraction."""
    candidates = results["candidates"]
    head = "".join(
        f'<th title="{escape(threshold_label(c["threshold"]), quote=True)}">#{int(c["index"])}</th>'
        for c in candidates
    )
    rows = []
    for layer in results["layers"]:
        cells = []
        for c in candidates:
            kept = c["kept"].get(layer)
            fraction = c["kept_fraction"].get(layer)
            if kept is None or not isinstance(fraction, int | float):
                cells.append("<td></td>")
                continue
            # White at 0 kept, deep blue at all kept; dark cells get light text.
            shade = f"hsl(213 70% {97 - 55 * fraction:.0f}%)"
            ink = "#ffffff" if fraction > 0.6 else "#111111"
            tip = f"{layer}: {kept} of {widths.get(layer, '?')} kept ({fraction:.0%})"
            style = f"background:{shade};color:{ink}"
            tip_attr = escape(tip, quote=True)
            cells.append(f'<td style="{style}" title="{tip_attr}">{escape(str(kept))}</td>')
        width = widths.get(layer)
        shown = "" if width is None else str(int(width))
        rows.append(
            f'<tr><th class="layer">{escape(layer)}</th><td>{shown}</td>{"".join(cells)}</tr>'
        )
    return (
        f'<table class="numbers heatmap"><thead><tr><th>layer</th><th>width</th>{head}</tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def frozen_table(frozen: list[dict[str, str]]) -> str:
    if not frozen:
        return "<p>None: every channel group could be cut.</p>"
    rows = "".join(
        f"<tr><td>{escape(str(g.get('name', '')))}</td>"
        f"<td>{escape(str(g.get('reason', '')))}</td></tr>"
        for g in frozen
    )
    head = "<tr><th>group</th><th>why it is never cut</th></tr>"
    return f'<table id="frozen-groups"><thead>{head}</thead><tbody>{rows}</tbody></table>'


def files_list(files: dict[str, int]) -> str:
    items = "".join(
        f"<li>{link(name)} <span class=dim>({short_number(size)}B)</span></li>"
        for name, size in files.items()
    )
    return f'<ul id="files">{items}</ul>'
