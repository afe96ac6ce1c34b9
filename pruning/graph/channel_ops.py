"""How each operator carries channels: the registry behind `pruning.graph.walk.analyse`.

A handler looks at one node, reads the channel maps of its inputs and sets the map of its
output; it records producers, consumers, per-channel tensors and width-encoding
arguments in the groups it meets, couples groups that meet elementwise, and freezes what
it cannot follow. `visit` dispatches on the node's target; an unknown op that touches a
tracked tensor freezes the groups it touches.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import fx

from pruning.graph.groups import OUTPUT_SIZES, ArgFix, Consumer, ParamSlice, Span, Tap
from pruning.graph.walk import Analysis, ChannelMap, Seg, get_tensor

aten = torch.ops.aten
Handler = Callable[[Analysis, fx.Node], None]
HANDLERS: dict[Any, Handler] = {}


def handles(*targets: Any) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for t in targets:
            HANDLERS[t] = fn
        return fn

    return register


def visit(state: Analysis, node: fx.Node) -> None:
    if node.op == "output":
        _freeze_all(state, _a(node, 0), "its channels are a model output")
        return
    if node.op != "call_function":
        return
    handler = HANDLERS.get(node.target)
    if handler is not None:
        handler(state, node)
        return
    # Unknown op: whatever tracked channels it touches can no longer be followed.
    touched = [a for a in node.all_input_nodes if state.map_of(a) is not None]
    for arg in touched:
        state.freeze_map(
            arg, f"operation {node.target} ({node.name}) is not supported on these channels"
        )
    state.set_map(node, None)


def _freeze_all(state: Analysis, value: Any, reason: str) -> None:
    if isinstance(value, (list, tuple)):
        for v in value:
            _freeze_all(state, v, reason)
    elif isinstance(value, fx.Node):
        state.freeze_map(value, reason)


def _a(node: fx.Node, index: int) -> Any:
    """A positional argument, typed loosely: FX arguments are a wide union."""
    return node.args[index]


def _arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _norm_dim(dim: int, ndim: int) -> int:
    return dim + ndim if dim < 0 else dim


def _layer_name(weight_path: str) -> str:
    return weight_path.removesuffix(".weight")


# -- producers and consumers --------------------------------------------------------------
def _consume(
    state: Analysis,
    node: fx.Node,
    kind: str,
    channel_dim: int,
    weight: str,
    bias: str | None,
    groups: int = 1,
) -> None:
    """Record `node` as a consumer of every group in its input's channel map."""
    src = _a(node, 0)
    m = state.map_of(src)
    if m is None:
        return
    ndim = state.ndim(src) or 0
    if m.dim != _norm_dim(channel_dim, ndim):
        state.freeze(m.groups, f"{node.name} reads these channels along another dimension")
        return
    for seg in m.segs:
        if seg.group is None:
            continue
        span = Span(m.dim, seg.start, seg.block)
        state.group(seg.group).consumers.append(
            Consumer(
                node=node.name,
                kind=kind,
                weight=ParamSlice(weight, Span(1, seg.start, seg.block)),
                bias=bias,
                tap=Tap(src.name, span),
                groups=groups,
            )
        )


def _produce(
    state: Analysis, node: fx.Node, kind: str, weight: str, bias: str | None, width: int, dim: int
) -> int:
    gid = state.new_group(_layer_name(weight), width, kind)
    group = state.groups[gid]
    group.producers.append(ParamSlice(weight, Span(0)))
    if bias is not None:
        group.producers.append(ParamSlice(bias, Span(0)))
    state.set_map(node, ChannelMap(dim, (Seg(gid, 0, width),)))
    return gid


def _weights(state: Analysis, node: fx.Node) -> tuple[str, str | None] | None:
    weight = state.attr(_arg(node, 1, "weight"))
    bias_arg = _arg(node, 2, "bias")
    bias = state.attr(bias_arg)
    if weight is None or (bias_arg is not None and bias is None):
        return None
    return weight, bias


