"""Dividing groups: a split whose edges fall inside a group's run of channels.

ShuffleNet splits its channels in halves after every shuffle: the first half goes on, the
second into the branch. After a shuffle, each half holds some channels of every layer
that made the tensor, so no part holds a whole group. Each part's channels become a group
of their own: the group is divided at the channel where the part ends, and every record
of it (weight rows and columns, per-channel tensors, taps, maps) is split the same way.

Dividing is sound because a group only ever couples channel c with channel c of its other
tensors: nothing ties one channel of a group to another, except conv-group parts (equal
kept counts per part), which refuse. Arguments that shrink with the group (view sizes, a
depthwise conv's `groups`) shrink with each piece, by its own removed channels.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

from torch import fx

from pruning.graph.groups import ChannelGroup, Consumer, ParamSlice, Span, Tap
from pruning.graph.tracking import ChannelMap, Seg, WalkState


def divide_at_edges(
    state: WalkState, where: str, src: fx.Node, edges: list[int]
) -> ChannelMap | None:
    """The map of `src` with no run crossing a position in `edges`: the groups of runs that
    cross one are divided there (everywhere they are recorded). None, and the groups
    frozen, if an edge falls inside one channel's positions or a group cannot be divided."""
    m = state.map_of(src)
    assert m is not None
    cuts: dict[int, set[int]] = {}
    for seg in m.segs:
        for edge in edges:
            if not seg.start < edge < seg.end:
                continue
            k = -(-(edge - seg.start) // seg.pitch)  # channels starting before the edge
            last = replace(seg, start=seg.start + (k - 1) * seg.pitch, width=1)
            if last.end > edge:
                state.freeze(m.groups, f"{where} splits one channel's positions between parts")
                return None
            if seg.group is not None:
                cuts.setdefault(state.root(seg.group), set()).add(k)
    for gid, at in cuts.items():
        if not divide(state, gid, sorted(at), where):
            state.freeze(m.groups, f"{where} splits the channels of a grouped convolution")
            return None
    m = state.map_of(src)  # as `divide` rewrote it
    assert m is not None
    segs: list[Seg] = []
    for seg in m.segs:
        segs.extend(_untracked_pieces(seg, edges) if seg.group is None else [seg])
    return replace(m, segs=tuple(sorted(segs, key=lambda s: s.start)))


def _untracked_pieces(seg: Seg, edges: list[int]) -> list[Seg]:
    """Channels no group owns need no division: their run is cut at the edges."""
    pieces, first = [], 0
    for edge in [*edges, seg.end]:
        k = min(seg.width, max(first, -(-(edge - seg.start) // seg.pitch)))
        if k > first:
            pieces.append(replace(seg, start=seg.start + first * seg.pitch, width=k - first))
            first = k
    return pieces


def divide(state: WalkState, gid: int, at: list[int], where: str) -> bool:
    """Divide the group at channels `at` (ascending, inside it): channels before at[0]
    stay in it, each further run becomes a new group. False (and the group frozen) if it
    has conv-group parts, whose equal counts tie its runs together."""
    root = state.root(gid)
    g = state.groups[root]
    if g.parts > 1:
        state.freeze([root], f"{where} splits the channels of a grouped convolution")
        return False
    origin, base, offset = state.pieces.get(root, (root, g.name, 0))
    bounds = [0, *at, g.width]
    ids = [root]
    for lo, hi in pairwise(bounds[1:]):
        piece = state.new_group(_name(base, offset + lo, offset + hi), hi - lo, g.kind)
        state.pieces[piece] = (origin, base, offset + lo)
        _fill(state.groups[piece], g, lo, hi)
        ids.append(piece)
    state.resegment(
        root,
        lambda seg: [
            replace(seg, group=gid, start=seg.start + lo * seg.pitch, width=hi - lo)
            for gid, (lo, hi) in zip(ids, pairwise(bounds), strict=True)
        ],
    )
    _claim_pieces(state, g, ids, bounds)
    first = state.groups[root]
    _fill(first, replace(g), 0, bounds[1])
    first.name = _name(base, offset, offset + bounds[1])
    state.pieces[root] = (origin, base, offset)
    return True


def _name(base: str, lo: int, hi: int) -> str:
    return f"{base}[{lo}:{hi}]"


def _fill(piece: ChannelGroup, g: ChannelGroup, lo: int, hi: int) -> None:
    """Give `piece` the records of channels lo..hi of `g`."""
    piece.width = hi - lo
    piece.producers = [_param(p, lo) for p in g.producers]
    piece.channel_params = [_param(p, lo) for p in g.channel_params]
    piece.consumers = [_consumer(c, lo) for c in g.consumers]
    piece.shuffles = [replace(s, span=_span(s.span, lo)) for s in g.shuffles]
    piece.arg_fixes = list(g.arg_fixes)  # each piece shrinks them by its own removed ones
    piece.renorms = list(g.renorms)
    piece.members = [_name(m, lo, hi) for m in g.members]
    piece.unit, piece.heads_per_unit = g.unit, g.heads_per_unit
    piece.frozen_reason = g.frozen_reason


def _span(span: Span, lo: int) -> Span:
    return replace(span, offset=span.offset + lo * span.pitch)


def _param(ps: ParamSlice, lo: int) -> ParamSlice:
    return ParamSlice(ps.path, _span(ps.span, lo))


def _consumer(c: Consumer, lo: int) -> Consumer:
    return replace(
        c,
        weight=_param(c.weight, lo),
        tap=Tap(c.tap.node, _span(c.tap.span, lo)),
    )


def _claim_pieces(state: WalkState, g: ChannelGroup, ids: list[int], bounds: list[int]) -> None:
    """Stored tensors the group claimed: each piece claims its own entries."""
    for ps in (*g.producers, *g.channel_params):
        key = (ps.path, ps.span.dim, ps.span.offset)
        if key not in state.stored or state.root(state.stored[key]) != ids[0]:
            continue
        for gid, lo in zip(ids[1:], bounds[1:-1], strict=True):
            state.stored[(ps.path, ps.span.dim, ps.span.offset + lo * ps.span.pitch)] = gid
