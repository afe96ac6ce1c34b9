"""Layers: Linear and Conv start groups and read them; norms and depthwise convs follow them.

A Linear or Conv *produces* a group (its weight rows, its bias) and *consumes* the groups of
its input (weight columns). A grouped convolution cuts per conv group (`ChannelGroup.parts`).
Layers with one entry per channel follow the group they meet: a depthwise conv (filters,
bias, the `groups` argument), BatchNorm (weight, bias, running statistics), a LayerNorm over
the channels (weight, bias, `normalized_shape`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import fx

from pruning.graph.groups import ArgFix, Consumer, ParamSlice, Span, Tap
from pruning.graph.param_trace import StoredPart, produce_part, stored_part
from pruning.graph.registry import HandlerTable, argument, norm_dim, opaque, positional
from pruning.graph.tracking import ChannelMap, Seg, WalkState

aten = torch.ops.aten
HANDLERS = HandlerTable()


# -- producers and consumers --------------------------------------------------------------
def consume(
    state: WalkState,
    node: fx.Node,
    kind: str,
    channel_dim: int,
    weight: str,
    bias: str | None,
    groups: int = 1,
    src: fx.Node | None = None,
    in_dim: int = 1,
) -> None:
    """Record `node` as a consumer of every group in its input's channel map (`src`: the
    input read, when it is not the node's first argument, as in `addmm(bias, x, W.T)`;
    `in_dim`: the weight's dim of input channels, 0 for a weight stored (in, out))."""
    src = positional(node, 0) if src is None else src
    m = state.map_of(src)
    if m is None:
        return
    ndim = state.ndim(src) or 0
    if m.dim != norm_dim(channel_dim, ndim):
        state.freeze(m.groups, f"{node.name} reads these channels along another dimension")
        return
    for seg in m.segs:
        if seg.group is None:
            continue
        if any(p.path == weight for p in state.group(seg.group).producers):
            state.freeze(
                [seg.group],
                f"{node.name}: its weight also makes these channels (an output layer tied to the "
                "embedding, or a layer applied to its own output)",
            )
        state.group(seg.group).consumers.append(
            Consumer(
                node=node.name,
                kind=kind,
                weight=ParamSlice(weight, seg.span(in_dim)),
                bias=bias,
                tap=Tap(src.name, seg.span(m.dim)),
                groups=groups,
            )
        )


def produce(
    state: WalkState,
    node: fx.Node,
    kind: str,
    weight: str,
    bias: str | None,
    width: int,
    dim: int,
    out_dim: int = 0,
) -> int:
    """Start a group named after the layer: its weight rows (dim `out_dim` of the weight: 1
    for one stored (in, out), as HF's `Conv1D`) and bias are the channels.

    A layer called again makes the same channels: its output gets the group's map as the
    group is laid out now (regrouped into heads, say), not a new group."""
    owner = state.stored.get((weight, out_dim, 0))
    if owner is not None and state.root(owner) in state.pieces:
        state.freeze([owner], f"{node.name} calls a layer again whose channels a split divided")
        state.set_map(node, None)
        return state.root(owner)
    if owner is not None:
        g = state.group(owner)
        spans = sorted((p.span for p in g.producers if p.path == weight), key=lambda s: s.offset)
        segs = tuple(Seg(owner, s.offset, g.width, s.block) for s in spans)
        state.set_map(node, ChannelMap(dim, segs))
        return state.root(owner)
    gid = state.new_group(weight.removesuffix(".weight"), width, kind)
    group = state.groups[gid]
    group.producers.append(ParamSlice(weight, Span(out_dim)))
    if bias is not None:
        group.producers.append(ParamSlice(bias, Span(0)))
    state.set_map(node, ChannelMap(dim, (Seg(gid, 0, width),)))
    state.claim(weight, Span(out_dim), gid, node.name)
    return gid


@dataclass(frozen=True)
class _Params:
    weight: str
    bias: str | None  # a stored bias
    # Or a part of a stored vector (`in_proj_bias`): sliced with the rows; compensation
    # goes into a bias added after the layer (`compensation_bias.ensure_bias`).
    part: StoredPart | None = None