@handles(aten.linear.default)
def _linear(state: Analysis, node: fx.Node) -> None:
    params = _weights(state, node)
    if params is None:
        _opaque(state, node, "a Linear whose weight is not a stored parameter")
        return
    weight, bias = params
    _consume(state, node, "linear", -1, weight, bias)
    width = int(state.gm.get_parameter(weight).shape[0])
    _produce(state, node, "linear", weight, bias, width, (state.ndim(node) or 2) - 1)


_CONV_GROUPS_ARG: dict[Any, int] = {
    aten.conv1d.default: 6,
    aten.conv2d.default: 6,
    aten.conv3d.default: 6,
    aten.convolution.default: 8,
}


@handles(*_CONV_GROUPS_ARG)
def _conv(state: Analysis, node: fx.Node) -> None:
    params = _weights(state, node)
    groups_at = _CONV_GROUPS_ARG[node.target]
    groups = _arg(node, groups_at, "groups", 1)
    transposed = node.target is aten.convolution.default and bool(_arg(node, 6, "transposed"))
    if params is None or transposed or not isinstance(groups, int):
        _opaque(state, node, "a convolution with non-parameter weights or transposed")
        return
    weight, bias = params
    w = state.gm.get_parameter(weight)  # (out, in / groups, *kernel)
    out_ch, in_per_group = int(w.shape[0]), int(w.shape[1])
    if groups == 1:
        _consume(state, node, "conv", 1, weight, bias)
        _produce(state, node, "conv", weight, bias, out_ch, 1)
    elif in_per_group == 1 and out_ch == groups:
        _depthwise(state, node, weight, bias, groups_at)
    else:
        _grouped(state, node, weight, bias, groups, out_ch)


def _grouped(
    state: Analysis, node: fx.Node, weight: str, bias: str | None, groups: int, out_ch: int
) -> None:
    """A grouped convolution (ResNeXt, RegNet): input and output are cut per conv group.

    `groups` stays as it is; each conv group keeps as many channels as the others, on both
    sides (`ChannelGroup.parts`), so the weight stays rectangular. The conv's input must be
    one layer's channels in their own order, so that its runs line up with the conv groups.
    """
    src = _a(node, 0)
    m = state.map_of(src)
    if m is not None:
        seg = m.segs[0]
        whole = (
            m.dim == 1
            and len(m.segs) == 1
            and seg.group is not None
            and seg.start == 0
            and seg.block == 1
            and state.group(seg.group).width == seg.width
        )
        if not whole:
            state.freeze(
                m.groups, f"{node.name}: grouped convolution over several layers' channels"
            )
        else:
            assert seg.group is not None
            _consume(state, node, "conv", 1, weight, bias, groups=groups)
            state.constrain(seg.group, groups, node.name)
    gid = _produce(state, node, "conv", weight, bias, out_ch, 1)
    state.constrain(gid, groups, node.name)


def _depthwise(
    state: Analysis, node: fx.Node, weight: str, bias: str | None, groups_at: int
) -> None:
    """A depthwise conv follows its input: one filter per channel, `groups` = channels."""
    m = state.map_of(_a(node, 0))
    if m is None or m.dim != 1:
        state.freeze_map(_a(node, 0), f"{node.name} is depthwise over another dimension")
        width = int(state.gm.get_parameter(weight).shape[0])
        gid = _produce(state, node, "conv", weight, bias, width, 1)
        state.freeze([gid], f"{node.name}: depthwise convolution of an input that cannot be cut")
        return
    for seg in m.segs:
        if seg.group is None:
            continue
        group = state.group(seg.group)
        group.channel_params.append(ParamSlice(weight, Span(0, seg.start)))
        if bias is not None:
            group.channel_params.append(ParamSlice(bias, Span(0, seg.start)))
        group.arg_fixes.append(ArgFix(node.name, groups_at, None))
    state.set_map(node, m)


