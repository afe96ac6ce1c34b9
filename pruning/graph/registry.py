"""What an op handler is, the table each op family fills, and how handlers read FX arguments.

A handler looks at one node, reads the channel maps of its inputs and sets the map of its
output; it records producers, consumers, per-channel tensors and width-encoding arguments
in the groups it meets, couples groups that must be cut alike, and freezes what it cannot
follow. Each op family (`layers`, `passthrough`, `reshape`, `coupling`, `concat`) fills a
`HandlerTable` of its own; `pruning.graph.walk` combines them and dispatches on the node's
target, so an op family is one file and no module registers into another's state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import fx

from pruning.graph.tracking import WalkState

Handler = Callable[[WalkState, fx.Node], None]


class HandlerTable:
    """The handlers of one op family, by op target (an ATen overload, `operator.getitem`)."""

    def __init__(self) -> None:
        self.handlers: dict[Any, Handler] = {}

    def handles(self, *targets: Any) -> Callable[[Handler], Handler]:
        """Register the decorated function for every target."""

        def register(fn: Handler) -> Handler:
            for target in targets:
                _claim(self.handlers, target, fn)
            return fn

        return register


def combine(*tables: HandlerTable) -> dict[Any, Handler]:
    """One table for the walk: every op target handled by exactly one family."""
    combined: dict[Any, Handler] = {}
    for table in tables:
        for target, fn in table.handlers.items():
            _claim(combined, target, fn)
    return combined


def _claim(table: dict[Any, Handler], target: Any, fn: Handler) -> None:
    # Two handlers for one op would make the analysis depend on import order.
    if target in table:
        raise ValueError(f"{target} has two handlers: {table[target].__name__}, {fn.__name__}")
    table[target] = fn


def positional(node: fx.Node, index: int) -> Any:
    """A positional argument, typed loosely: FX arguments are a wide union."""
    return node.args[index]


def argument(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    """An argument given by position or by keyword, else `default`."""
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def norm_dim(dim: int, ndim: int) -> int:
    """A dimension index counted from the front (`-1` of a 4-D tensor is 3)."""
    return dim + ndim if dim < 0 else dim


def opaque(state: WalkState, node: fx.Node, why: str) -> None:
    """The node cannot be followed: freeze every group it reads; its output carries none."""
    for arg in node.all_input_nodes:
        state.freeze_map(arg, f"{node.name}: {why}")
    state.set_map(node, None)
