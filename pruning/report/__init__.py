"""What a job publishes, and how the CLI shows it.

    files.py          results and statistics as JSON and CSV; `write_atomic` (write, then rename)
    table.py          the sweep as the CLI's fixed-width text table (`format_table`)
    stats_plot.py     stats.png: each layer's neurons, |mean| against std, with the thresholds
    tradeoff_plot.py  tradeoff.png: metric against parameters, the Pareto front, the choice
    figures.py        what the plots share: a Figure saved as PNG without pyplot
    labels.py         a threshold as users type it; each layer's original width

The names of the published files are the job's vocabulary, in `jobs.job_config`.
"""

from pruning.report.files import write_results, write_stats
from pruning.report.stats_plot import plot_stats
from pruning.report.table import format_table
from pruning.report.tradeoff_plot import plot_tradeoff

__all__ = ["format_table", "plot_stats", "plot_tradeoff", "write_results", "write_stats"]