# -- ops that keep channels where they are -----------------------------------------------------
_ELEMENTWISE = [
    aten.relu.default,
    aten.relu_.default,
    aten.leaky_relu.default,
    aten.leaky_relu_.default,
    aten.gelu.default,
    aten.silu.default,
    aten.silu_.default,
    aten.tanh.default,
    aten.sigmoid.default,
    aten.elu.default,
    aten.elu_.default,
    aten.hardswish.default,
    aten.hardswish_.default,
    aten.relu6.default,
    aten.hardtanh.default,
    aten.hardtanh_.default,
    aten.hardsigmoid.default,
    aten.hardsigmoid_.default,
    aten.mish.default,
    aten.softplus.default,
    aten.selu.default,
    aten.celu.default,
    aten.clone.default,
    aten.contiguous.default,
    aten.alias.default,
    aten.detach.default,
    aten.dropout.default,
    aten.feature_dropout.default,
    aten.alpha_dropout.default,
    aten._to_copy.default,
    aten.to.dtype,
    aten.to.device,
    aten.to.dtype_layout,
    aten.neg.default,
    aten.abs.default,
    aten.exp.default,
    aten.sqrt.default,
    aten.rsqrt.default,
    aten.clamp.default,
    aten.clamp_min.default,
    aten.clamp_max.default,
    aten.mul.Scalar,
    aten.add.Scalar,
    aten.sub.Scalar,
    aten.div.Scalar,
    aten.pow.Tensor_Scalar,
]


@handles(*_ELEMENTWISE)
def _same(state: Analysis, node: fx.Node) -> None:
    state.set_map(node, state.map_of(_a(node, 0)))


_POOLS = [
    aten.max_pool1d.default,
    aten.max_pool2d.default,
    aten.max_pool3d.default,
    aten.avg_pool1d.default,
    aten.avg_pool2d.default,
    aten.avg_pool3d.default,
    aten.adaptive_avg_pool1d.default,
    aten.adaptive_avg_pool2d.default,
    aten.adaptive_avg_pool3d.default,
    aten._adaptive_avg_pool2d.default,
    aten.adaptive_max_pool1d.default,
    aten.adaptive_max_pool2d.default,
    aten.max_pool2d_with_indices.default,
]


@handles(*_POOLS)
def _pool(state: Analysis, node: fx.Node) -> None:
    m = state.map_of(_a(node, 0))
    # Pooling works on the trailing spatial dims; the channel dim (1 of N, C, ...) stays.
    if m is not None and m.dim != 1:
        state.freeze(m.groups, f"{node.name} pools over these channels")
        m = None
    state.set_map(node, m)


@handles(aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default)
def _batch_norm(state: Analysis, node: fx.Node) -> None:
    m = state.map_of(_a(node, 0))
    if m is None:
        state.set_map(node, None)
        return
    names = ("weight", "bias", "running_mean", "running_var")
    args = [_arg(node, i + 1, n) for i, n in enumerate(names)]
    paths = [state.attr(a) for a in args if a is not None]
    if m.dim != 1 or any(s.block != 1 for s in m.segs):
        state.freeze(m.groups, f"BatchNorm {node.name} normalises another dimension")
    elif any(p is None for p in paths) or args[2] is None:
        state.freeze(m.groups, f"BatchNorm {node.name} has statistics that are not stored buffers")
    else:
        for seg in m.segs:
            if seg.group is not None:
                state.group(seg.group).channel_params.extend(
                    ParamSlice(p, Span(0, seg.start)) for p in paths if p is not None
                )
    state.set_map(node, m)


@handles(aten.layer_norm.default)
def _layer_norm(state: Analysis, node: fx.Node) -> None:
    m = state.map_of(_a(node, 0))
    ndim = state.ndim(_a(node, 0)) or 0
    shape = list(_a(node, 1))
    if m is None or m.dim < ndim - len(shape):
        state.set_map(node, m)  # normalises other dims: channels pass through
        return
    given = [a for a in (_arg(node, 2, "weight"), _arg(node, 3, "bias")) if a is not None]
    params = [state.attr(a) for a in given]
    if len(shape) != 1 or any(s.block != 1 for s in m.segs) or None in params:
        state.freeze(m.groups, f"LayerNorm {node.name} normalises over more than the channels")
        state.set_map(node, m)
        return
    for seg in m.segs:
        if seg.group is not None:
            g = state.group(seg.group)
            g.channel_params.extend(ParamSlice(p, Span(0, seg.start)) for p in params if p)
            g.arg_fixes.append(ArgFix(node.name, 1, 0))
    state.set_map(node, m)


