"""Pytree specs (`in_spec`, `out_spec`): JSON in a string whose type names torch resolves from
a registry, so each type is allowlisted and each context holds plain keys only.
"""

from __future__ import annotations

import json
from typing import Any

from pruning.reader.program_fields import expect_dict, expect_list, fail

_SPEC_TYPES = {
    None,
    "builtins.tuple",
    "builtins.list",
    "builtins.dict",
    "collections.OrderedDict",
    "torch.fx.immutable_collections.immutable_list",
    "torch.fx.immutable_collections.immutable_dict",
}


def check_spec_string(text: Any, where: str) -> str:
    """A pytree spec (JSON in a string); its type names are resolved, so they are allowlisted."""
    if not isinstance(text, str) or len(text) > 1_000_000:
        raise fail(where, "malformed tree spec")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested past the parser
        raise fail(where, "tree spec is not JSON or nested too deeply") from exc
    if not isinstance(data, list) or len(data) != 2 or data[0] != 1:
        raise fail(where, "unsupported tree spec protocol")
    _spec_node(data[1], where, 0)
    return text


def _spec_node(node: Any, where: str, depth: int) -> None:
    if depth > 32:
        raise fail(where, "tree spec nested too deeply")
    n = expect_dict(node, where, {"type", "context", "children_spec"}, {"type", "children_spec"})
    if not (n["type"] is None or isinstance(n["type"], str)) or n["type"] not in _SPEC_TYPES:
        raise fail(where, f"tree spec type {str(n['type'])[:80]!r} is refused")
    ctx = n.get("context")
    if ctx is not None:
        if not isinstance(ctx, str):
            raise fail(where, "tree spec context must be a string")
        try:
            _plain_keys(json.loads(ctx), where, 0)
        except (ValueError, RecursionError) as exc:
            raise fail(where, "tree spec context is not JSON or nested too deeply") from exc
    expect_list(n["children_spec"], where)
    for child in n["children_spec"]:
        _spec_node(child, where, depth + 1)


def _plain_keys(value: Any, where: str, depth: int) -> None:
    if depth > 8:  # a context holds a list of keys, never deep structures
        raise fail(where, "tree spec context nested too deeply")
    if isinstance(value, list):
        for v in value:
            _plain_keys(v, where, depth + 1)
    elif value is not None and not isinstance(value, (str, int)):
        raise fail(where, "tree spec context must hold plain keys")
