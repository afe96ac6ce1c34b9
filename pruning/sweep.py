"""A whole pruning run: statistics, candidates, surgery, evaluation, choice, files.

`run` is what the worker's task and `deadweight prune` both call (with `DataInput`s, which
this module re-exports from `pruning.data`); it takes explicit inputs,
reports progress through callbacks and writes every published file into `out_dir`.
"""

from __future__ import annotations

__all__ = ["CancelFn", "DataInput", "ProgressFn", "resolve_device", "resolve_metric", "run"]

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import fx

from jobs.job_config import STATS_PNG, TRADEOFF_PNG
from pruning import choice
from pruning.candidates import CandidateMaker
from pruning.compensation import gram_taps
from pruning.config import (
    Allocation,
    Criterion,
    Metric,
    PruneConfig,
    Threshold,
)
from pruning.criteria import Ranking, score_rankings, select
from pruning.data import Batch, DataInput, Feeder
from pruning.errors import Cancelled, InvalidConfig
from pruning.evaluate import HIGHER_IS_BETTER, Evaluator, count_macs, count_parameters
from pruning.graph.groups import GraphAnalysis, Tap
from pruning.graph.walk import analyse
from pruning.holdout import split
from pruning.ranking import reconstruction_rankings
from pruning.reader.archive import ArchiveLimits, read_program
from pruning.report import files as report
from pruning.report import plots
from pruning.results import Baseline, Candidate, Results
from pruning.search import PROBES, bisect
from pruning.stats import RunningStats, collect
from pruning.surgery import clone_module

ProgressFn = Callable[[str, float], None]
CancelFn = Callable[[], bool]


@dataclass
class _Context:
    config: PruneConfig
    out_dir: Path
    progress: ProgressFn
    should_cancel: CancelFn

    def check(self) -> None:
        if self.should_cancel():
            raise Cancelled("the job was cancelled")


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when this process can see a GPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_metric(metric: Metric | None, eval_has_labels: bool) -> Metric:
    if metric is None:
        return Metric.ACCURACY if eval_has_labels else Metric.AGREEMENT
    if metric in (Metric.ACCURACY, Metric.MSE) and not eval_has_labels:
        raise InvalidConfig(
            f"metric '{metric}' needs labels (y) in the evaluation data; "
            "use 'agreement' or add labels"
        )
    return metric


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
    ctx = _Context(
        config, out_dir, progress or (lambda s, f: None), should_cancel or (lambda: False)
    )
    calibration, evaluation, data_use = split(config, calibration, evaluation)
    metric = resolve_metric(config.metric, evaluation.has_labels)
    device = resolve_device(config.device)

    ctx.progress("loading", 0.0)
    program = read_program(model_path, ArchiveLimits(max_parameters=config.max_parameters))
    cpu_module = program.module()
    analysis = analyse(cpu_module)
    feeder = Feeder(analysis.inputs, device, config.batch_size)
    module = clone_module(cpu_module).to(device)

    stats = _statistics(ctx, module, analysis, feeder, calibration)
    group_stats = _per_group(analysis, stats)
    layer_stats = [s.to_layer_stats(name) for name, s in group_stats.items()]
    report.write_stats(layer_stats, out_dir)
    drawn = [] if config.search else [t.as_dict() for t in config.thresholds]
    plots.plot_stats(layer_stats, drawn, config.criterion, out_dir / STATS_PNG)

    evaluator = Evaluator(metric, evaluation.source, feeder)
    ctx.progress("baseline", 0.0)
    baseline = _baseline(ctx, program, module, feeder, evaluator, evaluation)
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
    )
    candidates = _candidates(ctx, maker, analysis, group_stats, stats) if group_stats else []
    (out_dir / "plans.json").write_text(json.dumps(maker.plans))

    ctx.progress("publishing", 0.0)
    results = _choose(config, metric, baseline, candidates, analysis, maker.notes, data_use)
    report.write_results(results, out_dir)
    plots.plot_tradeoff(results, out_dir / TRADEOFF_PNG)
    ctx.progress("publishing", 1.0)
    return results


def _per_group(analysis: GraphAnalysis, stats: dict[Tap, RunningStats]) -> dict[str, RunningStats]:
    """A group read in several places (a residual stream) pools the moments of all of them,
    so its std is never below what an average place sees."""
    out = {}
    for g in analysis.prunable:
        taps = g.taps
        merged = stats[taps[0]]
        for tap in taps[1:]:
            merged = merged.merged(stats[tap])
        out[g.name] = merged
    return out


def _statistics(
    ctx: _Context, module: fx.GraphModule, analysis: GraphAnalysis, feeder: Feeder, data: DataInput
) -> dict[Tap, RunningStats]:
    taps = {tap: g.width for g in analysis.prunable for tap in g.taps}
    gram = gram_taps(ctx.config, taps)
    seen = 0

    def on_batch(batch: Batch) -> None:
        nonlocal seen
        seen += batch.valid
        ctx.progress("statistics", min(seen / max(data.samples, 1), 1.0))
        ctx.check()

    ctx.progress("statistics", 0.0)
    return collect(module, taps, feeder(data.source), on_batch, gram=gram)


