"""Parameters and buffers by attribute path (`layer1.conv.weight`), as `ParamSlice` names them.

Every tensor a group slices is recorded by its path in the unlifted module; the analysis,
the statistics and surgery resolve those paths here.
"""

from __future__ import annotations

import torch


def owner_of(gm: torch.nn.Module, path: str) -> tuple[torch.nn.Module, str]:
    """The module holding an attribute path (`layer1.conv.weight`) and the attribute name."""
    module_path, _, attr = path.rpartition(".")
    return (gm.get_submodule(module_path) if module_path else gm), attr


def get_tensor(gm: torch.nn.Module, path: str) -> torch.Tensor:
    """A parameter or buffer by attribute path."""
    owner, attr = owner_of(gm, path)
    value = getattr(owner, attr)
    assert isinstance(value, torch.Tensor)
    return value
