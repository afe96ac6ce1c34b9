"""Regrouping: making a group's unit coarser, so that its channels can be followed further.

Two operations change what one unit of a group is, everywhere the group has been seen:

- `coarsen(f)`: f consecutive channels become one unit. A view that splits the channels
  into (heads, head_dim) needs it: from there on a head is cut whole, its head_dim
  channels together, in every tensor, weight and size the group touches.
- `fold_parts(f)`: the channels are f equal parts whose channel c is one unit. A fused qkv
  projection split into its q, k and v parts needs it: head h of q is cut with head h of
  k and of v, at three offsets of the one weight.

Both only make the cuts coarser, so any plan of the regrouped group is a plan the
original allowed. Positions stay where they were; the `Span`s, `Seg`s, `ArgFix`es and
`Renorm`s of the group are rewritten (a unit's block grows, a folded span is repeated at
each part's offset), and so is every channel map already recorded for the group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from pruning.graph.groups import Consumer, ParamSlice, Span, Tap
from pruning.graph.tracking import ChannelMap, Seg, WalkState


def coarsen(state: WalkState, gid: int, factor: int, where: str) -> bool:
    """Make units of `factor` consecutive channels of the group. False (and the group
    frozen) if its width, or its conv-group parts, do not divide by `factor`."""
    g = state.group(gid)
    if factor == 1:
        return True
    if _interleaved(state, gid, where):
        return False
    if g.width % factor or (g.width // factor) % g.parts:
        state.freeze([gid], f"{where} needs units of {factor} of {g.width} channels")
        return False
    _rewrite(state, gid, g.width // factor, factor, lambda r: [_Run(r.offset, r.block * factor)])
    return True


def fold_parts(state: WalkState, gid: int, factor: int, where: str) -> bool:
    """Make the group `factor` equal parts whose channel c is one unit. False (and the group
    frozen) if its width does not divide, or it already has conv-group parts."""
    g = state.group(gid)
    if factor == 1:
        return True
    if _interleaved(state, gid, where):
        return False
    if g.width % factor or g.parts > 1:
        state.freeze([gid], f"{where} needs {factor} equal parts of {g.width} channels")
        return False
    part = g.width // factor
    _rewrite(
        state,
        gid,
        part,
        factor,
        lambda r: [_Run(r.offset + p * part * r.block, r.block) for p in range(factor)],
    )
    return True


def align(state: WalkState, first: ChannelMap, second: ChannelMap, where: str) -> bool:
    """Coarsen the finer of two runs of channels that cover the same positions with
    different blocks (query heads meeting the key heads they share), so that the two
    maps have one layout. False if they cannot be made alike."""
    if len(first.segs) != len(second.segs):
        return False
    for s1, s2 in zip(first.segs, second.segs, strict=True):
        if s1.start != s2.start or s1.width * s1.block != s2.width * s2.block:
            return False
        if s1.group is None or s2.group is None or s1.block == s2.block:
            continue
        fine, coarse = (s1, s2) if s1.block < s2.block else (s2, s1)
        if coarse.block % fine.block:
            return False
        assert fine.group is not None
        if not coarsen(state, fine.group, coarse.block // fine.block, where):
            return False
    return True


def _interleaved(state: WalkState, gid: int, where: str) -> bool:
    """True (and the group frozen) if its channels passed a channel shuffle: interleaved
    with other groups' there, their units cannot be regrouped as runs."""
    if not state.group(gid).shuffles:
        return False
    state.freeze([gid], f"{where} regroups channels that a channel shuffle interleaved")
    return True


# -- rewriting every record of a group ----------------------------------------------------
@dataclass(frozen=True)
class _Run:
    """Where one unit sits, for a span or a seg alike: first position and block."""

    offset: int
    block: int


# One run before regrouping -> its runs after (one for coarsen, one per part for fold_parts).
_Transform = Callable[[_Run], list[_Run]]


def _rewrite(state: WalkState, gid: int, width: int, growth: int, each: _Transform) -> None:
    """Apply `each` to every span and seg of the group; `growth`: channels per new unit."""
    root = state.root(gid)
    g = state.groups[root]
    g.width = width
    g.producers = [p for ps in g.producers for p in _param(ps, each)]
    g.channel_params = [p for ps in g.channel_params for p in _param(ps, each)]
    g.consumers = [c for cs in g.consumers for c in _consumer(cs, each)]
    g.arg_fixes = [replace(f, block=f.block * growth) for f in g.arg_fixes]
    g.renorms = [replace(r, block=r.block * growth) for r in g.renorms]
    g.unit *= growth
    state.resegment(
        root,
        lambda seg: [
            Seg(seg.group, r.offset, width, r.block) for r in each(_Run(seg.start, seg.block))
        ],
    )


def _span(span: Span, each: _Transform) -> list[Span]:
    return [Span(span.dim, r.offset, r.block) for r in each(_Run(span.offset, span.block))]


def _param(ps: ParamSlice, each: _Transform) -> list[ParamSlice]:
    return [ParamSlice(ps.path, s) for s in _span(ps.span, each)]


def _consumer(c: Consumer, each: _Transform) -> list[Consumer]:
    weights, taps = _span(c.weight.span, each), _span(c.tap.span, each)
    return [
        replace(c, weight=ParamSlice(c.weight.path, w), tap=Tap(c.tap.node, t))
        for w, t in zip(weights, taps, strict=True)
    ]
