"""Channel groups: which neurons of an exported graph can be cut, and what must change with them.

A channel group is one set of channels that shrinks together: a producer's output features,
every op that passes them through (activations, dropout, BatchNorm with its per-channel
parameters), and every consumer that reads them (the input features of the next Linear).
An op the analysis does not understand freezes the group, with a reason; a group whose
channels reach the model's outputs is frozen too.

The analysis works on the unlifted module (`ExportedProgram.module()`), where parameters are
`get_attr` nodes named by their attribute path; surgery edits the same module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import fx

aten = torch.ops.aten

# Elementwise ops that keep every channel where it is and see one value at a time.
_ELEMENTWISE = {
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
    aten.mish.default,
    aten.softplus.default,
    aten.selu.default,
    aten.celu.default,
    aten.clone.default,
    aten.contiguous.default,
    aten.alias.default,
    aten.detach.default,
}
_DROPOUT = {aten.dropout.default, aten.feature_dropout.default, aten.alpha_dropout.default}
_BATCH_NORM = {aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default}
_LINEAR = {aten.linear.default}


@dataclass(frozen=True)
class LinearUse:
    """A Linear node: `weight` (out, in) and optional `bias` are attribute paths."""

    node: str
    weight: str
    bias: str | None


@dataclass(frozen=True)
class Consumer:
    layer: LinearUse
    tap: str  # the node whose output this consumer reads: the activation as it sees it


@dataclass
class ChannelGroup:
    """Channels produced by one layer, cut together everywhere they travel."""

    name: str
    width: int
    producer: LinearUse
    kind: str = "linear"
    consumers: list[Consumer] = field(default_factory=list)
    # Per-channel tensors along the path (BatchNorm weight, bias, running stats): sliced alike.
    channel_params: list[str] = field(default_factory=list)
    members: list[str] = field(default_factory=list)  # pass-through nodes carrying the channels
    frozen_reason: str | None = None

    @property
    def tap(self) -> str:
        """The activation the statistics describe: what the first consumer reads."""
        return self.consumers[0].tap

    @property
    def prunable(self) -> bool:
        return self.frozen_reason is None

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "width": self.width, "kind": self.kind}
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
    groups: list[ChannelGroup]  # every group, graph order
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


def _attr(node: object) -> str | None:
    if isinstance(node, fx.Node) and node.op == "get_attr":
        return str(node.target)
    return None


def _arg(node: fx.Node, index: int, name: str) -> object:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name)


def linear_use(node: fx.Node) -> LinearUse | None:
    """The Linear at `node`, if its weight and bias are parameters of the module."""
    if node.op != "call_function" or node.target not in _LINEAR:
        return None
    weight = _attr(_arg(node, 1, "weight"))
    bias_arg = _arg(node, 2, "bias")
    bias = _attr(bias_arg)
    if weight is None or (bias_arg is not None and bias is None):
        return None
    return LinearUse(node=node.name, weight=weight, bias=bias)


def _layer_name(weight_path: str) -> str:
    return weight_path[: -len(".weight")] if weight_path.endswith(".weight") else weight_path


def _ndim(node: fx.Node) -> int | None:
    val = node.meta.get("val")
    return val.dim() if isinstance(val, torch.Tensor) else None


def analyse(gm: fx.GraphModule) -> GraphAnalysis:
    """Find the channel groups of an unlifted exported module.

    Args:
        gm: `ExportedProgram.module()` of the program.

    Returns:
        Every group in graph order, prunable or frozen (with a reason), and the inputs.
    """
    groups: list[ChannelGroup] = []
    for node in gm.graph.nodes:
        use = linear_use(node)
        if use is None:
            continue
        weight = gm.get_parameter(use.weight)
        group = ChannelGroup(name=_layer_name(use.weight), width=int(weight.shape[0]), producer=use)
        _follow(gm, node, group)
        groups.append(group)
    return GraphAnalysis(groups=groups, inputs=_inputs(gm))


def _follow(gm: fx.GraphModule, start: fx.Node, group: ChannelGroup) -> None:
    """Walk every use of the producer's output; freeze the group on anything not understood."""
    out_dim = _ndim(start)
    pending = [start]
    seen: set[str] = set()
    while pending:
        node = pending.pop()
        for user in node.users:
            if user.name in seen:
                continue  # reached again by another path: already classified
            seen.add(user.name)
            reason = _visit(gm, node, user, group, out_dim)
            if reason is None and user.name in group.members:
                pending.append(user)
            elif reason and group.frozen_reason is None:
                group.frozen_reason = reason
    if group.frozen_reason is None and not group.consumers:
        group.frozen_reason = "no layer consumes these channels"


def _visit(
    gm: fx.GraphModule, src: fx.Node, user: fx.Node, group: ChannelGroup, ndim: int | None
) -> str | None:
    """Classify `user` (which reads `src`); returns a freeze reason, or None if understood."""
    if user.op == "output":
        return "its channels are a model output"
    target = user.target
    if user.op == "call_function" and (target in _ELEMENTWISE or target in _DROPOUT):
        if user.args[0] is not src:
            return f"{user.name} uses the channels in an unsupported position"
        group.members.append(user.name)
        return None
    if user.op == "call_function" and target in _BATCH_NORM:
        if ndim != 2:
            return f"BatchNorm {user.name} normalises a dimension other than these features"
        names = ("weight", "bias", "running_mean", "running_var")
        args = [_arg(user, i + 1, name) for i, name in enumerate(names)]
        if user.args[0] is not src:
            return f"BatchNorm {user.name} uses the channels in an unsupported position"
        # Every per-channel tensor must be a stored parameter or buffer, to be sliced alike.
        params = [_attr(a) for a in args if a is not None]
        if any(p is None for p in params) or args[2] is None or args[3] is None:
            return f"BatchNorm {user.name} has statistics that are not stored buffers"
        group.channel_params.extend(p for p in params if p is not None)
        group.members.append(user.name)
        return None
    use = linear_use(user)
    if use is not None:
        if user.args[0] is not src:
            return f"{user.name} uses the channels as a weight"
        group.consumers.append(Consumer(layer=use, tap=src.name))
        return None
    return f"operation {target} ({user.name}) is not supported on these channels yet"


def _inputs(gm: fx.GraphModule) -> list[InputSpec]:
    specs = []
    for node in gm.graph.nodes:
        if node.op != "placeholder":
            continue
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            continue
        shape: list[int | None] = [s if isinstance(s, int) else None for s in val.shape]
        specs.append(
            InputSpec(name=node.name, shape=shape, dtype=str(val.dtype).replace("torch.", ""))
        )
    return specs
