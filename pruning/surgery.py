"""Cutting neurons out for real: sliced weights, a smaller dense program, not a mask.

For each group of a plan, the producer keeps the weight rows and bias entries of the kept
neurons, every per-channel tensor in between (BatchNorm) is sliced alike, and each consumer
keeps the matching input columns. With compensation, each consumer first gets a stand-in for
the removed neurons (`pruning.compensation`): their means folded into its bias (Evci et al.
2018), or their linear reconstruction from the kept neurons folded into its kept columns
and bias.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Mapping
from typing import Any

import torch
from torch import fx

from jobs.job_config import Compensation
from pruning.compensation import fold, folded_means, reconstruction
from pruning.compensation_bias import ensure_bias
from pruning.data import Feeder
from pruning.errors import UnsupportedModel
from pruning.graph import OUTPUT_SIZES, ChannelGroup, Consumer, GraphAnalysis, Plan, Tap, get_tensor
from pruning.module_copy import clone_module, set_tensor
from pruning.rms_norm_surgery import keep_rms_divisors
from pruning.shuffle_surgery import gather_shuffles
from pruning.stats import RunningStats

__all__ = [
    "EXPORT_LOCK",
    "apply_plan",
    "clone_module",
    "dense_weight",
    "export",
    "oriented_weight",
    "set_tensor",
]

# While torch.export traces, it patches `torch.nn.Module.__call__` and `__getattr__` for the
# whole process (torch.fx's tracer), so a module called or built in another thread at that
# moment would be traced into the export. Work that runs beside the engine's main thread
# (`pruning.publishing`) holds this lock, and `export` takes it.
EXPORT_LOCK = threading.Lock()


def apply_plan(
    gm: fx.GraphModule,
    analysis: GraphAnalysis,
    plan: Plan,
    *,
    moments: Mapping[Tap, RunningStats] | None = None,
    compensate: Compensation = Compensation.NONE,
    share_parameters: bool = False,
) -> fx.GraphModule:
    """Return a copy of `gm` with the plan's removed channels cut out.

    Every tensor that holds a cut group's channels loses the positions of the removed
    channels along its channel dimension, all groups at once (so offsets of concatenated
    groups refer to the original layout); width-encoding arguments shrink accordingly.

    Args:
        gm: the unlifted module (not modified).
        analysis: its channel groups.
        plan: group name -> kept indices; groups not named keep everything.
        moments: tap -> statistics of the group's channels where a consumer reads them.
        compensate: `mean` folds the removed channels' means into each consumer's bias;
            `linear` also folds their reconstruction from the kept channels into the kept
            columns, where the tap has co-moments and the consumer is not a grouped conv
            (elsewhere it falls back to `mean`). Both need `moments`.
        share_parameters: the copy shares the tensors it keeps unchanged with `gm` (see
            `pruning.module_copy.clone_module`); not for a copy that will be trained.

    Returns:
        A new module with smaller parameters.

    Raises:
        UnsupportedModel: the plan names a frozen or unknown group, or empties one.
    """
    out = clone_module(gm, share_parameters=share_parameters)
    removed: dict[tuple[str, int], set[int]] = {}
    grouped: dict[str, tuple[int, set[int]]] = {}  # weight path -> (groups, input channels)
    arg_delta: dict[tuple[str, int, int | None], int] = {}
    cuts = _cuts(analysis, plan)
    for group, gone in cuts:
        for ps in (*group.producers, *group.channel_params):
            removed.setdefault((ps.path, ps.span.dim), set()).update(ps.span.positions(gone))
        for c in group.consumers:
            cols = c.weight.span.positions(gone)
            if c.groups > 1:
                grouped.setdefault(c.weight.path, (c.groups, set()))[1].update(cols)
            else:
                removed.setdefault((c.weight.path, c.weight.span.dim), set()).update(cols)
        for fix in group.arg_fixes:
            key = (fix.node, fix.arg, fix.item)
            arg_delta[key] = arg_delta.get(key, 0) + len(gone) * fix.block
    if compensate is not Compensation.NONE:
        if moments is None:
            raise ValueError("compensation needs the statistics (moments) of the taps")
        for group, gone in cuts:
            for c in group.consumers:
                _compensate(out, c, gone, moments[c.tap], compensate, removed)
    # Grouped columns first: which group a weight row belongs to is read off its original
    # position, before the rows themselves are cut.
    for path, (groups, columns) in grouped.items():
        cut = _cut_grouped_columns(get_tensor(out, path), groups, columns)
        set_tensor(out, path, cut, copy=False)
    for (path, dim), positions in removed.items():
        tensor = get_tensor(out, path)
        keep = [i for i in range(tensor.shape[dim]) if i not in positions]
        index = torch.tensor(keep, dtype=torch.long, device=tensor.device)
        set_tensor(out, path, tensor.index_select(dim, index), copy=False)
    _fix_args(out, arg_delta)
    keep_rms_divisors(out, cuts)
    gather_shuffles(out, cuts)
    out.recompile()
    return out


def _cuts(analysis: GraphAnalysis, plan: Plan) -> list[tuple[ChannelGroup, list[int]]]:
    cuts = []
    for name, kept in plan.items():
        group = analysis.group(name)
        if not group.prunable:
            raise UnsupportedModel(f"group {name} is frozen: {group.frozen_reason}")
        if not kept:
            raise UnsupportedModel(f"the plan removes every neuron of {name}")
        keep = set(kept)
        gone = [c for c in range(group.width) if c not in keep]
        size = group.width // group.parts
        counts = {sum(1 for c in kept if c // size == p) for p in range(group.parts)}
        if len(counts) > 1:
            raise UnsupportedModel(
                f"{name} must keep as many channels in each of its {group.parts} conv groups"
            )
        if gone:
            cuts.append((group, gone))
    return cuts


def _cut_grouped_columns(weight: torch.Tensor, groups: int, gone: set[int]) -> torch.Tensor:
    """Remove input channels from a grouped conv weight (out, in / groups, *kernel).

    Rows of conv group j hold only the columns of input channels j * per .. (j + 1) * per,
    at local positions; each group drops its own removed channels. Plans keep equal counts
    per group, so the result is rectangular.
    """
    per, rows = int(weight.shape[1]), int(weight.shape[0]) // groups
    blocks = []
    for j in range(groups):
        keep = [c for c in range(per) if j * per + c not in gone]
        index = torch.tensor(keep, dtype=torch.long, device=weight.device)
        blocks.append(weight[j * rows : (j + 1) * rows].index_select(1, index))
    return torch.cat(blocks, 0)


def oriented_weight(weight: torch.Tensor, consumer: Consumer) -> torch.Tensor:
    """A consumer's weight as (out, in, *kernel): a weight stored (in, out) (`x @ W`, HF's
    `Conv1D`) transposed, a grouped conv's made dense (`dense_weight`)."""
    if consumer.transposed:
        return weight.t()
    return dense_weight(weight, consumer.groups)


