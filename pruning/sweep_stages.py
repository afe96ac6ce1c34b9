"""The stages of a run, in the order `pruning.sweep.run` calls them: statistics (pooled per
group), the baseline, the candidates (one per threshold, or the probes of a budget search),
and the choice that turns them into the results table.

Each stage reports progress and polls for cancellation through a `RunContext`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import fx

from jobs.job_config import Allocation, Criterion, Metric
from pruning import choice
from pruning.candidates import CandidateMaker
from pruning.compensation import gram_taps
from pruning.config import PruneConfig, Threshold
from pruning.criteria import Ranking, score_rankings, select
from pruning.data import Batch, DataInput, Feeder
from pruning.errors import Cancelled
from pruning.evaluate import Evaluator, count_parameters
from pruning.graph import GraphAnalysis, Tap
from pruning.latency import LatencyMeter
from pruning.publishing import size_and_macs
from pruning.ranking import reconstruction_rankings
from pruning.results import Baseline, Candidate, Results
from pruning.search import PROBES, bisect
from pruning.stats import RunningStats, collect

ProgressFn = Callable[[str, float], None]  # (stage, fraction of the stage done)
CancelFn = Callable[[], bool]  # True: stop at the next check


@dataclass
class RunContext:
    """What every stage of a run needs besides its inputs: the job's configuration, the
    output folder, and how to report progress and notice cancellation."""

    config: PruneConfig
    out_dir: Path
    progress: ProgressFn
    should_cancel: CancelFn

    def check(self) -> None:
        """Raise `Cancelled` if the job was cancelled."""
        if self.should_cancel():
            raise Cancelled("the job was cancelled")


def pool_groups(analysis: GraphAnalysis, stats: dict[Tap, RunningStats]) -> dict[str, RunningStats]:
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


def measure_statistics(
    ctx: RunContext,
    module: fx.GraphModule,
    analysis: GraphAnalysis,
    feeder: Feeder,
    data: DataInput,
) -> dict[Tap, RunningStats]:
    """Every tap's moments over the calibration data (and its Gram matrix, where linear
    compensation or the reconstruction criterion needs one)."""
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


def measure_baseline(
    ctx: RunContext,
    program: torch.export.ExportedProgram,
    module: fx.GraphModule,
    feeder: Feeder,
    evaluator: Evaluator,
    meter: LatencyMeter | None = None,
) -> Baseline:
    """The original model's metric, size, cost and (with a meter) latency, measured as a
    candidate's are."""
    # The original's size is measured as the service would write it, so sizes compare; the
    # save (and the MAC count) run beside the evaluation.
    with ThreadPoolExecutor(1, thread_name_prefix="deadweight-baseline") as pool:
        measured = pool.submit(
            size_and_macs, program, module, feeder, ctx.out_dir / ".baseline.pt2"
        )
        metric = evaluator.evaluate(module, record_reference=True, on_batch=lambda b: ctx.check())
        size, macs = measured.result()
    latency = None if meter is None else meter.measure(module).as_dict()  # nothing beside it
    return Baseline(
        metric=metric,
        parameters=count_parameters(program),
        bytes=size,
        macs=macs,
        latency_ms=latency,
    )


def make_candidates(
    ctx: RunContext,
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
    neurons = {g.name: g.neurons_per_unit for g in analysis.prunable}
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
            neurons=neurons,
        )
        return maker.make(k, threshold.as_dict(), allocation, plan, on_progress)

    try:
        if config.search:
            out = _search(candidate, allocations, maker, config.max_metric_drop)
        else:
            out = [candidate(k, t, config.allocation) for k, t in enumerate(config.thresholds)]
        out = maker.finish(out)  # the files' own numbers, once all are published
    finally:
        maker.close()
    ctx.progress("candidates", 1.0)
    return out


def _search(
    candidate: Callable[[int, Threshold, Allocation], Candidate],
    allocations: list[Allocation],
    maker: CandidateMaker,
    max_drop: float,
) -> list[Candidate]:
    """The probes of one bisection per allocation (two for `auto`), numbered in order."""
    higher = maker.metric.higher_is_better
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


def choose(
    config: PruneConfig,
    metric: Metric,
    baseline: Baseline,
    candidates: list[Candidate],
    analysis: GraphAnalysis,
    notes: list[str],
    data_use: dict[str, object],
    latency: dict[str, object] | None = None,
) -> Results:
    """The results table: the candidates, their Pareto front, the recommendation and notes."""
    higher = metric.higher_is_better
    # Duplicates (same keep-set as an earlier candidate) are left out of the choice.
    unique = [c for c in candidates if c.same_as is None]
    points = [(c.metric, c.parameters) for c in unique]
    pareto = choice.pareto_front(points, higher)
    recommended = choice.recommend(
        baseline.metric,
        points,
        config.max_metric_drop,
        higher,
        latencies=[choice.budget_figure(c.latency_ms) for c in unique],
        max_latency_ms=config.max_latency_ms,
    )
    notes = list(notes)
    if not analysis.prunable:
        notes.append("nothing in this model can be pruned: every layer is frozen (see 'frozen')")
    elif recommended is None:
        budgets = f"max_metric_drop={config.max_metric_drop}"
        if config.max_latency_ms is not None:
            budgets += f" and max_latency_ms={config.max_latency_ms:g}"
        notes.append(f"no candidate stays within {budgets}")
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
        max_latency_ms=config.max_latency_ms,
        latency=latency,
    )