@handles(operator.getitem)
def _getitem(state: Analysis, node: fx.Node) -> None:
    src, index = node.args
    parts = state.parts.get(src.name) if isinstance(src, fx.Node) else None
    if parts is not None:  # one map per output (a split)
        state.set_map(node, parts[int(index)])  # type: ignore[arg-type]
        return
    # Multi-output ops (BatchNorm, max-pool with indices) put the channels in output 0.
    state.set_map(node, state.map_of(src) if index == 0 else None)
    if index != 0:
        state.freeze_map(src, f"{node.name} uses a secondary output of {src}")


@handles(aten.split.Tensor, aten.split_with_sizes.default, aten.chunk.default)
def _split(state: Analysis, node: fx.Node) -> None:
    """Splits along the channels hand each part the segments inside it; a layer's channels
    split between parts (ShuffleNet's channel split) freeze, since their parts would shrink
    unevenly. The part sizes are width-encoding arguments."""
    m = state.map_of(_a(node, 0))
    vals = node.meta.get("val")
    if m is None or not isinstance(vals, (list, tuple)):
        state.set_map(node, None)
        return
    ndim = state.ndim(_a(node, 0)) or 0
    dim = _norm_dim(int(_arg(node, 2, "dim", 0)), ndim)
    if dim != m.dim:
        state.parts[node.name] = [m] * len(vals)
        state.set_map(node, m)
        return
    sizes = [v.shape[dim] for v in vals]
    if not all(isinstance(n, int) for n in sizes):
        state.freeze(m.groups, f"{node.name} splits these channels into dynamic sizes")
        state.set_map(node, None)
        return
    parts: list[ChannelMap | None] = []
    begin = 0
    for i, size in enumerate(sizes):
        inside = [
            s for s in m.segs if begin <= s.start and s.start + s.width * s.block <= begin + size
        ]
        if _straddles(m, begin, size):
            state.freeze(m.groups, f"{node.name} splits a layer's channels between its parts")
            state.set_map(node, None)
            return
        for seg in inside:
            if seg.group is not None:
                state.group(seg.group).arg_fixes.append(
                    ArgFix(node.name, OUTPUT_SIZES, i, seg.block)
                )
        rebased = tuple(Seg(s.group, s.start - begin, s.width, s.block) for s in inside)
        parts.append(ChannelMap(dim, rebased) if rebased else None)
        begin += size
    state.parts[node.name] = parts
    state.set_map(node, None)


def _straddles(m: ChannelMap, begin: int, size: int) -> bool:
    end = begin + size
    return any(
        s.start < end < s.start + s.width * s.block or s.start < begin < s.start + s.width * s.block
        for s in m.segs
    )


def _opaque(state: Analysis, node: fx.Node, why: str) -> None:
    for arg in node.all_input_nodes:
        state.freeze_map(arg, f"{node.name}: {why}")
    state.set_map(node, None)


# -- ops that move or reshape the channel dimension ----------------------------------------------
@handles(aten.mean.dim, aten.sum.dim_IntList, aten.amax.default, aten.amin.default)
def _reduce(state: Analysis, node: fx.Node) -> None:
    m = state.map_of(_a(node, 0))
    ndim = state.ndim(_a(node, 0)) or 0
    dims = _arg(node, 1, "dim")
    keep = bool(_arg(node, 2, "keepdim", False))
    if m is None:
        state.set_map(node, None)
        return
    dims = list(range(ndim)) if dims is None else [_norm_dim(int(d), ndim) for d in dims]
    if m.dim in dims:
        state.freeze(m.groups, f"{node.name} reduces over these channels")
        state.set_map(node, None)
        return
    state.set_map(node, m if keep else m.moved(m.dim - sum(d < m.dim for d in dims)))


