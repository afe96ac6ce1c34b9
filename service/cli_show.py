"""What the remote commands print: a job as one line, a results table, and the progress bar
drawn on stderr while a job runs (plain text: one redrawn line on a terminal, a line per
change of stage in a log)."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from deadweight_client import JobView

BAR_WIDTH = 30


def job_line(job: JobView) -> str:
    """`<id>  <status>  <stage> <percent>  <created>` (and the error of a failed job)."""
    record = job.record
    progress = job.progress
    line = (
        f"{job.id}  {job.status:<9}  {progress['stage']:<11} {progress['fraction']:>4.0%}  "
        f"{record.get('created_at', '')}"
    )
    return f"{line}\n  error: {job.error}" if job.error else line


class ProgressBar:
    """`on_progress` for `Job.wait`: `[#######.......]  45%  statistics  (job 3f2a…)`."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last: tuple[str, str] | None = None

    def __call__(self, job: JobView) -> None:
        stage, fraction = job.progress["stage"], job.progress["fraction"]
        filled = round(BAR_WIDTH * min(max(fraction, 0.0), 1.0))
        bar = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction:>4.0%}"
        text = f"{bar}  {job.status}: {stage}  (job {job.id})"
        if self.tty:
            end = "\n" if job.done else ""
            self.stream.write(f"\r{text:<100}{end}")
        elif (job.status, stage) != self._last or job.done:
            # A log gets a line per stage, not one per poll.
            self.stream.write(text + "\n")
        self._last = (job.status, stage)
        self.stream.flush()


def results_table(results: dict[str, Any]) -> str:
    """The sweep as a fixed-width table, the recommended row marked."""
    metric = str(results.get("metric", "metric"))
    baseline = results.get("baseline", {})
    rows = [["#", "threshold", metric, "drop", "params", "reduction", ""]]
    rows.append(["-", "baseline", _number(baseline.get("metric")), "", _count(baseline), "", ""])
    pareto = set(results.get("pareto") or [])
    for c in results.get("candidates", []):
        marks = ["*" if c["index"] in pareto else ""]
        if c["index"] == results.get("recommended"):
            marks.append("<- recommended")
        rows.append(
            [
                str(c["index"]),
                _threshold(c.get("threshold")),
                _number(c.get("metric")),
                f"{c.get('metric_drop', 0):+.4f}",
                _count(c),
                f"{c.get('size_reduction', 0):.1%}",
                " ".join(m for m in marks if m),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines) + "\n* Pareto front (metric vs parameters)"


def _threshold(threshold: Any) -> str:
    if not isinstance(threshold, dict):
        return str(threshold or "")
    if threshold.get("fraction") is not None:
        return f"fraction {threshold['fraction']:g}"
    return " ".join(f"{k} {v:g}" for k, v in threshold.items() if isinstance(v, int | float))


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else ""


def _count(row: Any) -> str:
    value = row.get("parameters") if isinstance(row, dict) else None
    return f"{value:,}" if isinstance(value, int) else ""
