"""Scoring a program on evaluation data: metric, parameters, MACs — streamed batch by batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import fx

from jobs.job_config import Metric
from pruning.data import Batch, BatchSource, Feeder
from pruning.errors import InvalidDataset


def first_output(out: object) -> torch.Tensor:
    """The model's first output tensor (models may return tuples)."""
    while isinstance(out, (tuple, list)):
        if not out:
            raise InvalidDataset("the model returns no tensor")
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise InvalidDataset(f"the model returns {type(out).__name__}, not a tensor")
    return out


@dataclass
class Evaluator:
    """Evaluates modules on one dataset with one metric.

    For `agreement` the original model's top-1 predictions are the reference; they are
    recorded by `evaluate(..., record_reference=True)` on the original module first.
    """

    metric: Metric
    source: BatchSource
    feeder: Feeder
    reference: list[torch.Tensor] = field(default_factory=list)  # top-1 per batch
    # Distinct top-1 classes the last evaluated module predicted (classifiers; None for MSE):
    # a model that predicts one class is worth a note, whatever its metric.
    predicted_classes: int | None = None

    def evaluate(
        self,
        module: Callable[..., object],
        *,
        record_reference: bool = False,
        on_batch: Callable[[Batch], None] | None = None,
    ) -> float:
        """The metric of `module` over the whole dataset."""
        total = 0.0
        count = 0
        classes: set[int] = set()
        with torch.inference_mode():
            for i, batch in enumerate(self.feeder(self.source)):
                out = first_output(module(*batch.inputs))[: batch.valid]
                if record_reference:
                    self.reference.append(out.argmax(dim=-1).cpu())
                if self.metric is not Metric.MSE and out.dim() >= 2:
                    classes.update(torch.unique(out.argmax(dim=-1)).tolist())
                value, n = self._batch_metric(out, batch, i)
                total += value
                count += n
                if on_batch is not None:
                    on_batch(batch)
        if count == 0:
            raise InvalidDataset("the evaluation dataset is empty")
        self.predicted_classes = len(classes) if classes else None
        return total / count

    def _batch_metric(self, out: torch.Tensor, batch: Batch, index: int) -> tuple[float, int]:
        if self.metric is Metric.AGREEMENT:
            pred = out.argmax(dim=-1).cpu()
            return float((pred == self.reference[index]).sum()), pred.numel()
        if batch.y is None:
            raise InvalidDataset(f"metric '{self.metric}' needs labels (y) in the evaluation data")
        y = batch.y
        if self.metric is Metric.ACCURACY:
            if out.dim() < 2:
                raise InvalidDataset("accuracy needs class scores (B, classes) from the model")
            pred = out.argmax(dim=-1).cpu()
            if y.shape != pred.shape:
                raise InvalidDataset(
                    f"labels have shape {list(y.shape[1:])} per sample, "
                    f"predictions {list(pred.shape[1:])}"
                )
            check_class_labels(y, out.shape[-1])
            return float((pred == y.to(pred.dtype)).sum()), pred.numel()
        target = (
            y.to(out.device, torch.float64).reshape(out.shape) if y.numel() == out.numel() else None
        )
        if target is None:
            raise InvalidDataset(
                f"mse targets have {y.numel() // max(len(y), 1)} values per sample, "
                f"the model outputs {out.numel() // max(len(out), 1)}"
            )
        err = (out.to(torch.float64) - target) ** 2
        # Mean over output values per sample, summed over samples: averaged per sample later.
        per_sample = err.reshape(len(out), -1).mean(dim=1)
        return float(per_sample.sum()), len(out)


def check_class_labels(y: torch.Tensor, classes: int) -> None:
    """Labels a classifier with `classes` outputs can be scored or trained against.

    Raises:
        InvalidDataset: float targets, or a label outside 0..classes-1 (a job would
            otherwise score nothing right, or fail deep in the loss).
    """
    if y.is_floating_point():
        raise InvalidDataset(
            "accuracy needs integer class labels, and these labels are float targets: "
            "save y as integers, or use metric 'mse' for regression"
        )
    bad = (y < 0) | (y >= classes)
    if bool(bad.any()):
        raise InvalidDataset(
            f"label {int(y[bad][0])} is not one of the model's {classes} classes "
            f"(0..{classes - 1}): fix the labels, or check that this data belongs to this model"
        )


