"""Channel shuffles, followed as a permutation of positions.

ShuffleNet mixes its two branches by viewing (N, C, ...) as (N, g, C / g, ...), swapping
those two dims and viewing back; `channel_shuffle` does the same in one op. Position
i = p * (C / g) + q (position q of part p) goes to q * g + p. A run of channels inside
one part keeps its order, its channels g times further apart (`Seg.stride`), so the runs
of different parts interleave; a run that crosses a part edge is divided there first
(`divide`). Each group records the shuffle (`Shuffle`): after a cut the parts may differ
in size, and surgery rewrites the shuffle as a gather of the kept positions.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import fx

from pruning.graph.dims import COPIES, VIEWS, shape_product
from pruning.graph.divide import divide_at_edges
from pruning.graph.groups import Shuffle
from pruning.graph.registry import HandlerTable, argument, norm_dim, positional
from pruning.graph.tracking import ChannelMap, WalkState

aten = torch.ops.aten
HANDLERS = HandlerTable()



@HANDLERS.handles(aten.channel_shuffle.default, aten.native_channel_shuffle.default)
def _channel_shuffle(state: WalkState, node: fx.Node) -> None:
    src = positional(node, 0)
    m = state.map_of(src)
    if m is None:
        state.set_map(node, None)
        return
    if m.dim != 1:  # it shuffles dim 1, and the channels are elsewhere: they stay
        state.set_map(node, m)
        return
    state.set_map(node, permuted(state, src, node, 1, int(argument(node, 1, "groups"))))


def shuffle_start(state: WalkState, node: fx.Node) -> bool:
    """If view `node` starts a channel shuffle (view to (g, C / g), swap, view back), follow
    it to its end: the end's map is decided ahead (`WalkState.ahead`), the ops between
    carry none. False if it is no such view."""
    src = positional(node, 0)
    m = state.map_of(src)
    end = _shuffle_end(state, node)
    if m is None or end is None:
        return False
    groups = int(state.shape(node)[m.dim])  # type: ignore[index]
    state.ahead[end.name] = permuted(state, src, end, m.dim, groups)
    state.set_map(node, None)
    return True


def _shuffle_end(state: WalkState, node: fx.Node) -> fx.Node | None:
    """The view that ends the shuffle `node` starts, or None if `node` starts none."""
    m = state.map_of(positional(node, 0))
    src, out = state.shape(positional(node, 0)), state.shape(node)
    if m is None or m.period or src is None or out is None or len(out) != len(src) + 1:
        return None
    d = m.dim
    g, per, size = out[d], out[d + 1] if d + 1 < len(out) else None, src[d]
    if not all(isinstance(n, int) for n in (g, per, size)) or g < 2 or g * per != size:
        return None
    if shape_product(out[:d]) != shape_product(src[:d]):
        return None
    swap = _only_user(node)
    if swap is None or not _swaps(state, swap, d):
        return None
    end = _only_user(swap)
    while end is not None and end.target in COPIES:
        end = _only_user(end) if len(end.users) == 1 else None
    shape = state.shape(end) if end is not None else None
    if end is None or not _merges_back(end, d) or shape is None or len(shape) != len(src):
        return None
    if shape[d] != size or shape_product(shape[:d]) != shape_product(src[:d]):
        return None
    return end


def _merges_back(node: fx.Node, d: int) -> bool:
    """A view, or a `flatten` of dims d and d + 1 (the shapes are checked by the caller)."""
    if node.target is aten.flatten.using_ints:
        ndim = WalkState.ndim(positional(node, 0)) or 0
        dims = (argument(node, 1, "start_dim", 0), argument(node, 2, "end_dim", -1))
        return [norm_dim(int(x), ndim) for x in dims] == [d, d + 1]
    return node.target in VIEWS


def _only_user(node: fx.Node) -> fx.Node | None:
    return next(iter(node.users)) if len(node.users) == 1 else None


def _swaps(state: WalkState, node: fx.Node, d: int) -> bool:
    """True if `node` swaps dims d and d + 1 of its input, and nothing else."""
    ndim = state.ndim(positional(node, 0)) or 0
    if node.target is aten.transpose.int:
        dims = {norm_dim(int(positional(node, i)), ndim) for i in (1, 2)}
        return dims == {d, d + 1}
    if node.target is aten.permute.default:
        order = [norm_dim(int(i), ndim) for i in positional(node, 1)]
        expected = list(range(ndim))
        expected[d], expected[d + 1] = d + 1, d
        return order == expected
    return False


def permuted(
    state: WalkState, src: fx.Node, end: fx.Node, dim: int, groups: int
) -> ChannelMap | None:
    """The map of `src` shuffled into `groups` parts along `dim`, recorded in its groups;
    None (the groups frozen) if a channel's positions straddle two parts."""
    size = state.shape(src)[dim]  # type: ignore[index]
    m = state.map_of(src)
    if not isinstance(size, int) or size % groups:
        state.freeze(m.groups if m else [], f"{end.name} shuffles a dynamic number of channels")
        return None
    per = size // groups
    m = divide_at_edges(state, end.name, src, [per * p for p in range(1, groups)])
    if m is None:
        return None
    segs = []
    for seg in m.segs:
        part = seg.start // per
        segs.append(
            replace(
                seg,
                start=(seg.start - part * per) * groups + part,
                stride=seg.pitch * groups,
                step=seg.step * groups,
            )
        )
        if seg.group is not None:
            shuffle = Shuffle(end.name, src.name, dim, groups, seg.span(dim))
            state.group(seg.group).shuffles.append(shuffle)
    return ChannelMap(dim, tuple(sorted(segs, key=lambda s: s.start)))
