"""Cutting neurons out for real: sliced weights, a smaller dense program, not a mask.

For each group of a plan, the producer keeps the weight rows and bias entries of the kept
neurons, every per-channel tensor in between (BatchNorm) is sliced alike, and each consumer
keeps the matching input columns. With compensation, the removed neurons' mean activations
are folded into each consumer's bias first (`b += W[:, removed] @ mean[removed]`, Evci et
al. 2018): exact for a constant neuron feeding a Linear layer.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping

import torch
from torch import fx

from pruning.criteria import Plan
from pruning.data import Feeder
from pruning.errors import UnsupportedModel
from pruning.graph import GraphAnalysis, LinearUse


def clone_module(gm: fx.GraphModule) -> fx.GraphModule:
    """A deep copy of an unlifted module.

    torch 2.13 emits a FutureWarning about its own pytree specs when they are copied; it
    says nothing to a user, so it is silenced here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*LeafSpec.*is deprecated", category=FutureWarning
        )
        return copy.deepcopy(gm)


def _owner(gm: fx.GraphModule, path: str) -> tuple[torch.nn.Module, str]:
    module_path, _, attr = path.rpartition(".")
    return (gm.get_submodule(module_path) if module_path else gm), attr


def get_tensor(gm: fx.GraphModule, path: str) -> torch.Tensor:
    owner, attr = _owner(gm, path)
    value = getattr(owner, attr)
    assert isinstance(value, torch.Tensor)
    return value


def set_tensor(gm: fx.GraphModule, path: str, value: torch.Tensor) -> None:
    """Replace a parameter or buffer, keeping its kind."""
    owner, attr = _owner(gm, path)
    if attr in owner._parameters:
        old = owner._parameters[attr]
        owner._parameters[attr] = torch.nn.Parameter(
            value.detach().clone(), requires_grad=bool(old is not None and old.requires_grad)
        )
    elif attr in owner._buffers:
        owner._buffers[attr] = value.detach().clone()
    else:
        setattr(owner, attr, value.detach().clone())


def _ensure_bias(gm: fx.GraphModule, layer: LinearUse, out_features: int) -> str:
    """A Linear without bias gets a zero bias parameter, so compensation has a place to go."""
    if layer.bias is not None:
        return layer.bias
    path = (
        layer.weight.rpartition(".")[0] + ".bias" if "." in layer.weight else layer.node + "_bias"
    )
    owner, attr = _owner(gm, path)
    weight = get_tensor(gm, layer.weight)
    owner.register_parameter(
        attr,
        torch.nn.Parameter(torch.zeros(out_features, dtype=weight.dtype, device=weight.device)),
    )
    node = next(n for n in gm.graph.nodes if n.name == layer.node)
    with gm.graph.inserting_before(node):
        bias_node = gm.graph.get_attr(path)
    node.args = (node.args[0], node.args[1], bias_node)
    node.kwargs = {k: v for k, v in node.kwargs.items() if k != "bias"}
    gm.recompile()
    return path


def apply_plan(
    gm: fx.GraphModule,
    analysis: GraphAnalysis,
    plan: Plan,
    *,
    means: Mapping[str, torch.Tensor] | None = None,
) -> fx.GraphModule:
    """Return a copy of `gm` with the plan's removed neurons cut out.

    Args:
        gm: the unlifted module (not modified).
        analysis: its channel groups.
        plan: group name -> kept indices; groups not named keep everything.
        means: tap node name -> mean activation per channel; given, the removed neurons'
            means are folded into the consumers' biases (compensation).

    Returns:
        A new module with smaller parameters.

    Raises:
        UnsupportedModel: the plan names a frozen or unknown group, or empties one.
    """
    out = clone_module(gm)
    cuts: list[tuple[str, torch.Tensor]] = []
    for name, kept in plan.items():
        group = analysis.group(name)
        if not group.prunable:
            raise UnsupportedModel(f"group {name} is frozen: {group.frozen_reason}")
        if not kept:
            raise UnsupportedModel(f"the plan removes every neuron of {name}")
        if len(kept) < group.width:
            cuts.append((name, torch.tensor(sorted(kept), dtype=torch.long)))

    # Producers and per-channel tensors first (rows), then consumers (columns): a Linear that
    # is both sees its rows cut before compensation adds into its (already cut) bias.
    for name, keep in cuts:
        group = analysis.group(name)
        for path in (group.producer.weight, group.producer.bias, *group.channel_params):
            if path is not None:
                set_tensor(
                    out, path, get_tensor(out, path).index_select(0, keep.to(_device(out, path)))
                )
    for name, keep in cuts:
        group = analysis.group(name)
        removed = _complement(keep, group.width)
        for consumer in group.consumers:
            weight = get_tensor(out, consumer.layer.weight)  # (out, in)
            if means is not None and removed.numel():
                mean = means[consumer.tap].to(weight.device, torch.float64)
                shift = weight.detach().to(torch.float64)[:, removed] @ mean[removed]  # (out,)
                bias_path = _ensure_bias(out, consumer.layer, weight.shape[0])
                bias = get_tensor(out, bias_path)
                set_tensor(out, bias_path, bias + shift.to(bias.dtype))
            set_tensor(out, consumer.layer.weight, weight.index_select(1, keep.to(weight.device)))
    return out


def _device(gm: fx.GraphModule, path: str) -> torch.device:
    return get_tensor(gm, path).device


def _complement(keep: torch.Tensor, width: int) -> torch.Tensor:
    mask = torch.ones(width, dtype=torch.bool)
    mask[keep] = False
    return torch.nonzero(mask).flatten()


def export(gm: fx.GraphModule, feeder: Feeder) -> torch.export.ExportedProgram:
    """Re-export a (pruned) module on the CPU, the batch dimension dynamic when it was.

    Raises:
        UnsupportedModel: when torch cannot export the pruned module.
    """
    gm = gm.to("cpu")
    example = feeder.example()
    dynamic = None
    if feeder.static_batch is None:
        dynamic = ({0: torch.export.Dim("batch", min=1)},)
    try:
        return torch.export.export(gm, example, dynamic_shapes=dynamic)
    except Exception as exc:  # torch raises many kinds of export errors
        raise UnsupportedModel(f"the pruned model could not be exported: {exc}") from exc
