"""A whole pruning run: statistics, candidates, surgery, evaluation, choice, files.

`run` is what the worker's task and `deadweight prune` both call; it takes explicit inputs,
reports progress through callbacks and writes every published file into `out_dir`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import fx

from pruning import choice, plots, report
from pruning.archive import ArchiveLimits, read_program
from pruning.config import Metric, PruneConfig
from pruning.criteria import Plan, select
from pruning.data import Batch, BatchSource, Feeder
from pruning.errors import Cancelled, InvalidConfig
from pruning.evaluate import HIGHER_IS_BETTER, Evaluator, count_macs, count_parameters
from pruning.graph import analyse
from pruning.groups import GraphAnalysis, Tap
from pruning.results import Baseline, Candidate, Results
from pruning.stats import RunningStats, collect
from pruning.surgery import apply_plan, clone_module, export

ProgressFn = Callable[[str, float], None]
CancelFn = Callable[[], bool]


@dataclass(frozen=True)
class DataInput:
    """A dataset as the run sees it: its batches, how many samples, whether it has labels."""

    source: BatchSource
    samples: int
    has_labels: bool


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
        calibration: data for the statistics.
        evaluation: data for the metric; None: the calibration data.
        config: criterion, thresholds, compensation, metric, batch size, device.
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
    evaluation = evaluation or calibration
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
    plots.plot_stats(
        layer_stats,
        [t.as_dict() for t in config.thresholds],
        config.criterion,
        out_dir / "stats.png",
    )

    evaluator = Evaluator(metric, evaluation.source, feeder)
    ctx.progress("baseline", 0.0)
    baseline = _baseline(ctx, program, module, feeder, evaluator, evaluation)
    candidates = _candidates(
        ctx, cpu_module, analysis, group_stats, stats, feeder, evaluator, baseline, metric
    )

    ctx.progress("publishing", 0.0)
    results = _choose(config, metric, baseline, candidates, analysis)
    report.write_results(results, out_dir)
    plots.plot_tradeoff(results, out_dir / "tradeoff.png")
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
    seen = 0

    def on_batch(batch: Batch) -> None:
        nonlocal seen
        seen += batch.valid
        ctx.progress("statistics", min(seen / max(data.samples, 1), 1.0))
        ctx.check()

    ctx.progress("statistics", 0.0)
    return collect(module, taps, feeder(data.source), on_batch)


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
    cpu_module: fx.GraphModule,
    analysis: GraphAnalysis,
    group_stats: dict[str, RunningStats],
    tap_stats: dict[Tap, RunningStats],
    feeder: Feeder,
    evaluator: Evaluator,
    baseline: Baseline,
    metric: Metric,
) -> list[Candidate]:
    config = ctx.config
    means = {tap: s.mean for tap, s in tap_stats.items()} if config.compensate else None
    higher = HIGHER_IS_BETTER[metric]
    seen: dict[tuple[tuple[str, tuple[int, ...]], ...], Candidate] = {}
    plans: dict[str, Plan] = {}
    out: list[Candidate] = []
    if not group_stats:
        return out
    parts = {g.name: g.parts for g in analysis.prunable}
    for k, threshold in enumerate(config.thresholds):
        ctx.check()
        ctx.progress("candidates", k / len(config.thresholds))
        plan = select(config.criterion, group_stats, threshold, parts)
        plans[str(k)] = plan
        key = tuple((name, tuple(kept)) for name, kept in plan.items())
        if key in seen:
            first = seen[key]
            out.append(replace(first, index=k, threshold=threshold.as_dict(), same_as=first.index))
            continue
        artifact = f"pruned-{k}.pt2"
        pruned = export(apply_plan(cpu_module, analysis, plan, means=means), feeder)
        tmp = ctx.out_dir / f".tmp-{artifact}"
        torch.export.save(pruned, tmp)
        tmp.replace(ctx.out_dir / artifact)
        # Evaluate what users download: the saved file, read back by the safe reader.
        reloaded = read_program(ctx.out_dir / artifact)
        module = reloaded.module().to(feeder.device)
        value = evaluator.evaluate(module, on_batch=lambda b: ctx.check())
        params = count_parameters(reloaded)
        cand = Candidate(
            index=k,
            threshold=threshold.as_dict(),
            metric=value,
            metric_drop=(baseline.metric - value) if higher else (value - baseline.metric),
            parameters=params,
            bytes=(ctx.out_dir / artifact).stat().st_size,
            macs=count_macs(module, feeder),
            size_reduction=1.0 - params / baseline.parameters if baseline.parameters else 0.0,
            kept={name: len(kept) for name, kept in plan.items()},
            kept_fraction={
                name: len(kept) / analysis.group(name).width for name, kept in plan.items()
            },
            artifact=artifact,
        )
        seen[key] = cand
        out.append(cand)
    (ctx.out_dir / "plans.json").write_text(json.dumps(plans))
    ctx.progress("candidates", 1.0)
    return out


def _choose(
    config: PruneConfig,
    metric: Metric,
    baseline: Baseline,
    candidates: list[Candidate],
    analysis: GraphAnalysis,
) -> Results:
    higher = HIGHER_IS_BETTER[metric]
    # Duplicates (same keep-set as an earlier candidate) are left out of the choice.
    unique = [c for c in candidates if c.same_as is None]
    points = [(c.metric, c.parameters) for c in unique]
    pareto = choice.pareto_front(points, higher)
    recommended = choice.recommend(baseline.metric, points, config.max_metric_drop, higher)
    notes: list[str] = []
    if not analysis.prunable:
        notes.append("nothing in this model can be pruned: every layer is frozen (see 'frozen')")
    elif recommended is None:
        notes.append(f"no candidate stays within max_metric_drop={config.max_metric_drop}")
    return Results(
        metric_name=str(metric),
        criterion=str(config.criterion),
        compensate=config.compensate,
        max_metric_drop=config.max_metric_drop,
        baseline=baseline,
        candidates=candidates,
        pareto=sorted(unique[i].index for i in pareto),
        recommended=None if recommended is None else unique[recommended].index,
        layers=[g.name for g in analysis.prunable],
        frozen=[{"name": g.name, "reason": g.frozen_reason or ""} for g in analysis.frozen],
        notes=notes,
    )