@handles(aten.permute.default)
def _permute(state: Analysis, node: fx.Node) -> None:
    m = state.map_of(_a(node, 0))
    ndim = state.ndim(_a(node, 0)) or 0
    order = [_norm_dim(int(d), ndim) for d in _a(node, 1)]
    state.set_map(node, None if m is None else m.moved(order.index(m.dim)))


@handles(aten.transpose.int, aten.t.default)
def _transpose(state: Analysis, node: fx.Node) -> None:
    m = state.map_of(_a(node, 0))
    ndim = state.ndim(_a(node, 0)) or 0
    d0, d1 = (
        (0, 1)
        if node.target is aten.t.default
        else (_norm_dim(int(_a(node, 1)), ndim), _norm_dim(int(_a(node, 2)), ndim))
    )
    if m is None:
        state.set_map(node, None)
    else:
        state.set_map(node, m.moved(d1 if m.dim == d0 else d0 if m.dim == d1 else m.dim))


@handles(aten.unsqueeze.default)
def _unsqueeze(state: Analysis, node: fx.Node) -> None:
    m = state.map_of(_a(node, 0))
    d = _norm_dim(int(_a(node, 1)), state.ndim(node) or 0)
    state.set_map(node, None if m is None else m.moved(m.dim + (1 if d <= m.dim else 0)))


@handles(aten.flatten.using_ints)
def _flatten(state: Analysis, node: fx.Node) -> None:
    m = state.map_of(_a(node, 0))
    shape = state.shape(_a(node, 0))
    if m is None or shape is None:
        state.set_map(node, None)
        return
    ndim = len(shape)
    start = _norm_dim(int(_arg(node, 1, "start_dim", 0)), ndim)
    end = _norm_dim(int(_arg(node, 2, "end_dim", -1)), ndim)
    state.set_map(node, _merge_dims(state, node, m, shape, start, end))


def _merge_dims(
    state: Analysis, node: fx.Node, m: ChannelMap, shape: tuple[Any, ...], start: int, end: int
) -> ChannelMap | None:
    """The map after dims start..end are merged into one: channels become blocks."""
    if m.dim < start:
        return m
    if m.dim > end:
        return m.moved(m.dim - (end - start))
    if m.dim != start:
        state.freeze(m.groups, f"{node.name} interleaves these channels with other features")
        return None
    trailing = shape[start + 1 : end + 1]
    if not all(isinstance(s, int) for s in trailing):
        state.freeze(m.groups, f"{node.name} flattens a dimension of dynamic size")
        return None
    block = math.prod(trailing)
    segs = tuple(Seg(s.group, s.start * block, s.width, s.block * block) for s in m.segs)
    return ChannelMap(start, segs)


@handles(aten.view.default, aten.reshape.default, aten._unsafe_view.default)
def _view(state: Analysis, node: fx.Node) -> None:
    m = state.map_of(_a(node, 0))
    src, out = state.shape(_a(node, 0)), state.shape(node)
    if m is None or src is None or out is None:
        state.set_map(node, None)
        return
    new = _view_map(m, src, out)
    if new is None:
        state.freeze(
            m.groups,
            f"{node.name} splits these channels across dimensions "
            "(attention heads, channel shuffle)",
        )
        state.set_map(node, None)
        return
    sizes = _a(node, 1)
    # A literal size along the channel dim shrinks with the cut (-1 and symbols need nothing).
    if isinstance(sizes, (list, tuple)) and isinstance(sizes[new.dim], int) and sizes[new.dim] > 0:
        for seg in new.segs:
            if seg.group is not None:
                state.group(seg.group).arg_fixes.append(ArgFix(node.name, 1, new.dim, seg.block))
    state.set_map(node, new)


