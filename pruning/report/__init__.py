"""What a job publishes, and how the CLI shows it.

    files.py          results and statistics as JSON and CSV; `write_atomic` (write, then rename)
    table.py          the sweep as the CLI's fixed-width text table (`format_table`)
    stats_plot.py     stats.png: each layer's neurons, |mean| against std, with the thresholds
    tradeoff_plot.py  tradeoff.png: metric against parameters, the Pareto front, the choice
    figures.py        what the plots share: a Figure saved as PNG without pyplot
    labels.py         a threshold as users type it; each layer's original width
    report_html.py    report.html: one self-contained page (summary, charts, tables, links)
    report_tables.py  its tables: candidates, kept neurons per layer, frozen groups, files
    svg_charts.py     its charts as inline SVG: metric vs. parameters/latency, stats per layer
    svg_canvas.py     what the charts draw with: escaped SVG elements, scales, ticks
    label_placement.py  point labels that never overlap (greedy spots, then a gutter)

The names of the published files are the job's vocabulary, in `jobs.job_config`.
"""

from pruning.report.files import write_results, write_stats
from pruning.report.report_html import write_report
from pruning.report.stats_plot import plot_stats
from pruning.report.table import format_table
from pruning.report.tradeoff_plot import plot_tradeoff

__all__ = [
    "format_table",
    "plot_stats",
    "plot_tradeoff",
    "write_report",
    "write_results",
    "write_stats",
]