def _weights(state: WalkState, node: fx.Node) -> _Params | None:
    """The layer's weight and bias; None unless the weight is stored and the bias is stored
    or an equal part of a stored vector."""
    weight = state.attr(argument(node, 1, "weight"))
    bias_arg = argument(node, 2, "bias")
    bias = state.attr(bias_arg)
    part = stored_part(state, bias_arg) if bias_arg is not None and bias is None else None
    if weight is None or (bias_arg is not None and bias is None and part is None):
        return None
    return _Params(weight, bias, part)


def _not_stored(state: WalkState, node: fx.Node, layer: str) -> str:
    """Why a layer's parameters cannot be cut: which of them is computed, not stored."""
    if state.attr(argument(node, 1, "weight")) is None:
        return f"a {layer} whose weight is computed, not a stored parameter"
    return f"a {layer} whose bias is computed, neither stored nor an equal part of a stored vector"


@HANDLERS.handles(aten.linear.default)
def _linear(state: WalkState, node: fx.Node) -> None:
    params = _weights(state, node)
    if params is None:
        opaque(state, node, _not_stored(state, node, "Linear"))
        return
    consume(state, node, "linear", -1, params.weight, params.bias)
    width = int(state.gm.get_parameter(params.weight).shape[0])
    dim = (state.ndim(node) or 2) - 1
    gid = produce(state, node, "linear", params.weight, params.bias, width, dim)
    if params.part is not None:
        produce_part(state, node, gid, params.part)


@HANDLERS.handles(aten.embedding.default)
def _embedding(state: WalkState, node: fx.Node) -> None:
    """A token embedding makes channels: its table's columns (dim 1), one per channel."""
    weight = state.attr(positional(node, 0))
    if weight is None:
        opaque(state, node, "an embedding whose table is not a stored parameter")
        return
    table = state.gm.get_parameter(weight)
    gid = state.new_group(weight.removesuffix(".weight"), int(table.shape[1]), "embedding")
    state.groups[gid].producers.append(ParamSlice(weight, Span(1)))
    state.set_map(
        node, ChannelMap((state.ndim(node) or 1) - 1, (Seg(gid, 0, int(table.shape[1])),))
    )


_CONV_GROUPS_ARG: dict[Any, int] = {
    aten.conv1d.default: 6,
    aten.conv2d.default: 6,
    aten.conv3d.default: 6,
    aten.convolution.default: 8,
}


@HANDLERS.handles(*_CONV_GROUPS_ARG)
def _conv(state: WalkState, node: fx.Node) -> None:
    params = _weights(state, node)
    groups_at = _CONV_GROUPS_ARG[node.target]
    groups = argument(node, groups_at, "groups", 1)
    transposed = node.target is aten.convolution.default and bool(argument(node, 6, "transposed"))
    if params is None or params.part is not None:
        opaque(state, node, _not_stored(state, node, "convolution"))
        return
    if transposed or not isinstance(groups, int):
        opaque(state, node, "a transposed convolution, or one whose groups are computed")
        return
    weight, bias = params.weight, params.bias
    w = state.gm.get_parameter(weight)  # (out, in / groups, *kernel)
    out_ch, in_per_group = int(w.shape[0]), int(w.shape[1])
    if groups == 1:
        consume(state, node, "conv", 1, weight, bias)
        produce(state, node, "conv", weight, bias, out_ch, 1)
    elif in_per_group == 1 and out_ch == groups:
        _depthwise(state, node, weight, bias, groups_at)
    else:
        _grouped(state, node, weight, bias, groups, out_ch)


