"""The sweep as the CLI prints it: a fixed-width text table, one row per candidate under the
baseline, `*` marking the Pareto front and `<- recommended` the choice, then a legend."""

from __future__ import annotations

from typing import Any, Final

from jobs.job_config import Allocation, Metric
from pruning.choice import budget_figure
from pruning.report.labels import layer_widths, threshold_label
from pruning.results import Candidate, Results

MAX_TABLE_LAYERS: Final = 8  # more layers than this: one "kept" column instead of one per layer


def _abbreviate(name: str, width: int = 10) -> str:
    return name if len(name) <= width else f"{name[: width - 6]}~{name[-5:]}"


def format_table(results: Results) -> str:
    """The sweep as fixed-width text: one row per candidate under the baseline, `*` marking
    the Pareto front and `<- recommended` the choice, then a legend."""
    table = _Table(results)
    header = table.header()
    rows = [table.baseline_row(), *(table.row(c) for c in results.candidates)]
    lines = _align([[*header, ""], *rows], left={1, len(header)})
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines + _legend(results, table.per_layer)) + "\n"


class _Table:
    """The columns of one results table: which appear, and each row's cells."""

    def __init__(self, results: Results) -> None:
        self.results = results
        up = Metric(results.metric_name).higher_is_better
        self.value = "{:.4f}".format if up else "{:.4g}".format
        self.drop = "{:+.4f}".format if up else "{:+.4g}".format
        self.widths = layer_widths(results)
        self.per_layer = len(results.layers) <= MAX_TABLE_LAYERS
        self.recovered = any(c.metric_before_recovery is not None for c in results.candidates)
        self.timed = results.baseline.latency_ms is not None

    def header(self) -> list[str]:
        r = self.results
        before = ["before recovery"] if self.recovered else []
        kept = [_abbreviate(n) for n in r.layers] if self.per_layer else ["kept"]
        ms = ["ms"] if self.timed else []
        return ["#", "threshold", r.metric_name, "drop", *before, "params", "reduction", *ms, *kept]

    def baseline_row(self) -> list[str]:
        r, b = self.results, self.results.baseline
        kept = [str(self.widths.get(n, "?")) for n in r.layers] if self.per_layer else ["100%"]
        blank = [""] if self.recovered else []
        return [
            "-",
            "baseline",
            self.value(b.metric),
            "",
            *blank,
            f"{b.parameters:,}",
            "",
            *self.latency(b.latency_ms),
            *kept,
            "",
        ]

    def row(self, c: Candidate) -> list[str]:
        r = self.results
        if self.per_layer:
            kept = [str(c.kept.get(n, "?")) for n in r.layers]
        else:
            total = sum(self.widths.values())
            kept = [f"{sum(c.kept.values()) / total:.0%}" if total else "?"]
        marks = ("*" if c.index in r.pareto else " ") + (
            " <- recommended" if c.index == r.recommended else ""
        )
        if c.same_as is not None:
            marks += f" (= #{c.same_as})"
        was = (
            []
            if not self.recovered
            else ["" if c.metric_before_recovery is None else self.value(c.metric_before_recovery)]
        )
        label = threshold_label(c.threshold)
        if r.allocation == Allocation.AUTO:  # the search tried both: say which this probe used
            label += f" {c.allocation}"
        return [
            *(str(c.index), label, self.value(c.metric)),
            *(self.drop(c.metric_drop), *was, f"{c.parameters:,}", f"{c.size_reduction:.1%}"),
            *self.latency(c.latency_ms),
            *kept,
            marks,
        ]

    def latency(self, latency_ms: dict[str, Any] | None) -> list[str]:
        """The latency cell (`budget_figure`, ms), when the run measured latency."""
        if not self.timed:
            return []
        figure = budget_figure(latency_ms)
        return ["" if figure is None else f"{figure:.3g}"]


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
    change = "drop" if Metric(results.metric_name).higher_is_better else "increase"
    budget = f"{results.metric_name} {change} is at most {results.max_metric_drop:g}"
    if results.max_latency_ms is not None:
        budget += f" and latency at most {results.max_latency_ms:g} ms"
    if results.latency is not None:
        lines.append(f"ms: {_measured(results.latency)}")
    chosen = next((c for c in results.candidates if c.index == results.recommended), None)
    if chosen is None:
        lines.append(f"recommended: none, no candidate's {budget}")
    else:
        lines.append(
            f"recommended: #{chosen.index} ({threshold_label(chosen.threshold)}), "
            f"the smallest candidate whose {budget}"
        )
    return lines


def _measured(latency: dict[str, Any]) -> str:
    """How the `ms` column was measured, in a line."""
    where = f"{latency.get('device', '?')}, {latency.get('threads', '?')} threads"
    return f"median ms per forward of one row (a fixed-batch model: of its batch) on {where}"
