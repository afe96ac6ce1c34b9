"""Tiny modules analysed as the engine analyses an upload: exported, read back through the
safe reader, walked by `analyse`. For the tests of one op family at a time."""

from __future__ import annotations

from pathlib import Path

from torch import nn

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
