"""A whole pruning run: read, statistics, baseline, candidates, choice, published files.

`run` is what `worker/engine_process.py`, the engine's sandboxed child, calls (and
`deadweight prune` through it), with `DataInput`s, which this module re-exports from
`pruning.data`; it takes explicit inputs, reports progress through callbacks and writes
every published file into `out_dir`. This module is the orchestration; each stage is a
function of `pruning.sweep_stages`.
"""

from __future__ import annotations

__all__ = ["CancelFn", "DataInput", "ProgressFn", "resolve_device", "run"]

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from jobs.job_config import PLANS_JSON, STATS_PNG, TRADEOFF_PNG, resolve_metric
from pruning.candidates import CandidateMaker
from pruning.config import PruneConfig
from pruning.data import DataInput, Feeder
from pruning.errors import InvalidConfig
from pruning.evaluate import Evaluator
from pruning.graph import analyse
from pruning.holdout import split
from pruning.latency import LatencyMeter
from pruning.reader import ArchiveLimits, read_program
from pruning.report import plot_stats, plot_tradeoff, write_report, write_results, write_stats
from pruning.results import Results
from pruning.surgery import clone_module
from pruning.sweep_stages import (
    CancelFn,
    ProgressFn,
    RunContext,
    choose,
    make_candidates,
    measure_baseline,
    measure_statistics,
    pool_groups,
)


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when this process can see a GPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def run(
    model_path: Path,
    calibration: DataInput,
    evaluation: DataInput | None,
    config: PruneConfig,
    out_dir: Path,
    *,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> Results:
    """Prune a `.pt2` program and publish the results into `out_dir`.

    Args:
        model_path: the uploaded program (read with the safe reader).
        calibration: data for the statistics (and recovery's training).
        evaluation: data for the metric; None: the calibration data, or with recovery a
            seeded hold-out part of it (`HOLDOUT_FRACTION`), never trained on.
        config: criterion, thresholds or search, compensation, recovery, metric, device.
        out_dir: existing folder that receives results, stats, plots and pruned programs.
        progress: called with (stage, fraction of the stage done).
        should_cancel: polled between batches and candidates.

    Returns:
        The results table, also written to `out_dir/results.json`.

    Raises:
        UnsafeModel, UnsupportedModel, InvalidDataset, InvalidConfig, Cancelled.
    """
    ctx = RunContext(
        config, out_dir, progress or (lambda s, f: None), should_cancel or (lambda: False)
    )
    calibration, evaluation, data_use = split(config, calibration, evaluation)
    try:
        metric = resolve_metric(config.metric, evaluation.has_labels)
    except ValueError as exc:
        raise InvalidConfig(str(exc)) from None
    device = resolve_device(config.device)

    ctx.progress("loading", 0.0)
    program = read_program(model_path, ArchiveLimits(max_parameters=config.max_parameters))
    cpu_module = program.module()
    analysis = analyse(cpu_module)
    feeder = Feeder(analysis.inputs, device, config.batch_size)
    module = clone_module(cpu_module).to(device)

    stats = measure_statistics(ctx, module, analysis, feeder, calibration)
    group_stats = pool_groups(analysis, stats)
    layer_stats = [s.to_layer_stats(name) for name, s in group_stats.items()]
    write_stats(layer_stats, out_dir)
    drawn = [] if config.search else [t.as_dict() for t in config.thresholds]
    # The statistics plot is drawn beside the rest of the run, off its critical path: the
    # baseline's and the candidates' forwards and the ranking's algebra release the GIL.
    # Leaving the block waits for it, also when the run stops early (a cancellation).
    with ThreadPoolExecutor(1, thread_name_prefix="stats-plot") as beside:
        stats_plot = beside.submit(
            plot_stats, layer_stats, drawn, config.criterion, out_dir / STATS_PNG
        )

        evaluator = Evaluator(metric, evaluation.source, feeder)
        # Timings wait for the plot: a thread drawing beside them would slow what they time.
        meter = (
            LatencyMeter.of(feeder, evaluation.source, quiet=stats_plot.result)
            if config.measure_latency
            else None
        )
        ctx.progress("baseline", 0.0)
        baseline = measure_baseline(ctx, program, module, feeder, evaluator, meter)
        maker = CandidateMaker(
            config=config,
            out_dir=out_dir,
            cpu_module=cpu_module,
            teacher=module,
            analysis=analysis,
            moments=stats,
            feeder=feeder,
            evaluator=evaluator,
            baseline=baseline,
            metric=metric,
            training=calibration,
            baseline_classes=evaluator.predicted_classes,
            latency=meter,
        )
        baseline = maker.copy_baseline(program)  # formats with onnx: baseline.onnx, or a note
        candidates = (
            make_candidates(ctx, maker, analysis, group_stats, stats) if group_stats else []
        )
        (out_dir / PLANS_JSON).write_text(json.dumps(maker.plans))

        ctx.progress("publishing", 0.0)
        results = choose(
            config,
            metric,
            baseline,
            candidates,
            analysis,
            maker.notes,
            data_use,
            latency=None if meter is None else meter.settings(),
        )
        write_results(results, out_dir)
        plot_tradeoff(results, out_dir / TRADEOFF_PNG)
        stats_plot.result()  # its failure is the run's
    write_report(out_dir)  # last: it links every file the run wrote
    ctx.progress("publishing", 1.0)
    return results