def _view_map(m: ChannelMap, src: tuple[Any, ...], out: tuple[Any, ...]) -> ChannelMap | None:
    """Find where the channel dim lands in a view: kept whole, or merged with trailing dims."""
    prefix = _signature(src[: m.dim])
    for j in range(len(out)):
        if _signature(out[:j]) != prefix:
            continue
        for k in range(m.dim, len(src)):
            merged = src[m.dim : k + 1]
            if not all(isinstance(s, int) for s in merged):
                break
            if out[j] == math.prod(merged):
                block = math.prod(merged[1:])
                segs = tuple(
                    Seg(s.group, s.start * block, s.width, s.block * block) for s in m.segs
                )
                return ChannelMap(j, segs)
    return None


def _signature(dims: tuple[Any, ...]) -> tuple[tuple[str, ...], int]:
    """A prefix of a shape, comparable across views: symbolic dims by name, ints multiplied."""
    syms = tuple(sorted(str(d) for d in dims if not isinstance(d, int)))
    return syms, math.prod(d for d in dims if isinstance(d, int))


# -- ops that combine tensors ----------------------------------------------------------------
_BINARY = [
    aten.add.Tensor,
    aten.sub.Tensor,
    aten.mul.Tensor,
    aten.div.Tensor,
    aten.add_.Tensor,
    aten.mul_.Tensor,
    aten.maximum.default,
    aten.minimum.default,
]


@handles(*_BINARY)
def _binary(state: Analysis, node: fx.Node) -> None:
    a, b = _a(node, 0), _a(node, 1)
    ma, mb = state.map_of(a), state.map_of(b)
    out_ndim = state.ndim(node) or 0
    aligned = [_align(state, x, mx, out_ndim) for x, mx in ((a, ma), (b, mb))]
    if ma is None and mb is None:
        state.set_map(node, None)
        return
    tracked = [(x, m) for x, m in zip((a, b), aligned, strict=True) if m is not None]
    if len(tracked) == 1:
        x, m = tracked[0]
        other = b if x is a else a
        if _broadcasts_over(state, other, m.dim, out_ndim) or _slice_param_operand(
            state, other, m, out_ndim
        ):
            state.set_map(node, m)
        else:
            state.freeze(
                m.groups,
                f"{node.name} combines these channels with a tensor that is not cut alongside",
            )
            state.set_map(node, None)
        return
    first, second = aligned[0], aligned[1]
    assert first is not None and second is not None
    if first.dim != second.dim or [(s.start, s.width, s.block) for s in first.segs] != [
        (s.start, s.width, s.block) for s in second.segs
    ]:
        state.freeze(
            first.groups + second.groups, f"{node.name} combines channels laid out differently"
        )
        state.set_map(node, None)
        return
    for s1, s2 in zip(first.segs, second.segs, strict=True):
        if s1.group is None or s2.group is None:
            state.freeze(
                [g for g in (s1.group, s2.group) if g is not None],
                f"{node.name} adds these channels to channels that cannot be cut",
            )
        else:
            state.union(s1.group, s2.group, node.name)
    state.set_map(node, first)


def _param_source(state: Analysis, value: Any) -> str | None:
    """The stored tensor behind `value`, directly or broadcast by `expand`."""
    if isinstance(value, fx.Node) and value.target in (aten.expand.default, aten.expand_as.default):
        value = value.args[0]
    return state.attr(value)


def _slice_param_operand(state: Analysis, other: Any, m: ChannelMap, out_ndim: int) -> bool:
    """A stored tensor meeting the channels elementwise (a position embedding, a layer-scale
    vector) is sliced with them. Returns False if `other` is not such a tensor."""
    path = _param_source(state, other)
    if path is None:
        return False
    shape = tuple(get_tensor(state.gm, path).shape)
    dim = m.dim - (out_ndim - len(shape))
    total = max(s.start + s.width * s.block for s in m.segs)
    if dim < 0 or shape[dim] != total:
        return False
    for seg in m.segs:
        if seg.group is not None:
            span = Span(dim, seg.start, seg.block)
            state.group(seg.group).channel_params.append(ParamSlice(path, span))
    return True


def _align(state: Analysis, x: Any, m: ChannelMap | None, out_ndim: int) -> ChannelMap | None:
    """The map in the output's dims (broadcasting aligns dims from the right)."""
    if m is None:
        return None
    return m.moved(m.dim + out_ndim - (state.ndim(x) or 0))


