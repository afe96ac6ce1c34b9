"""Concatenation and split along the channels: each group keeps its own run of positions.

`cat` along the channels places each part's groups at an offset (DenseNet, Inception
branches); `split`/`chunk` along them hand each part the runs inside it, and the part
sizes shrink with the cut. A split through one layer's channels (ShuffleNet's channel
split) would shrink the parts unevenly, so it freezes. Concatenation along another dim
couples the parts instead (`coupling.couple_cat_along_other_dim`).
"""

from __future__ import annotations

import operator

import torch
from torch import fx

from pruning.graph.coupling import couple_cat_along_other_dim
from pruning.graph.groups import OUTPUT_SIZES, ArgFix
from pruning.graph.registry import HandlerTable, argument, norm_dim, positional
from pruning.graph.regroup import fold_parts
from pruning.graph.tracking import ChannelMap, Seg, WalkState

aten = torch.ops.aten
HANDLERS = HandlerTable()


@HANDLERS.handles(aten.cat.default)
def _cat(state: WalkState, node: fx.Node) -> None:
    inputs = list(positional(node, 0))
    ndim = state.ndim(node) or 0
    dim = norm_dim(int(argument(node, 1, "dim", 0)), ndim)
    maps = [state.map_of(x) for x in inputs]
    if all(m is None for m in maps):
        state.set_map(node, None)
        return
    if any(m is not None and m.dim != dim for m in maps):
        couple_cat_along_other_dim(state, node, inputs, maps, ndim)
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


@HANDLERS.handles(aten.split.Tensor, aten.split_with_sizes.default, aten.chunk.default)
def _split(state: WalkState, node: fx.Node) -> None:
    """Splits along the channels hand each part the segments inside it; a layer's channels
    split between parts (ShuffleNet's channel split) freeze, since their parts would shrink
    unevenly. The part sizes are width-encoding arguments."""
    m = state.map_of(positional(node, 0))
    vals = node.meta.get("val")
    if m is None or not isinstance(vals, (list, tuple)):
        state.set_map(node, None)
        return
    ndim = state.ndim(positional(node, 0)) or 0
    dim = norm_dim(int(argument(node, 2, "dim", 0)), ndim)
    if dim != m.dim:
        state.parts[node.name] = [m] * len(vals)
        state.set_map(node, m)
        return
    sizes = [v.shape[dim] for v in vals]
    if not all(isinstance(n, int) for n in sizes):
        state.freeze(m.groups, f"{node.name} splits these channels into dynamic sizes")
        state.set_map(node, None)
        return
    if _straddles_any(m, sizes):
        m = _folded(state, node, m, sizes)
        if m is None:
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


def _straddles_any(m: ChannelMap, sizes: list[int]) -> bool:
    begins = [sum(sizes[:i]) for i in range(len(sizes))]
    return any(_straddles(m, b, n) for b, n in zip(begins, sizes, strict=True))


def _folded(state: WalkState, node: fx.Node, m: ChannelMap, sizes: list[int]) -> ChannelMap | None:
    """One layer's channels split into equal parts (a fused qkv projection's q, k and v):
    channel c of every part is cut together (`regroup.fold_parts`). Anything else freezes."""
    seg = m.segs[0]
    whole = len(m.segs) == 1 and seg.group is not None and seg.start == 0
    if whole and len(set(sizes)) == 1 and seg.width * seg.block == sum(sizes):
        assert seg.group is not None
        if fold_parts(state, seg.group, len(sizes), node.name):
            return state.map_of(positional(node, 0))
    state.freeze(m.groups, f"{node.name} splits a layer's channels between its parts")
    state.set_map(node, None)
    return None


def _straddles(m: ChannelMap, begin: int, size: int) -> bool:
    """True if a run of channels crosses either edge of the part [begin, begin + size)."""
    end = begin + size
    return any(
        s.start < end < s.start + s.width * s.block or s.start < begin < s.start + s.width * s.block
        for s in m.segs
    )


@HANDLERS.handles(aten.unbind.int)
def _unbind(state: WalkState, node: fx.Node) -> None:
    """`unbind` along another dim (the q, k, v parts of a fused projection, folded into
    one group by the view before): every part carries the channels, one dim lower."""
    m = state.map_of(positional(node, 0))
    vals = node.meta.get("val")
    ndim = state.ndim(positional(node, 0)) or 0
    dim = norm_dim(int(argument(node, 1, "dim", 0)), ndim)
    if m is None or not isinstance(vals, (list, tuple)):
        state.set_map(node, None)
        return
    if dim == m.dim:
        state.freeze(m.groups, f"{node.name} takes these channels apart one by one")
        state.set_map(node, None)
        return
    state.parts[node.name] = [m.moved(m.dim - (1 if dim < m.dim else 0))] * len(vals)
    state.set_map(node, None)


@HANDLERS.handles(operator.getitem)
def _getitem(state: WalkState, node: fx.Node) -> None:
    """One output of a split (its own map), or of a multi-output op."""
    src, index = node.args
    parts = state.parts.get(src.name) if isinstance(src, fx.Node) else None
    if parts is not None:  # one map per output (a split)
        state.set_map(node, parts[int(index)])  # type: ignore[arg-type]
        return
    # Multi-output ops (BatchNorm, max-pool with indices) put the channels in output 0.
    state.set_map(node, state.map_of(src) if index == 0 else None)
    if index != 0:
        state.freeze_map(src, f"{node.name} uses a secondary output of {src}")
