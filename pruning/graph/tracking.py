"""What the walk knows about each tensor: channel maps, and groups coupled by union-find.

A `ChannelMap` says which dimension of a tensor carries channels and which runs of it
(`Seg`s) belong to which group: offsets place a group inside a concatenation, blocks
stand for a channel flattened into several features. `WalkState` holds the map of every
node seen so far and the groups, which handlers couple (`union`), constrain to equal
parts (grouped convolutions) or freeze with a reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import fx

from pruning.graph.groups import ChannelGroup, Span


@dataclass(frozen=True)
class Seg:
    """A run of channels along the tracked dimension: `width` channels of `group`
    (None: channels no group owns, such as the image's), starting at position `start`,
    each channel `block` positions long."""

    group: int | None
    start: int
    width: int
    block: int = 1
    # Interleaved by a channel shuffle (`shuffle`): from one channel to the next, and
    # between one channel's own positions (see `Span`). Only the ops in `walk.INTERLEAVED`
    # read such a run; any other op freezes its group.
    stride: int = 0
    step: int = 1

    @property
    def pitch(self) -> int:
        return self.stride or self.block * self.step

    @property
    def interleaved(self) -> bool:
        return self.pitch != self.block or self.step != 1

    @property
    def end(self) -> int:
        """One past its last position."""
        return self.start + (self.width - 1) * self.pitch + (self.block - 1) * self.step + 1

    def spread(self, k: int) -> Seg | None:
        """This run after each position of its dim became `k` (its dim merged with the dims
        after it): None if one channel's positions would not be evenly spaced."""
        if k == 1:
            return self
        if self.step != 1 and self.block > 1:
            return None
        stride = self.pitch * k if self.interleaved else 0
        return Seg(self.group, self.start * k, self.width, self.block * k, stride)

    def span(self, dim: int) -> Span:
        """Where its channels sit along `dim` of a tensor laid out as this run."""
        if not self.interleaved:
            return Span(dim, self.start, self.block)
        if self.block == 1:  # one position per channel: only the pitch matters
            return Span(dim, self.start, 1, self.pitch)
        return Span(dim, self.start, self.block, self.stride, self.step)


@dataclass(frozen=True)
class ChannelMap:
    """Where a tensor's tracked channels are: dim `dim`, in runs `segs`.

    `period` > 0: the dim also holds a batch (MultiheadAttention views (L, N, E) as
    (L, N * heads, head_dim)): the runs repeat every `period` positions, once per sample.
    Only the ops in `walk.PERIODIC` read such a map; any other op freezes its groups.
    """

    dim: int
    segs: tuple[Seg, ...]
    period: int = 0

    @property
    def groups(self) -> list[int]:
        return [s.group for s in self.segs if s.group is not None]

    @property
    def interleaved(self) -> bool:
        """A channel shuffle interleaved some of its runs (`Seg.stride`)."""
        return any(s.interleaved for s in self.segs)

    def moved(self, dim: int) -> ChannelMap:
        return ChannelMap(dim, self.segs, self.period)


class WalkState:
    """Mutable state of one analysis: channel maps per node and groups (with union-find)."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.maps: dict[str, ChannelMap | None] = {}
        self.parts: dict[str, list[ChannelMap | None]] = {}  # per output of a split
        # (path, dim, offset) of a stored tensor -> the group whose channels it holds there:
        # a second group reaching the same entries (a layer called twice, one bias shared by
        # two layers' heads) is united with the first, so one cut serves both.
        self.stored: dict[tuple[str, int, int], int] = {}
        # A split of a stored vector whose parts are layers' biases -> the group of the first
        # part (`param_trace.produce_part`): the others are united with it.
        self.split_parts: dict[str, int] = {}
        # Maps decided ahead for nodes not visited yet (the end of a channel shuffle,
        # `shuffle`): the walk sets them instead of calling the node's handler.
        self.ahead: dict[str, ChannelMap | None] = {}
        # A group divided from another (`divide`) -> (that group's id and name, the piece's
        # first channel there): names the pieces and lists them in that group's place.
        self.pieces: dict[int, tuple[int, str, int]] = {}
        self.groups: list[ChannelGroup] = []
        self._parent: list[int] = []

    # -- groups ---------------------------------------------------------------------------
    def new_group(self, name: str, width: int, kind: str) -> int:
        taken = {g.name for g in self.groups}  # a tied table names two groups alike
        unique, n = name, 1
        while unique in taken:
            n += 1
            unique = f"{name}.{n}"
        self.groups.append(ChannelGroup(name=unique, width=width, kind=kind, members=[unique]))
        self._parent.append(len(self._parent))
        return len(self.groups) - 1

    def claim(self, path: str, span: Span, gid: int, where: str) -> None:
        """Record that `gid`'s channels sit in stored tensor `path` at `span`."""
        key = (path, span.dim, span.offset)
        owner = self.stored.setdefault(key, gid)
        if owner != gid:
            self.union(owner, gid, f"{where} ({path} holds both)")

    def root(self, gid: int) -> int:
        while self._parent[gid] != gid:
            self._parent[gid] = self._parent[self._parent[gid]]
            gid = self._parent[gid]
        return gid

    def group(self, gid: int) -> ChannelGroup:
        return self.groups[self.root(gid)]

    def union(self, a: int, b: int, where: str) -> None:
        """Couple two groups: they will be cut alike (their channels meet elementwise)."""
        ra, rb = self.root(a), self.root(b)
        if ra == rb:
            return
        ga, gb = self.groups[ra], self.groups[rb]
        if ga.width != gb.width:
            self.freeze([ra, rb], f"{where} combines groups of different widths")
            return
        first, second = (ra, rb) if ra < rb else (rb, ra)
        g1, g2 = self.groups[first], self.groups[second]
        self._parent[second] = first
        g1.producers += g2.producers
        g1.channel_params += g2.channel_params
        g1.consumers += g2.consumers
        g1.arg_fixes += g2.arg_fixes
        g1.renorms += g2.renorms
        g1.shuffles += g2.shuffles
        g1.members += g2.members
        g1.kind = g1.kind if g1.kind == g2.kind else "coupled"
        g1.unit = max(g1.unit, g2.unit)
        g1.heads_per_unit = max(g1.heads_per_unit, g2.heads_per_unit)
        if g1.frozen_reason is None:
            g1.frozen_reason = g2.frozen_reason
        self.constrain(first, g2.parts, where)

    def constrain(self, gid: int, parts: int, where: str) -> None:
        """Require equal kept counts in each of `parts` equal runs of the group's channels.

        Two partitions into equal contiguous runs are both respected by the partition into
        lcm(a, b) runs when that divides the width; otherwise the group cannot be cut.
        """
        g = self.group(gid)
        combined = math.lcm(g.parts, parts)
        if g.width % combined:
            self.freeze([gid], f"{where} needs {parts} equal parts of {g.width} channels")
            return
        g.parts = combined

    def freeze(self, gids: list[int], reason: str) -> None:
        for gid in gids:
            g = self.group(gid)
            if g.frozen_reason is None:
                g.frozen_reason = reason

    def freeze_map(self, node: fx.Node | Any, reason: str) -> None:
        m = self.map_of(node)
        if m is not None:
            self.freeze(m.groups, reason)

    def resegment(self, root: int, each: Callable[[Seg], list[Seg]]) -> None:
        """Replace every run of group `root` in every recorded map (values, split parts,
        maps decided ahead) by the runs `each` gives: a group regrouped or divided."""

        def remap(m: ChannelMap | None) -> ChannelMap | None:
            if m is None:
                return None
            segs = [
                new
                for seg in m.segs
                for new in (
                    [seg] if seg.group is None or self.root(seg.group) != root else each(seg)
                )
            ]
            return replace(m, segs=tuple(sorted(segs, key=lambda s: s.start)))

        self.maps = {name: remap(m) for name, m in self.maps.items()}
        self.parts = {name: [remap(m) for m in parts] for name, parts in self.parts.items()}
        self.ahead = {name: remap(m) for name, m in self.ahead.items()}

    # -- values ---------------------------------------------------------------------------
    def map_of(self, arg: Any) -> ChannelMap | None:
        return self.maps.get(arg.name) if isinstance(arg, fx.Node) else None

    def set_map(self, node: fx.Node, m: ChannelMap | None) -> None:
        if m is not None and not m.groups:
            m = None  # nothing prunable travels here
        self.maps[node.name] = m

    @staticmethod
    def shape(node: Any) -> tuple[Any, ...] | None:
        val = node.meta.get("val") if isinstance(node, fx.Node) else None
        return tuple(val.shape) if isinstance(val, torch.Tensor) else None

    @staticmethod
    def ndim(node: Any) -> int | None:
        val = node.meta.get("val") if isinstance(node, fx.Node) else None
        return val.dim() if isinstance(val, torch.Tensor) else None

    def attr(self, arg: Any) -> str | None:
        """The attribute path when `arg` is a stored parameter or buffer."""
        if isinstance(arg, fx.Node) and arg.op == "get_attr":
            return str(arg.target)
        return None

    def result(self) -> list[ChannelGroup]:
        roots: list[tuple[tuple[int, int], ChannelGroup]] = []
        for gid, g in enumerate(self.groups):
            if self.root(gid) != gid:
                continue
            if g.frozen_reason is None and not g.consumers:
                g.frozen_reason = "no layer consumes these channels"
            origin, _, first = self.pieces.get(gid, (gid, "", 0))
            roots.append(((origin, first), g))
        return [g for _, g in sorted(roots, key=lambda r: r[0])]
