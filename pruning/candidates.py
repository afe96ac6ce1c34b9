"""One candidate, from plan to published file: cut (with compensation), recover, evaluate in
memory, export; the file is saved, read back with the safe reader and checked against the
evaluated module in the background (`pruning.publishing`). The numbers are those of the file
users get: `CandidateMaker.finish` puts the file's own in place of the provisional ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import fx

from jobs.job_config import Allocation, Format, Metric, pruned_model_name
from pruning.batchnorm import has_batchnorm, reestimate_batchnorm
from pruning.config import PruneConfig
from pruning.data import DataInput, Feeder
from pruning.evaluate import Evaluator, first_output
from pruning.graph import GraphAnalysis, Plan, Tap
from pruning.latency import LatencyMeter
from pruning.onnx_export import OnnxCopies
from pruning.publishing import CHECK_ROWS, Published, Publisher
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
    latency: LatencyMeter | None = None  # None: latency is not measured
    plans: dict[str, Plan] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _seen: dict[tuple[tuple[str, tuple[int, ...]], ...], Candidate] = field(default_factory=dict)
    _publisher: Publisher = field(default_factory=Publisher)
    _check: tuple[torch.Tensor, ...] | None = None  # evaluation rows the file is checked on
    _onnx: OnnxCopies | None = None  # made on first use, when the job's formats include onnx

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
        train = self.config.recovery is not None
        module = apply_plan(
            self.cpu_module,
            self.analysis,
            plan,
            moments=self.moments,
            compensate=self.config.compensate,
            share_parameters=not train,  # nothing writes into a copy that is not trained
        ).to(self.feeder.device)
        before, report = None, None
        if train:
            before = self.evaluator.evaluate(module, on_batch=lambda b: on_progress(0.0))
            report = self._recover(module, on_progress)
            if report["diverged"]:
                self.notes.append(
                    f"candidate {index}: recovery diverged (a non-finite loss), so it keeps the "
                    "weights from before recovery; a smaller recovery lr may help"
                )
        value = self.evaluator.evaluate(module, on_batch=lambda b: on_progress(1.0))
        self._note_degenerate(index, plan)
        check = self._check_rows()
        with torch.inference_mode():
            expected = first_output(module(*check))
        latency = None
        if self.latency is not None:
            # Timed while nothing else of the run computes: the file before is published.
            self._publisher.wait()
            latency = self.latency.measure(module).as_dict()
        artifact = pruned_model_name(index)
        program = export(module, self.feeder)
        self._publisher.submit(index, program, module, self.out_dir / artifact, check, expected)
        copies = self._onnx_copies()
        onnx = None if copies is None else copies.write(index, program)
        # Provisional until `finish`: the parameters as the module holds them; bytes and
        # MACs are the file's, measured in the background.
        params = sum(p.numel() for p in module.parameters())
        base = self.baseline
        cand = Candidate(
            index=index,
            threshold=threshold,
            metric=value,
            metric_drop=self._drop(value),
            parameters=params,
            bytes=0,
            macs=0,
            size_reduction=1.0 - params / base.parameters if base.parameters else 0.0,
            kept={name: len(kept) for name, kept in plan.items()},
            kept_fraction={
                name: len(kept) / self.analysis.group(name).width for name, kept in plan.items()
            },
            artifact=artifact,
            metric_before_recovery=before,
            recovery=report,
            allocation=str(allocation),
            latency_ms=latency,
            onnx=onnx,
        )
        self._seen[key] = cand
        return cand

    def copy_baseline(self, program: torch.export.ExportedProgram) -> Baseline:
        """With formats onnx, the original `program`'s checked ONNX copy into `baseline` (or a
        note saying why there is none). Returns the baseline, with its copy or without."""
        copies = self._onnx_copies()
        if copies is not None:
            self.baseline = replace(self.baseline, onnx=copies.write_baseline(program))
        return self.baseline

    def finish(self, candidates: list[Candidate]) -> list[Candidate]:
        """The candidates with their files' numbers, once every file is published and checked.

        Raises:
            PublishedFileDiffers: a file computes something else than its evaluated module.
        """
        published = self._publisher.results()
        final: dict[int, Candidate] = {}
        out = []
        for cand in candidates:
            if cand.same_as is None:
                final[cand.index] = self._measured(cand, published[cand.index])
                out.append(final[cand.index])
            else:
                first = final[cand.same_as]
                out.append(
                    replace(
                        first,
                        index=cand.index,
                        threshold=cand.threshold,
                        allocation=cand.allocation,
                        same_as=cand.same_as,
                    )
                )
        return out

    def close(self) -> None:
        """Stop the background publishing (waits for a file being written)."""
        self._publisher.close()

    def _measured(self, cand: Candidate, file: Published) -> Candidate:
        value = cand.metric
        if file.differing is not None:  # the file is evaluated on its own
            value = self.evaluator.evaluate(file.differing)
        base = self.baseline
        return replace(
            cand,
            metric=value,
            metric_drop=self._drop(value),
            parameters=file.parameters,
            bytes=file.bytes,
            macs=file.macs,
            size_reduction=1.0 - file.parameters / base.parameters if base.parameters else 0.0,
        )

    def _drop(self, value: float) -> float:
        base = self.baseline.metric
        return (base - value) if self.metric.higher_is_better else (value - base)

    def _onnx_copies(self) -> OnnxCopies | None:
        if Format.ONNX not in self.config.formats:
            return None
        if self._onnx is None:
            self._onnx = OnnxCopies(self.out_dir, self.feeder, self.evaluator.source, self.notes)
        return self._onnx

    def _check_rows(self) -> tuple[torch.Tensor, ...]:
        """The first evaluation rows (a whole batch where the model's batch is fixed)."""
        if self._check is None:
            first = next(iter(self.feeder(self.evaluator.source)))  # evaluate() saw it
            static = self.feeder.static_batch is not None
            rows = len(first.inputs[0]) if static else min(first.valid, CHECK_ROWS)
            self._check = tuple(t[:rows] for t in first.inputs)
        return self._check

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