def _grouped(
    state: WalkState, node: fx.Node, weight: str, bias: str | None, groups: int, out_ch: int
) -> None:
    """A grouped convolution (ResNeXt, RegNet): input and output are cut per conv group.

    `groups` stays as it is; each conv group keeps as many channels as the others, on both
    sides (`ChannelGroup.parts`), so the weight stays rectangular. The conv's input must be
    one layer's channels in their own order, so that its runs line up with the conv groups.
    """
    src = positional(node, 0)
    m = state.map_of(src)
    if m is not None:
        seg = m.segs[0]
        whole = (
            m.dim == 1
            and len(m.segs) == 1
            and seg.group is not None
            and seg.start == 0
            and seg.block == 1
            and not seg.interleaved
            and state.group(seg.group).width == seg.width
        )
        if not whole:
            state.freeze(
                m.groups, f"{node.name}: grouped convolution over several layers' channels"
            )
        else:
            assert seg.group is not None
            consume(state, node, "conv", 1, weight, bias, groups=groups)
            state.constrain(seg.group, groups, node.name)
    gid = produce(state, node, "conv", weight, bias, out_ch, 1)
    state.constrain(gid, groups, node.name)


def _depthwise(
    state: WalkState, node: fx.Node, weight: str, bias: str | None, groups_at: int
) -> None:
    """A depthwise conv follows its input: one filter per channel, `groups` = channels."""
    m = state.map_of(positional(node, 0))
    if m is None or m.dim != 1:
        state.freeze_map(positional(node, 0), f"{node.name} is depthwise over another dimension")
        width = int(state.gm.get_parameter(weight).shape[0])
        gid = produce(state, node, "conv", weight, bias, width, 1)
        state.freeze([gid], f"{node.name}: depthwise convolution of an input that cannot be cut")
        return
    for seg in m.segs:
        if seg.group is None:
            continue
        group = state.group(seg.group)
        group.channel_params.append(ParamSlice(weight, seg.span(0)))
        if bias is not None:
            group.channel_params.append(ParamSlice(bias, seg.span(0)))
        group.arg_fixes.append(ArgFix(node.name, groups_at, None))
    state.set_map(node, m)


# -- normalisation: one entry per channel, sliced with the group --------------------------
@HANDLERS.handles(aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default)
def _batch_norm(state: WalkState, node: fx.Node) -> None:
    m = state.map_of(positional(node, 0))
    if m is None:
        state.set_map(node, None)
        return
    names = ("weight", "bias", "running_mean", "running_var")
    args = [argument(node, i + 1, n) for i, n in enumerate(names)]
    paths = [state.attr(a) for a in args if a is not None]
    if m.dim != 1 or any(s.block != 1 for s in m.segs):
        state.freeze(m.groups, f"BatchNorm {node.name} normalises another dimension")
    elif any(p is None for p in paths) or args[2] is None:
        state.freeze(m.groups, f"BatchNorm {node.name} has statistics that are not stored buffers")
    else:
        for seg in m.segs:
            if seg.group is not None:
                state.group(seg.group).channel_params.extend(
                    ParamSlice(p, seg.span(0)) for p in paths if p is not None
                )
    state.set_map(node, m)


# `native_layer_norm` (a decomposed program's) takes the same arguments, returns (y, mean, rstd).
@HANDLERS.handles(aten.layer_norm.default, aten.native_layer_norm.default)
def _layer_norm(state: WalkState, node: fx.Node) -> None:
    m = state.map_of(positional(node, 0))
    ndim = state.ndim(positional(node, 0)) or 0
    shape = list(positional(node, 1))
    if m is None or m.dim < ndim - len(shape):
        state.set_map(node, m)  # normalises other dims: channels pass through
        return
    given = [a for a in (argument(node, 2, "weight"), argument(node, 3, "bias")) if a is not None]
    params = [state.attr(a) for a in given]
    if len(shape) != 1 or any(s.block != 1 for s in m.segs) or None in params:
        state.freeze(m.groups, f"LayerNorm {node.name} normalises over more than the channels")
        state.set_map(node, m)
        return
    for seg in m.segs:
        if seg.group is not None:
            g = state.group(seg.group)
            g.channel_params.extend(ParamSlice(p, seg.span(0)) for p in params if p)
            g.arg_fixes.append(ArgFix(node.name, 1, 0))
    state.set_map(node, m)
