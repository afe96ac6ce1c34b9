"""One candidate, from plan to published file: cut (with compensation), recover, export,
save, read back with the safe reader, evaluate. The numbers are those of the file users get.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import fx

from jobs.job_config import Allocation, Metric, pruned_model_name
from pruning.batchnorm import has_batchnorm, reestimate_batchnorm
from pruning.config import PruneConfig
from pruning.data import DataInput, Feeder
from pruning.evaluate import Evaluator, count_macs, count_parameters
from pruning.graph import GraphAnalysis, Plan, Tap
from pruning.reader import read_program
from pruning.recovery import distil
from pruning.results import Baseline, Candidate
from pruning.stats import RunningStats
from pruning.surgery import apply_plan, export

StageFn = Callable[[float], None]  # fraction of the current candidate done; may raise Cancelled


@dataclass
class CandidateMaker:
    """Turns plans into evaluated, published candidates; identical keep-sets are made once."""

    config: PruneConfig
    out_dir: Path
    cpu_module: fx.GraphModule
    teacher: fx.GraphModule  # the original on the job's device (recovery's reference)
    analysis: GraphAnalysis
    moments: Mapping[Tap, RunningStats]
    feeder: Feeder
    evaluator: Evaluator
    baseline: Baseline
    metric: Metric
    training: DataInput  # what recovery trains on: the calibration data (minus any hold-out)
    baseline_classes: int | None = None  # distinct top-1 classes the original predicts
    plans: dict[str, Plan] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _seen: dict[tuple[tuple[str, tuple[int, ...]], ...], Candidate] = field(default_factory=dict)

    def make(
        self,
        index: int,
        threshold: dict[str, float],
        allocation: Allocation,
        plan: Plan,
        on_progress: StageFn,
    ) -> Candidate:
        """Cut, recover, publish and evaluate one plan as candidate `index`."""
        self.plans[str(index)] = plan
        key = tuple((name, tuple(kept)) for name, kept in plan.items())
        if key in self._seen:
            first = self._seen[key]
            return replace(
                first,
                index=index,
                threshold=threshold,
                allocation=str(allocation),
                same_as=first.index,
            )
        module = apply_plan(
            self.cpu_module,
            self.analysis,
            plan,
            moments=self.moments,
            compensate=self.config.compensate,
        ).to(self.feeder.device)
        before, report = None, None
        if self.config.recovery is not None:
            before = self.evaluator.evaluate(module, on_batch=lambda b: on_progress(0.0))
            report = self._recover(module, on_progress)
            if report["diverged"]:
                self.notes.append(
                    f"candidate {index}: recovery diverged (a non-finite loss), so it keeps the "
                    "weights from before recovery; a smaller recovery lr may help"
                )
        artifact = pruned_model_name(index)
        pruned = export(module, self.feeder)
        tmp = self.out_dir / f".tmp-{artifact}"
        torch.export.save(pruned, tmp)
        tmp.replace(self.out_dir / artifact)
        # Evaluate what users download: the saved file, read back by the safe reader.
        reloaded = read_program(self.out_dir / artifact)
        loaded = reloaded.module().to(self.feeder.device)
        value = self.evaluator.evaluate(loaded, on_batch=lambda b: on_progress(1.0))
        self._note_degenerate(index, plan)
        params = count_parameters(reloaded)
        higher = self.metric.higher_is_better
        base = self.baseline
        cand = Candidate(
            index=index,
            threshold=threshold,
            metric=value,
            metric_drop=(base.metric - value) if higher else (value - base.metric),
            parameters=params,
            bytes=(self.out_dir / artifact).stat().st_size,
            macs=count_macs(loaded, self.feeder),
            size_reduction=1.0 - params / base.parameters if base.parameters else 0.0,
            kept={name: len(kept) for name, kept in plan.items()},
            kept_fraction={
                name: len(kept) / self.analysis.group(name).width for name, kept in plan.items()
            },
            artifact=artifact,
            metric_before_recovery=before,
            recovery=report,
            allocation=str(allocation),
        )
        self._seen[key] = cand
        return cand

    def _recover(self, module: fx.GraphModule, on_progress: StageFn) -> dict[str, object]:
        recovery = self.config.recovery
        assert recovery is not None
        recalibrated = 0
        if has_batchnorm(module):
            recalibrated = reestimate_batchnorm(module, self.feeder(self.training.source))
        report = distil(
            module,
            self.teacher,
            self.training.source,
            self.training.samples,
            self.feeder,
            recovery,
            self.metric,
            seed=self.config.seed,
            on_step=on_progress,
        )
        return {
            "batchnorm_reestimated": recalibrated,
            "epochs": round(report.epochs, 4),
            "steps": report.steps,
            "seconds": round(report.seconds, 3),
            "stopped_early": report.stopped_early,
            "final_loss": report.final_loss,
            "diverged": report.diverged,
        }

    def _note_degenerate(self, index: int, plan: Plan) -> None:
        single = [
            name
            for name, kept in plan.items()
            if len(kept) == 1 and self.analysis.group(name).width > 1
        ]
        if single:
            self.notes.append(f"candidate {index} leaves {', '.join(single)} with a single neuron")
        classes = self.evaluator.predicted_classes
        if classes == 1 and (self.baseline_classes or 0) > 1:
            self.notes.append(f"candidate {index} predicts a single class for every sample")
