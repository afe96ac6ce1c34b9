"""The files a job publishes: the sweep table and statistics (JSON, CSV), plots (PNG), and
the plain-text table the CLI prints.

Plots use matplotlib's object API (`Figure` + the Agg canvas), never pyplot, so there is no
global figure state and workers may draw from several threads. Every file is written under a
temporary name and renamed into place: a reader never sees half a file.
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

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import EngFormatter

from pruning.choice import higher_is_better
from pruning.results import Candidate, LayerStats, Results

RESULTS_JSON: Final = "results.json"
RESULTS_CSV: Final = "results.csv"
STATS_JSON: Final = "stats.json"
STATS_CSV: Final = "stats.csv"
STATS_PNG: Final = "stats.png"
TRADEOFF_PNG: Final = "tradeoff.png"

MAX_PANELS: Final = 32  # a figure with more layers than this draws the first ones and says so
MAX_TABLE_LAYERS: Final = 8  # more layers than this: one "kept" column instead of one per layer
_DPI: Final = 110


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


def _write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
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

    return _write_atomic(path, write)


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
    layers = results.layers
    header = [
        "index",
        "threshold",
        "threshold_mean",
        "threshold_std",
        "threshold_fraction",
        "metric",
        "metric_drop",
        "parameters",
        "bytes",
        "macs",
        "size_reduction",
        "artifact",
        "same_as",
        "pareto",
        "recommended",
    ] + [f"kept:{layer}" for layer in layers]
    widths = layer_widths(results)
    b = results.baseline
    rows: list[list[object]] = [
        [
            *("baseline", "", None, None, None, b.metric, 0.0, b.parameters, b.bytes, b.macs),
            *(0.0, None, None, None, None),
            *(widths.get(layer) for layer in layers),
        ]
    ]
    for c in results.candidates:
        t = c.threshold
        rows.append(
            [c.index, threshold_label(t), t.get("mean"), t.get("std"), t.get("fraction")]
            + [c.metric, c.metric_drop, c.parameters, c.bytes, c.macs, c.size_reduction]
            + [c.artifact, c.same_as, c.index in results.pareto, c.index == results.recommended]
            + [c.kept.get(layer) for layer in layers]
        )
    return [
        _write_json(out_dir / RESULTS_JSON, results.as_dict()),
        _write_csv(out_dir / RESULTS_CSV, header, rows),
    ]


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


# --- plots -----------------------------------------------------------------------------------


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)  # attach the Agg canvas: no pyplot, no global state
    return _write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=_DPI))


def _scale(set_scale: Callable[..., Any], values: np.ndarray) -> None:
    """Linear, unless the values span more than two decades: then symlog, so that the zeros
    of dead neurons stay on the plot next to values orders of magnitude larger."""
    positive = values[values > 0]
    if positive.size and positive.max() > 100 * positive.min():
        # Linear below a round power of ten (and never more than six decades of log scale).
        smallest = max(float(positive.min()), float(positive.max()) * 1e-6)
        set_scale("symlog", linthresh=10.0 ** math.floor(math.log10(smallest)), linscale=1.0)


def plot_stats(
    layers: list[LayerStats], thresholds: list[dict[str, float]], criterion: str, path: Path
) -> Path:
    """Draw each layer's neurons, |mean| against std, with the absolute thresholds.

    `seed` thresholds are the rectangle |mean| < t_mean and std < t_std; `variance` ones the
    line std = t. Fraction thresholds rank neurons across all layers, so they have no line:
    the title lists them instead.

    Returns:
        `path`, a PNG.
    """
    shown = layers[:MAX_PANELS]
    cols = min(4, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / cols))
    fig = Figure(figsize=(3.6 * cols + 1.2, 3.0 * rows + 1.0), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    colours = [f"C{i % 10}" for i in range(len(thresholds))]
    drawable = [_drawable(t, criterion) for t in thresholds]
    points = None
    for ax, stats in zip(axes, shown, strict=False):
        points = _stats_panel(ax, stats, thresholds, drawable, colours)
    for ax in axes[len(shown) :]:
        ax.set_axis_off()
    if not shown:
        axes[0].text(0.5, 0.5, "no prunable layers", ha="center", va="center")
    if points is not None:
        fig.colorbar(points, ax=list(axes), label="fraction of zero activations", shrink=0.8)
    handles = [
        _threshold_handle(t, c) for t, c, d in zip(thresholds, colours, drawable, strict=True) if d
    ]
    if handles:
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncols=min(6, len(handles)),
            title="thresholds: neurons inside the box (seed) or below the line (variance) go",
        )
    fig.suptitle(_stats_title(layers, thresholds, drawable, criterion))
    return _save(fig, path)


def _threshold_handle(threshold: dict[str, float], colour: str) -> Artist:
    label = threshold_label(threshold)
    if "mean" in threshold:
        return Patch(facecolor=to_rgba(colour, 0.08), edgecolor=colour, linewidth=1.6, label=label)
    return Line2D([], [], color=colour, linewidth=1.6, linestyle="--", label=label)


def _drawable(threshold: dict[str, float], criterion: str) -> bool:
    return "fraction" not in threshold and criterion in ("seed", "variance") and "std" in threshold


def _stats_title(
    layers: list[LayerStats], thresholds: list[dict[str, float]], drawable: list[bool], crit: str
) -> str:
    title = f"Neuron activations per layer (criterion {crit})"
    hidden = [threshold_label(t) for t, d in zip(thresholds, drawable, strict=True) if not d]
    if hidden:
        why = (
            "fractions pick neurons by rank across all layers"
            if crit in ("seed", "variance")
            else f"criterion {crit} does not threshold |mean| or std"
        )
        title += f"\nnot drawn: {', '.join(hidden)} ({why})"
    if len(layers) > MAX_PANELS:
        title += f"\nfirst {MAX_PANELS} of {len(layers)} layers shown (all in stats.csv)"
    return title


def _stats_panel(
    ax: Axes,
    stats: LayerStats,
    thresholds: list[dict[str, float]],
    drawable: list[bool],
    colours: list[str],
) -> Any:
    x = np.abs(np.asarray(stats.mean, dtype=np.float64))
    y = np.asarray(stats.std, dtype=np.float64)
    size = 14 if stats.neurons <= 256 else 5
    points = ax.scatter(
        x,
        y,
        c=stats.zero_fraction,
        cmap="viridis",
        vmin=0,
        vmax=1,
        s=size,
        alpha=0.8,
        linewidths=0,
        clip_on=False,  # neurons at exactly 0 sit on the axes: draw them whole
        zorder=3,
    )
    drawn = [t for t, d in zip(thresholds, drawable, strict=True) if d]
    _scale(ax.set_xscale, np.concatenate([x, [t["mean"] for t in drawn if "mean" in t]]))
    _scale(ax.set_yscale, np.concatenate([y, [t["std"] for t in drawn]]))
    for t, d, colour in zip(thresholds, drawable, colours, strict=True):
        if not d:
            continue
        if "mean" in t:  # seed: removed when |mean| < t_mean and std < t_std
            ax.add_patch(
                Rectangle(
                    (0, 0),
                    t["mean"],
                    t["std"],
                    facecolor=to_rgba(colour, 0.08),
                    edgecolor=colour,
                    linewidth=1.6,
                )
            )
        else:  # variance: removed when std < t
            ax.axhline(t["std"], color=colour, linewidth=1.6, linestyle="--")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    constant = int(np.count_nonzero(y == 0))  # dead ReLUs sit at the origin, easy to miss
    dead = f", {constant} constant" if constant else ""
    ax.set_title(f"{stats.name} ({stats.neurons} neurons{dead})", fontsize=10)
    ax.set_xlabel("|mean| of activation")
    ax.set_ylabel("std of activation")
    ax.grid(True, alpha=0.3)
    return points


def plot_tradeoff(results: Results, path: Path) -> Path:
    """Draw metric against parameters: every candidate, the baseline, the Pareto front, the
    budget line and the recommended candidate.

    Returns:
        `path`, a PNG.
    """
    fig = Figure(figsize=(8.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    up = higher_is_better(results.metric_name)
    b = results.baseline
    drawn = [c for c in results.candidates if math.isfinite(c.metric)]
    ax.scatter(
        [c.parameters for c in drawn],
        [c.metric for c in drawn],
        color="0.6",
        s=30,
        zorder=2,
        label="candidate",
    )
    front = sorted(
        (c for c in drawn if c.index in results.pareto), key=lambda c: (c.parameters, c.index)
    )
    ax.plot(
        [c.parameters for c in front],
        [c.metric for c in front],
        "o-",
        color="C1",
        markersize=7,
        linewidth=1.8,
        zorder=3,
        label="Pareto front",
    )
    ax.scatter(
        [b.parameters],
        [b.metric],
        marker="*",
        s=220,
        color="black",
        zorder=4,
        label="baseline (unpruned)",
    )
    budget = b.metric - results.max_metric_drop if up else b.metric + results.max_metric_drop
    ax.axhline(
        budget,
        color="C3",
        linestyle="--",
        linewidth=1,
        label=f"allowed {'drop' if up else 'increase'} {results.max_metric_drop:g}",
    )
    _label_points(ax, drawn)
    _annotate_recommended(ax, results)
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlabel("parameters")
    ax.set_ylabel(f"{results.metric_name} ({'higher' if up else 'lower'} is better)")
    compensated = ", compensated" if results.compensate else ""
    ax.set_title(f"{results.metric_name} vs. size (criterion {results.criterion}{compensated})")
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.08, y=0.12)
    ax.legend(loc="best", fontsize=9)
    return _save(fig, path)


def _label_points(ax: Axes, candidates: list[Candidate]) -> None:
    """One label per distinct point: candidates with the same keep-set share one."""
    labels: dict[tuple[int, float], list[str]] = {}
    for c in candidates:
        labels.setdefault((c.parameters, c.metric), []).append(threshold_label(c.threshold))
    for (params, metric), names in labels.items():
        ax.annotate(
            ", ".join(names),
            (params, metric),
            xytext=(7, 7),
            textcoords="offset points",
            fontsize=8,
            color="0.25",
        )


def _annotate_recommended(ax: Axes, results: Results) -> None:
    chosen = next((c for c in results.candidates if c.index == results.recommended), None)
    if chosen is None or not math.isfinite(chosen.metric):
        change = "drop" if higher_is_better(results.metric_name) else "increase"
        text = f"no candidate within the allowed {change} of {results.max_metric_drop:g}"
        ax.text(0.02, 0.03, text, transform=ax.transAxes, fontsize=9, color="C3")
        return
    ax.scatter(
        [chosen.parameters],
        [chosen.metric],
        s=260,
        facecolors="none",
        edgecolors="C2",
        linewidths=2.2,
        zorder=5,
    )
    text = (
        f"recommended: {threshold_label(chosen.threshold)}\n"
        f"{results.metric_name} {chosen.metric:.4g}, {chosen.size_reduction:.0%} fewer parameters"
    )
    ax.annotate(
        text,
        (chosen.parameters, chosen.metric),
        xytext=(0.35, 0.25),
        textcoords="axes fraction",
        fontsize=9,
        color="C2",
        arrowprops={"arrowstyle": "->", "color": "C2"},
        bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "C2"},
    )


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
    header = ["#", "threshold", results.metric_name, "drop", "params", "reduction", *kept_header]
    b = results.baseline
    base_kept = [str(widths.get(n, "?")) for n in results.layers] if per_layer else ["100%"]
    rows = [["-", "baseline", value(b.metric), "", f"{b.parameters:,}", "", *base_kept, ""]]
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
        rows.append(
            [
                *(str(c.index), threshold_label(c.threshold), value(c.metric)),
                *(drop(c.metric_drop), f"{c.parameters:,}", f"{c.size_reduction:.1%}"),
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
