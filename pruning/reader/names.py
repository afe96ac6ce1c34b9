"""Names in a program that become Python: node and tensor names (identifiers in FX's generated
code) and parameter paths (attribute paths on the unlifted module).

A name must fit a strict grammar, never be a dunder, and a parameter path may not reuse an
attribute torch's modules have (`forward`, `training`, `_modules`): torch would assign over it.
"""

from __future__ import annotations

import keyword
import re
from typing import Any

import torch

from pruning.reader.program_fields import fail

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,250}$")
_FQN = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")  # "-": RegNet names blocks "block1-0"


def check_ident(name: Any, where: str) -> str:
    """A node or tensor name: it becomes a Python identifier in FX's generated code."""
    if (
        not isinstance(name, str)
        or not _IDENT.match(name)
        or keyword.iskeyword(name)
        or name.startswith("__")  # dunders; in-place outputs such as `relu__1` are fine
    ):
        raise fail(where, f"refused name {str(name)[:80]!r}")
    return name


def _module_attributes() -> frozenset[str]:
    """Names a parameter path may not use: attributes of the (unlifted) GraphModule.

    A parameter named `forward`, `training`, `_modules` or `graph` would replace the
    module's own attribute when torch assigns it, and fail later as an internal error.
    """
    from torch.export._unlift import _StatefulGraphModule

    module = torch.fx.GraphModule(torch.nn.Module(), torch.fx.Graph())
    names = set(dir(_StatefulGraphModule)) | set(vars(module))
    return frozenset(names | {"range_constraints", "validate_inputs", "shape_env", "meta"})


MODULE_ATTRIBUTES = _module_attributes()


def check_fqn(name: Any, where: str) -> str:
    """A parameter/buffer path: it becomes an attribute path on the unlifted module."""
    if (
        not isinstance(name, str)
        or len(name) > 512
        or not _FQN.match(name)
        or any(part.startswith("__") for part in name.split("."))  # __class__, __dict__, ...
    ):
        raise fail(where, f"refused attribute path {str(name)[:80]!r}")
    clash = [part for part in name.split(".") if part in MODULE_ATTRIBUTES]
    if clash:
        raise fail(
            where,
            f"attribute path {name[:80]!r} uses {clash[0]!r}, a name torch modules reserve: "
            "rename that parameter, buffer or submodule",
        )
    return name
