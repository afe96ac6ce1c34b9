"""RMS norms over the channels (Llama's RMSNorm): the channels pass, the divisor is kept.

An RMSNorm divides each channel by the root mean square of all of them. Its weight is one
entry per channel, sliced with them, as LayerNorm's is; unlike LayerNorm's, its statistic
loses nothing exact when channels go: a removed channel, zeroed, adds nothing to the sum
of squares, so a cut equals zeroing the channel where the norm reads it as long as the
mean still divides by the original width. Each such norm is recorded in its groups
(`Renorm`) and surgery keeps that divisor. Two forms are recognised:

- `aten.rms_norm` (`torch.nn.RMSNorm`, `F.rms_norm` as exported) over the channel dim;
- a mean over the channel dim of their square (`x.pow(2).mean(-1, keepdim=True)`, as Llama
  code writes RMSNorm by hand, and as `run_decompositions()` writes `rms_norm`).

A mean over the channels of anything else (a hand-written LayerNorm's mean, say) still
freezes: there, a removed channel's zero would not be the value the original saw.
"""

from __future__ import annotations

import torch
from torch import fx

from pruning.graph.groups import ArgFix, ParamSlice, Renorm, Span
from pruning.graph.registry import HandlerTable, argument, positional
from pruning.graph.tracking import ChannelMap, WalkState

aten = torch.ops.aten
HANDLERS = HandlerTable()


@HANDLERS.handles(aten.rms_norm.default)
def _rms_norm(state: WalkState, node: fx.Node) -> None:
    m = state.map_of(positional(node, 0))
    ndim = state.ndim(positional(node, 0)) or 0
    shape = list(positional(node, 1))
    if m is None or m.dim < ndim - len(shape):
        state.set_map(node, m)  # normalises other dims: channels pass through
        return
    weight_arg = argument(node, 2, "weight")
    weight = state.attr(weight_arg)
    if len(shape) != 1 or any(s.block != 1 for s in m.segs):
        state.freeze(m.groups, f"RMSNorm {node.name} normalises over more than the channels")
    elif weight_arg is not None and weight is None:
        state.freeze(m.groups, f"RMSNorm {node.name} has a weight that is not a stored tensor")
    else:
        count = int(shape[0])
        for seg in m.segs:
            if seg.group is not None:
                g = state.group(seg.group)
                if weight is not None:
                    g.channel_params.append(ParamSlice(weight, Span(0, seg.start)))
                g.arg_fixes.append(ArgFix(node.name, 1, 0))
                g.renorms.append(Renorm(node.name, count))
    state.set_map(node, m)


def mean_of_squares(state: WalkState, node: fx.Node, m: ChannelMap, dims: list[int]) -> bool:
    """Record `node`, a reduction over the channels, when it is the mean of their squares.

    Returns False for any other reduction over the channels (the caller freezes them).
    """
    source = positional(node, 0)
    shape = state.shape(source)
    if node.target is not aten.mean.dim or dims != [m.dim] or shape is None:
        return False
    count = shape[m.dim]
    if not isinstance(count, int) or not _is_square(source):
        return False
    for seg in m.segs:
        if seg.group is not None:
            state.group(seg.group).renorms.append(Renorm(node.name, count, seg.block))
    return True


def _is_square(value: object) -> bool:
    """`x ** p` (p > 0) or `x * x`: a value that is zero wherever x is."""
    if not isinstance(value, fx.Node):
        return False
    if value.target is aten.pow.Tensor_Scalar:
        exponent = positional(value, 1)
        return isinstance(exponent, int | float) and exponent > 0
    if value.target is aten.mul.Tensor:
        return positional(value, 0) is positional(value, 1)
    return False