def _baseline(
    ctx: _Context,
    program: torch.export.ExportedProgram,
    module: fx.GraphModule,
    feeder: Feeder,
    evaluator: Evaluator,
    data: DataInput,
) -> Baseline:
    # The original's size is measured as the service would write it, so sizes compare.
    path = ctx.out_dir / ".baseline.pt2"
    torch.export.save(program, path)
    size = path.stat().st_size
    path.unlink()
    metric = evaluator.evaluate(module, record_reference=True, on_batch=lambda b: ctx.check())
    return Baseline(
        metric=metric,
        parameters=count_parameters(program),
        bytes=size,
        macs=count_macs(module, feeder),
    )


def _candidates(
    ctx: _Context,
    maker: CandidateMaker,
    analysis: GraphAnalysis,
    group_stats: dict[str, RunningStats],
    tap_stats: dict[Tap, RunningStats],
) -> list[Candidate]:
    """A candidate per threshold, or the probes of a budget search."""
    config = ctx.config
    ctx.progress("ranking", 0.0)
    rankings = _rankings(config, maker.cpu_module, analysis, group_stats, tap_stats, ctx.check)
    parts = {g.name: g.parts for g in analysis.prunable}
    auto = config.allocation is Allocation.AUTO
    allocations = [Allocation.GLOBAL, Allocation.UNIFORM] if auto else [config.allocation]
    planned = PROBES * len(allocations) if config.search else len(config.thresholds)

    def candidate(k: int, threshold: Threshold, allocation: Allocation) -> Candidate:
        ctx.check()
        ctx.progress("candidates", k / planned)

        def on_progress(done: float) -> None:
            ctx.progress("candidates", (k + done) / planned)
            ctx.check()

        plan = select(
            config.criterion,
            group_stats,
            threshold,
            parts,
            rankings=rankings,
            allocation=allocation,
        )
        return maker.make(k, threshold.as_dict(), allocation, plan, on_progress)

    if config.search:
        out = _search(candidate, allocations, maker, config.max_metric_drop)
    else:
        out = [candidate(k, t, config.allocation) for k, t in enumerate(config.thresholds)]
    ctx.progress("candidates", 1.0)
    return out


def _search(
    candidate: Callable[[int, Threshold, Allocation], Candidate],
    allocations: list[Allocation],
    maker: CandidateMaker,
    max_drop: float,
) -> list[Candidate]:
    """The probes of one bisection per allocation (two for `auto`), numbered in order."""
    higher = HIGHER_IS_BETTER[maker.metric]
    out: list[Candidate] = []
    for allocation in allocations:

        def probe(k: int, f: float, a: Allocation = allocation, start: int = len(out)) -> Candidate:
            return candidate(start + k, Threshold(fraction=f), a)

        out += bisect(
            probe,
            lambda c: choice.within_budget(maker.baseline.metric, c.metric, max_drop, higher),
        )
    return out


def _rankings(
    config: PruneConfig,
    gm: fx.GraphModule,
    analysis: GraphAnalysis,
    group_stats: dict[str, RunningStats],
    tap_stats: dict[Tap, RunningStats],
    check: Callable[[], None],
) -> dict[str, Ranking]:
    if config.criterion is Criterion.RECONSTRUCTION:
        return reconstruction_rankings(gm, analysis, tap_stats, check)
    return score_rankings(config.criterion, group_stats)


def _choose(
    config: PruneConfig,
    metric: Metric,
    baseline: Baseline,
    candidates: list[Candidate],
    analysis: GraphAnalysis,
    notes: list[str],
    data_use: dict[str, object],
) -> Results:
    higher = HIGHER_IS_BETTER[metric]
    # Duplicates (same keep-set as an earlier candidate) are left out of the choice.
    unique = [c for c in candidates if c.same_as is None]
    points = [(c.metric, c.parameters) for c in unique]
    pareto = choice.pareto_front(points, higher)
    recommended = choice.recommend(baseline.metric, points, config.max_metric_drop, higher)
    notes = list(notes)
    if not analysis.prunable:
        notes.append("nothing in this model can be pruned: every layer is frozen (see 'frozen')")
    elif recommended is None:
        notes.append(f"no candidate stays within max_metric_drop={config.max_metric_drop}")
    return Results(
        metric_name=str(metric),
        criterion=str(config.criterion),
        compensate=str(config.compensate),
        max_metric_drop=config.max_metric_drop,
        baseline=baseline,
        candidates=candidates,
        pareto=sorted(unique[i].index for i in pareto),
        recommended=None if recommended is None else unique[recommended].index,
        layers=[g.name for g in analysis.prunable],
        frozen=[{"name": g.name, "reason": g.frozen_reason or ""} for g in analysis.frozen],
        notes=notes,
        allocation=str(config.allocation),
        search=config.search,
        recovery=None if config.recovery is None else config.recovery.as_dict(),
        data=data_use,
    )
