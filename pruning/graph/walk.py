"""Finding channel groups in an exported graph, without the model's Python classes.

`analyse` walks the unlifted module (`ExportedProgram.module()`) once, in graph order, and
hands each node to the handler of its op: the families in `layers`, `matmul`,
`passthrough`, `reshape`, `coupling` and `concat`, combined here into one table. They keep
a channel map for every tensor (`tracking`), start, couple and feed groups, and freeze what
they cannot follow. An op without a handler that touches tracked channels freezes their
groups, with a reason; the model's outputs are never cut.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

from pruning.graph.attention import HANDLERS as ATTENTION
from pruning.graph.concat import HANDLERS as CONCAT
from pruning.graph.coupling import HANDLERS as COUPLING
from pruning.graph.groups import GraphAnalysis, InputSpec
from pruning.graph.layers import HANDLERS as LAYERS
from pruning.graph.matmul import HANDLERS as MATMUL
from pruning.graph.passthrough import HANDLERS as PASSTHROUGH
from pruning.graph.registry import combine, positional
from pruning.graph.reshape import HANDLERS as RESHAPE
from pruning.graph.rms_norm import HANDLERS as RMS_NORM
from pruning.graph.shuffle import HANDLERS as SHUFFLE
from pruning.graph.tracking import WalkState

# Every op the analysis understands, by target; each family is one module.
HANDLERS = combine(
    LAYERS, MATMUL, PASSTHROUGH, RESHAPE, COUPLING, CONCAT, RMS_NORM, ATTENTION, SHUFFLE
)

aten = torch.ops.aten
# The ops that read a map whose dim also holds the batch (`ChannelMap.period`): they only
# move that dim, or split it back apart. Any other op freezes such channels.
PERIODIC = {
    aten.permute.default,
    aten.transpose.int,
    aten.view.default,
    aten.reshape.default,
    aten._unsafe_view.default,
    aten.unflatten.int,
    aten.contiguous.default,
    aten.clone.default,
    aten.alias.default,
    aten.bmm.default,  # heads on the batch dim of a decomposed attention (`matmul`)
}

# The ops that read runs a channel shuffle interleaved (`Seg.stride`): their handlers carry
# a run's spacing into the spans they record and the maps they set. Any other op freezes
# such channels.
INTERLEAVED = (
    {
        *LAYERS.handlers,
        *PASSTHROUGH.handlers,
        *RESHAPE.handlers,
        *COUPLING.handlers,
        *CONCAT.handlers,
        *SHUFFLE.handlers,
    }
    - {aten.unflatten.int}
)


def analyse(gm: fx.GraphModule) -> GraphAnalysis:
    """Find the channel groups of an unlifted exported module.

    Args:
        gm: `ExportedProgram.module()` of the program.

    Returns:
        Every group in graph order, prunable or frozen (with a reason), and the inputs.
    """
    state = WalkState(gm)
    for node in gm.graph.nodes:
        visit(state, node)
    return GraphAnalysis(groups=state.result(), inputs=_inputs(gm))


def visit(state: WalkState, node: fx.Node) -> None:
    """Carry the channel maps through one node."""
    if node.op == "output":
        _freeze_all(state, positional(node, 0), "its channels are a model output")
        return
    if node.op != "call_function":
        return
    if node.name in state.ahead:  # the end of a channel shuffle (`shuffle`)
        state.set_map(node, state.ahead.pop(node.name))
        return
    handler = HANDLERS.get(node.target)
    for arg in node.all_input_nodes:
        m = state.map_of(arg)
        if m is not None and m.period and node.target not in PERIODIC:
            state.freeze(m.groups, f"{node.name} reads heads merged with the batch")
            state.maps[arg.name] = None
        elif m is not None and m.interleaved and node.target not in INTERLEAVED:
            state.freeze(m.groups, f"{node.name} reads channels that a channel shuffle mixed")
            state.maps[arg.name] = None
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


def _freeze_all(state: WalkState, value: Any, reason: str) -> None:
    if isinstance(value, (list, tuple)):
        for v in value:
            _freeze_all(state, v, reason)
    elif isinstance(value, fx.Node):
        state.freeze_map(value, reason)


def _inputs(gm: fx.GraphModule) -> list[InputSpec]:
    specs = []
    for node in gm.graph.nodes:
        if node.op != "placeholder":
            continue
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            continue
        shape: list[int | None] = [s if isinstance(s, int) else None for s in val.shape]
        specs.append(InputSpec(node.name, shape, str(val.dtype).replace("torch.", "")))
    return specs