def count_parameters(program: torch.export.ExportedProgram) -> int:
    return sum(p.numel() for p in program.parameters())


_aten = torch.ops.aten
_CONVS = (_aten.conv1d.default, _aten.conv2d.default, _aten.conv3d.default)
# A Linear after `run_decompositions()`: `addmm(b, x, W.T)`, `mm(x, W.T)`, `bmm(x, W.T)`;
# the value is the position of the activation operand (the weight's follows it).
_WEIGHT_PRODUCTS: dict[object, int] = {
    _aten.addmm.default: 1,
    _aten.mm.default: 0,
    _aten.bmm.default: 0,
}
# What a decomposition puts between a weight and the product that reads it.
_WEIGHT_VIEWS = (
    _aten.t.default,
    _aten.permute.default,
    _aten.transpose.int,
    _aten.expand.default,
    _aten.view.default,
    _aten._unsafe_view.default,
    _aten.reshape.default,
    _aten.clone.default,
    _aten.contiguous.default,
)


def _is_weight(node: object) -> bool:
    """`node` is a stored tensor, seen through views: a layer's weight, not an activation."""
    while isinstance(node, fx.Node):
        if node.op == "get_attr":
            return True
        if node.op != "call_function" or node.target not in _WEIGHT_VIEWS:
            return False
        node = node.args[0]
    return False


class _MacCounter(fx.Interpreter):
    """Counts the layers' multiply-accumulates as it runs: Linear and convolutions, also in
    their decomposed forms (a product of an activation and a weight). Products of two
    activations (attention's scores and mixing) are not layers and are not counted, in
    either form, so a program and its decomposition count alike."""

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.macs = 0

    def run_node(self, n: fx.Node) -> object:
        result = super().run_node(n)
        if n.op == "call_function" and isinstance(result, torch.Tensor):
            self.macs += self._layer_macs(n, result)
        return result

    def _layer_macs(self, n: fx.Node, result: torch.Tensor) -> int:
        if n.target is _aten.linear.default:
            weight = self.env[n.args[1]]  # type: ignore[index]
            return result.numel() * int(weight.shape[1])
        if n.target in _CONVS:
            weight = self.env[n.args[1]]  # type: ignore[index]
            return result.numel() * int(weight[0].numel())
        if n.target is _aten.convolution.default:
            weight = self.env[n.args[1]]  # type: ignore[index]
            if n.args[6]:  # transposed: each input element meets a (C_out/g, *k) slice
                source = self.env[n.args[0]]  # type: ignore[index]
                return int(source.numel()) * int(weight[0].numel())
            return result.numel() * int(weight[0].numel())
        first = _WEIGHT_PRODUCTS.get(n.target)
        if first is not None and _is_weight(n.args[first + 1]):
            rows = self.env[n.args[first]]  # type: ignore[index]
            return result.numel() * int(rows.shape[-1])
        return 0


def run_counting_macs(
    gm: fx.GraphModule, inputs: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, int]:
    """The module's first output on `inputs`, and the multiply-accumulates of its Linear/Conv
    layers (also decomposed) over all of the inputs' rows (the same kernels, in the same
    order, as a forward)."""
    counter = _MacCounter(gm)
    with torch.inference_mode():
        out = first_output(counter.run(*inputs))
    return out, counter.macs


def count_macs(gm: fx.GraphModule, feeder: Feeder) -> int:
    """Multiply-accumulates of Linear/Conv layers for one sample."""
    example = feeder.example()
    _, macs = run_counting_macs(gm, tuple(t.to(feeder.device) for t in example))
    batch = int(example[0].shape[0]) if example[0].dim() else 1
    return macs // max(batch, 1)
