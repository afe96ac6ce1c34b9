"""The vocabulary of graph analysis: channel groups and everything that changes with them.

A channel group is a set of channels that shrink together. Its *producers* create the
channels (weight rows of a Linear or Conv), *channel params* carry one entry per channel on
the way (BatchNorm, depthwise convs, LayerNorm), *consumers* read them (weight columns of
the next Linear or Conv), and *arg fixes* are op arguments that encode the width (view
sizes, conv `groups`). Every tensor is described by `ParamSlice`s, so surgery is the same
for every op: remove the positions of the dropped channels along one dimension. A `Plan`
says which channels of each group stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# What a criterion decides and surgery applies: group name -> indices of the channels kept,
# ascending. Plain data, so a plan can be saved, shown and replayed.
Plan = dict[str, list[int]]


@dataclass(frozen=True)
class Span:
    """Where a group's channels sit along one dimension of a tensor.

    Channel `c` of the group occupies positions `offset + c * pitch + b * step` for
    b < block: `offset` places a group inside a concatenation, `block` is the number of
    features one channel became when a feature map was flattened. Channels lie back to back
    (`pitch` = block) unless a channel shuffle interleaved them with other groups' (`stride`,
    and `step` between one channel's own positions).
    """

    dim: int
    offset: int = 0
    block: int = 1
    stride: int = 0  # positions from one channel to the next; 0: block * step
    step: int = 1

    @property
    def pitch(self) -> int:
        return self.stride or self.block * self.step

    @property
    def contiguous(self) -> bool:
        """Channels back to back, each one run: positions offset .. offset + width * block."""
        return self.pitch == self.block and self.step == 1

    def positions(self, channels: list[int] | range) -> list[int]:
        pitch, step = self.pitch, self.step
        return [self.offset + c * pitch + b * step for c in channels for b in range(self.block)]


@dataclass(frozen=True)
class ParamSlice:
    """A parameter or buffer (attribute path) holding a group's channels along `span.dim`."""

    path: str
    span: Span


@dataclass(frozen=True)
class Tap:
    """A place where the group's channels are read: node value, dim, offset, block."""

    node: str
    span: Span


@dataclass(frozen=True)
class Consumer:
    """A layer that reads the group: its weight columns are cut, its bias takes compensation."""

    node: str
    kind: str  # "linear" | "conv"
    weight: ParamSlice  # span.dim 1; 0 for a weight stored (in, out) (`x @ W`, HF's Conv1D)
    bias: str | None
    tap: Tap
    # A grouped convolution (groups > 1) holds, per output row, only the columns of its own
    # group: the columns of removed channels are local to each group (see surgery).
    groups: int = 1

    @property
    def transposed(self) -> bool:
        """Its weight is stored (in, out): HF's `Conv1D`, `x @ W`."""
        return self.weight.span.dim == 0

    @property
    def out_dim(self) -> int:
        """The weight's dim of output rows."""
        return 1 if self.transposed else 0


OUTPUT_SIZES = -1  # ArgFix.arg for a split's part sizes (the op becomes split_with_sizes)


@dataclass(frozen=True)
class ArgFix:
    """An op argument that encodes a width: `node.args[arg][item]` (item None: the arg itself).

    After a cut, the value shrinks by (removed channels) * `block`. A size given as a
    product node `x * k` (N * heads, where N is the batch) has its factor k shrunk instead,
    in a new node for this op alone (others may read the same product).
    """

    node: str
    arg: int
    item: int | None
    block: int = 1


@dataclass(frozen=True)
class Renorm:
    """A root-mean-square norm over the channels (RMSNorm) that the group passes.

    Its mean of squares must keep dividing by the original `count` after a cut, so that
    the cut equals zeroing the removed channels where the norm reads them: a `mean` node
    becomes sum / count; an `rms_norm` node gets its weight scaled by sqrt(count / kept)
    and its eps by count / kept. Each removed channel takes `block` positions of the dim.
    """

    node: str
    count: int
    block: int = 1


@dataclass(frozen=True)
class Shuffle:
    """A channel shuffle that the group's channels pass (`pruning.graph.shuffle`).

    After a cut its `groups` parts may differ in size, where a view to (groups, C / groups)
    would fail, so surgery rewrites it as a gather of the kept positions of `source`, in
    shuffled order (`pruning.shuffle_surgery`). `span`: where the group's channels sit in
    `source`, along `dim`.
    """

    node: str  # the op whose output is the shuffled tensor (a view, or `channel_shuffle`)
    source: str  # the tensor it shuffles
    dim: int
    groups: int
    span: Span


@dataclass
class ChannelGroup:
    """Channels cut together everywhere they travel."""

    name: str
    width: int
    kind: str
    producers: list[ParamSlice] = field(default_factory=list)
    channel_params: list[ParamSlice] = field(default_factory=list)
    consumers: list[Consumer] = field(default_factory=list)
    arg_fixes: list[ArgFix] = field(default_factory=list)
    renorms: list[Renorm] = field(default_factory=list)
    shuffles: list[Shuffle] = field(default_factory=list)
    members: list[str] = field(default_factory=list)  # producing layers coupled into this group
    # The channels fall into `parts` equal contiguous runs (the groups of a grouped
    # convolution that produces or reads them); every run must keep as many as the others.
    parts: int = 1
    # Channels of the layers' own width per cut unit: 1, or more where a view regrouped
    # them (`regroup`): head_dim for attention heads, times the query heads sharing a kv head.
    unit: int = 1
    # Attention heads (`kind == "head"`): under grouped-query attention, the query heads
    # cut with each key/value head (one unit).
    heads_per_unit: int = 1
    frozen_reason: str | None = None

    @property
    def prunable(self) -> bool:
        return self.frozen_reason is None

    @property
    def neurons_per_unit(self) -> int:
        """Neurons one cut unit removes, for budgets counted in neurons: a head's output
        features (head_dim, times the query heads sharing its key/value head), or the
        channels a view made one unit (`unit`)."""
        if self.kind == "head" and self.consumers:  # the output projection reads them all
            return max(c.weight.span.block for c in self.consumers)
        return self.unit

    @property
    def taps(self) -> list[Tap]:
        """Distinct places the group is read, in graph order."""
        seen: dict[Tap, None] = {}
        for c in self.consumers:
            seen.setdefault(c.tap, None)
        return list(seen)

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "width": self.width, "kind": self.kind}
        if len(self.members) > 1:
            out["coupled"] = self.members
        if self.parts > 1:
            out["parts"] = self.parts
        if self.kind == "head":
            out["heads"] = self.width
            if self.consumers:
                out["head_dim"] = self.neurons_per_unit // self.heads_per_unit
            if self.heads_per_unit > 1:
                out["query_heads"] = self.width * self.heads_per_unit
        elif self.unit > 1:
            out["unit"] = self.unit
        if self.frozen_reason:
            out["reason"] = self.frozen_reason
        return out


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: list[int | None]  # None: a dynamic dimension (normally the batch)
    dtype: str


@dataclass
class GraphAnalysis:
    groups: list[ChannelGroup]  # every group, graph order of its first producer
    inputs: list[InputSpec]

    @property
    def prunable(self) -> list[ChannelGroup]:
        return [g for g in self.groups if g.prunable]

    @property
    def frozen(self) -> list[ChannelGroup]:
        return [g for g in self.groups if not g.prunable]

    def group(self, name: str) -> ChannelGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)