def dense_weight(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """The (out, in, *kernel) weight of an ordinary conv equal to a grouped one."""
    if groups == 1:
        return weight
    per, rows = int(weight.shape[1]), int(weight.shape[0]) // groups
    dense = weight.new_zeros((weight.shape[0], per * groups, *weight.shape[2:]))
    for j in range(groups):
        dense[j * rows : (j + 1) * rows, j * per : (j + 1) * per] = weight[
            j * rows : (j + 1) * rows
        ]
    return dense


def _compensate(
    gm: fx.GraphModule,
    consumer: Consumer,
    gone: list[int],
    stats: RunningStats,
    mode: Compensation,
    removed: dict[tuple[str, int], set[int]],
) -> None:
    """Give `consumer` a stand-in for the removed channels (see `pruning.compensation`)."""
    raw = get_tensor(gm, consumer.weight.path).detach()
    # A copy even when the weight is float64 already: it is written below, and the module's
    # own tensor may be shared with the original (`share_parameters`).
    weight = oriented_weight(raw, consumer).to(torch.float64, copy=True)  # (out, in, ...)
    width = stats.channels
    at = torch.tensor(consumer.weight.span.positions(range(width)), device=weight.device)
    columns = weight[:, at].reshape(weight.shape[0], width, -1).cpu()  # (out, C, positions)
    # A grouped conv's rows read only their own conv group: a reconstruction across groups
    # could not be written into its weight, so it keeps mean folding.
    linear = mode is Compensation.LINEAR and stats.comoment is not None and consumer.groups == 1
    if linear:
        dropped = set(gone)
        kept = [c for c in range(width) if c not in dropped]
        a, b = reconstruction(stats, kept, gone)
    else:
        # Per position where a channel is a block (a head's features): each its own mean.
        kept, a, b = [], torch.zeros(len(gone), 0, dtype=torch.float64), folded_means(stats)[gone]
    shift = fold(columns, kept, gone, a, b)  # (out,)
    if linear:
        weight[:, at] = columns.reshape(weight[:, at].shape).to(weight.device)
        stored = weight.t() if consumer.transposed else weight
        set_tensor(gm, consumer.weight.path, stored.to(raw.dtype), copy=False)
    had_bias = consumer.bias is not None
    bias_path = ensure_bias(gm, consumer)
    rows = (consumer.weight.path, consumer.out_dim)
    if not had_bias and rows in removed:
        removed[(bias_path, 0)] = removed[rows]  # its rows are cut too
    bias = get_tensor(gm, bias_path)
    set_tensor(gm, bias_path, bias + shift.to(bias.device, bias.dtype), copy=False)


def _fix_args(gm: fx.GraphModule, delta: dict[tuple[str, int, int | None], int]) -> None:
    nodes = {n.name: n for n in gm.graph.nodes}
    for (name, arg, item), amount in delta.items():
        node = nodes[name]
        if arg == OUTPUT_SIZES:
            _resize_split(node, item or 0, amount)
            continue
        args = list(node.args)
        if item is None:
            args[arg] = int(args[arg]) - amount
        else:
            sizes = list(args[arg])
            given = sizes[item]
            shrunk = _shrunk_product(node, given, amount) if isinstance(given, fx.Node) else None
            sizes[item] = shrunk if shrunk is not None else int(given) - amount
            args[arg] = sizes
        node.args = tuple(args)


def _shrunk_product(user: fx.Node, size: fx.Node, amount: int) -> fx.Node:
    """`x * k` with k lowered by `amount`, as a new node before `user` alone: the heads per
    sample in N * heads; the original product may size other ops too."""
    factors: list[Any] = list(size.args)
    at = next(i for i, f in enumerate(factors) if isinstance(f, int))
    factors[at] = int(factors[at]) - amount
    with user.graph.inserting_before(user):
        return user.graph.call_function(operator.mul, tuple(factors))


def _resize_split(node: fx.Node, part: int, amount: int) -> None:
    """Shrink one part of a split; equal-size splits become `split_with_sizes`."""
    if node.target is not torch.ops.aten.split_with_sizes.default:
        sizes = [int(v.shape[_split_dim(node)]) for v in node.meta["val"]]
        dim = _split_dim(node)
        node.target = torch.ops.aten.split_with_sizes.default
        node.args = (node.args[0], sizes, dim)
        node.kwargs = {}
    sizes = list(node.args[1])  # type: ignore[arg-type]
    sizes[part] = int(sizes[part]) - amount
    node.args = (node.args[0], sizes, *node.args[2:])


def _split_dim(node: fx.Node) -> int:
    dim: Any = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
    source: Any = node.args[0]
    ndim = int(source.meta["val"].dim())
    return int(dim) + ndim if int(dim) < 0 else int(dim)


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
        with EXPORT_LOCK:
            return torch.export.export(gm, example, dynamic_shapes=dynamic)
    except Exception as exc:  # torch raises many kinds of export errors
        raise UnsupportedModel(f"the pruned model could not be exported: {exc}") from exc
