"""Tiny modules analysed as the engine analyses an upload: exported, read back through the
safe reader, walked by `analyse`. For the tests of one op family at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from pruning.graph import ChannelGroup, GraphAnalysis, analyse
from pruning.reader import read_program
from tests.tiny_models import export_to


def analysed(tmp_path: Path, model: nn.Module, d_in: int | tuple[int, ...]) -> GraphAnalysis:
    """The analysis of `model` exported with a dynamic batch and per-sample shape `d_in`."""
    path = export_to(model, tmp_path / "model.pt2", d_in=d_in)
    return analyse(read_program(path).module())


def readers(group: ChannelGroup) -> list[str]:
    """The weights that read the group, in graph order (one entry per consumer)."""
    return [c.weight.path for c in group.consumers]


def sliced(group: ChannelGroup) -> list[str]:
    """The per-channel tensors sliced with the group (norms, depthwise filters, embeddings)."""
    return [p.path for p in group.channel_params]


class Zeroing(fx.Interpreter):
    """Runs the original module with given channel positions zeroed at consumers' inputs."""

    def __init__(self, gm: fx.GraphModule, masks: dict[str, list[tuple[int, list[int]]]]):
        super().__init__(gm)
        self.masks = masks

    def call_function(self, target: Any, args: Any, kwargs: Any) -> Any:
        name = self._current
        if name in self.masks:
            x = args[0].clone()
            for dim, positions in self.masks[name]:
                index = torch.tensor(positions, dtype=torch.long)
                x.index_fill_(dim, index, 0.0)
            args = (x, *args[1:])
        return super().call_function(target, args, kwargs)

    def run_node(self, n: fx.Node) -> Any:
        self._current = n.name
        return super().run_node(n)


def consumer_masks(
    analysis: GraphAnalysis, plan: dict[str, list[int]]
) -> dict[str, list[tuple[int, list[int]]]]:
    """For `Zeroing`: the positions of the removed channels where each consumer reads them."""
    masks: dict[str, list[tuple[int, list[int]]]] = {}
    for name, kept in plan.items():
        group = analysis.group(name)
        gone = [c for c in range(group.width) if c not in set(kept)]
        for c in group.consumers:
            masks.setdefault(c.node, []).append((c.tap.span.dim, c.tap.span.positions(gone)))
    return masks
