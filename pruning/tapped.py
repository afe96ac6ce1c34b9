"""A copy of a module that hands chosen intermediate values to callbacks as they are computed
(the statistics pass, `pruning.stats.collect`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import fx


class _Recorder(torch.nn.Module):
    """Inserted after a tapped node: hands the node's value to the taps that read it and
    returns nothing, so the graph's own values and outputs are untouched."""

    def __init__(self, on_value: Callable[[torch.Tensor], None]) -> None:
        super().__init__()
        self.on_value = on_value

    def forward(self, value: object) -> None:
        if isinstance(value, torch.Tensor):
            self.on_value(value)


def tapped_copy(
    gm: fx.GraphModule, on_value: Mapping[str, Callable[[torch.Tensor], None]]
) -> fx.GraphModule:
    """A copy of `gm` (sharing its parameters) that calls `on_value[node]` with the value of
    each named node as soon as it is computed, then runs on as generated code. Unlike an
    `fx.Interpreter`, no Python runs per node beyond the recorders, and values are freed as
    early as in the original."""
    graph = fx.Graph()
    graph._codegen = gm.graph._codegen  # how inputs and outputs are (un)flattened: shared
    graph.output(graph.graph_copy(gm.graph, {}))
    tapped = fx.GraphModule(gm, graph)
    for node in list(graph.nodes):
        if node.name not in on_value:
            continue
        name = f"_deadweight_tap_{len(tapped._modules)}"
        tapped.add_submodule(name, _Recorder(on_value[node.name]))
        with graph.inserting_after(node):
            graph.call_module(name, (node,))
    tapped.recompile()
    return tapped