def _broadcasts_over(state: Analysis, other: Any, dim: int, out_ndim: int) -> bool:
    """True if `other` (untracked) has size 1 or no dim where the channels are."""
    if not isinstance(other, fx.Node):
        return True  # a Python scalar
    shape = state.shape(other)
    if shape is None:
        return False
    j = dim - (out_ndim - len(shape))
    return j < 0 or shape[j] == 1


@handles(aten.cat.default)
def _cat(state: Analysis, node: fx.Node) -> None:
    inputs = list(_a(node, 0))
    ndim = state.ndim(node) or 0
    dim = _norm_dim(int(_arg(node, 1, "dim", 0)), ndim)
    maps = [state.map_of(x) for x in inputs]
    if all(m is None for m in maps):
        state.set_map(node, None)
        return
    if any(m is not None and m.dim != dim for m in maps):
        _cat_across(state, node, inputs, maps, ndim)
        return
    segs: list[Seg] = []
    offset = 0
    for x, m in zip(inputs, maps, strict=True):
        shape = state.shape(x)
        size = shape[dim] if shape is not None else None
        if not isinstance(size, int):
            state.freeze(
                [g for mm in maps if mm for g in mm.groups],
                f"{node.name} concatenates a dynamic size",
            )
            state.set_map(node, None)
            return
        if m is None:
            segs.append(Seg(None, offset, size))
        else:
            segs.extend(Seg(s.group, s.start + offset, s.width, s.block) for s in m.segs)
        offset += size
    state.set_map(node, ChannelMap(dim, tuple(segs)))


def _cat_across(
    state: Analysis, node: fx.Node, inputs: list[Any], maps: list[ChannelMap | None], ndim: int
) -> None:
    """Concatenation along another dim (tokens, say): every part carries the same channels,
    so tracked parts are coupled and stored parts (a class token) are sliced with them."""
    tracked = [m for m in maps if m is not None]
    ref = tracked[0]
    layout = [(s.start, s.width, s.block) for s in ref.segs]
    if any(
        m.dim != ref.dim or [(s.start, s.width, s.block) for s in m.segs] != layout for m in tracked
    ):
        state.freeze(
            [g for m in tracked for g in m.groups],
            f"{node.name} concatenates channels laid out differently",
        )
        state.set_map(node, None)
        return
    for other in tracked[1:]:
        for s1, s2 in zip(ref.segs, other.segs, strict=True):
            if s1.group is not None and s2.group is not None:
                state.union(s1.group, s2.group, node.name)
    for x, m in zip(inputs, maps, strict=True):
        if m is None and not _slice_param_operand(state, x, ref, ndim):
            state.freeze(
                ref.groups,
                f"{node.name} concatenates these channels with a tensor that is not cut alongside",
            )
            state.set_map(node, None)
            return
    state.set_map(node, ref)


@handles(aten.slice.Tensor, aten.select.int, aten.narrow.default, aten.index_select.default)
def _slice(state: Analysis, node: fx.Node) -> None:
    m = state.map_of(_a(node, 0))
    ndim = state.ndim(_a(node, 0)) or 0
    dim = _norm_dim(int(_arg(node, 1, "dim", 0)), ndim)
    if m is None:
        state.set_map(node, None)
    elif dim == m.dim:
        state.freeze(m.groups, f"{node.name} selects some of these channels")
        state.set_map(node, None)
    elif node.target is aten.select.int:
        state.set_map(node, m.moved(m.dim - (1 if dim < m.dim else 0)))
    else:
        state.set_map(node, m)  # another dimension is cut down: the channels stay


# Shape bookkeeping ops: they read sizes, not values, and must not freeze anything.
for _op in (
    aten.sym_size.int,
    aten.sym_numel.default,
    aten.sym_stride.int,
    aten._assert_tensor_metadata.default,
):
    HANDLERS[_op] = lambda state, node: state.set_map(node, None)
