"""Grammars for the single fields of a program's JSON: JSON shapes, dtypes, symbolic sizes and
tensor metadata.

`pruning.reader.program_check` walks the program's structure; each field it meets is checked
here or next door: names and attribute paths in `pruning.reader.names`, node arguments in
`pruning.reader.node_arguments`, pytree specs in `pruning.reader.tree_specs`.
"""

from __future__ import annotations

from typing import Any

import torch

from pruning.errors import UnsafeModel
from pruning.reader.sym_expr import check_expr

_DTYPES: dict[int, torch.dtype] = {
    1: torch.uint8,
    2: torch.int8,
    3: torch.int16,
    4: torch.int32,
    5: torch.int64,
    6: torch.float16,
    7: torch.float32,
    8: torch.float64,
    12: torch.bool,
    13: torch.bfloat16,
}
_STRIDED_LAYOUT = 7
DEVICE_TYPES = {"cpu", "cuda", "meta"}

_PAYLOAD_SIZE_LIMIT = 2**40


def dtype_from_code(code: Any, where: str) -> torch.dtype:
    """The torch dtype of a serialized ScalarType code, for the dtypes weights may have."""
    if not isinstance(code, int) or code not in _DTYPES:
        raise UnsafeModel(f"{where}: unsupported dtype code {code!r}")
    return _DTYPES[code]


def fail(where: str, what: str) -> UnsafeModel:
    """The refusal of one field: `where` names it for the user."""
    return UnsafeModel(f"{where}: {what}")


def expect_dict(
    value: Any, where: str, allowed: set[str], required: set[str] | frozenset[str] = frozenset()
) -> dict[str, Any]:
    """An object whose keys are among `allowed` and include `required`."""
    if not isinstance(value, dict):
        raise fail(where, "expected an object")
    extra = set(value) - allowed
    if extra:
        raise fail(where, f"unexpected field(s) {sorted(extra)[:5]}")
    missing = set(required) - set(value)
    if missing:
        raise fail(where, f"missing field(s) {sorted(missing)}")
    return value


def expect_int(value: Any, where: str, lo: int = -(2**62), hi: int = 2**62) -> int:
    """An integer (not a bool) in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise fail(where, f"expected an integer in [{lo}, {hi}], got {str(value)[:40]!r}")
    return value


def expect_list(value: Any, where: str) -> None:
    """A list of bounded length; its items are checked by the caller."""
    if not isinstance(value, list) or len(value) > 100_000:
        raise fail(where, "expected a list")


def check_sym(value: Any, where: str) -> dict[str, Any]:
    """A symbolic int/float/bool: a literal or a grammar-checked expression."""
    v = expect_dict(value, where, {"as_int", "as_expr", "as_float", "as_bool"})
    if len(v) != 1:
        raise fail(where, "expected exactly one of as_int/as_expr")
    if "as_expr" in v:
        e = expect_dict(v["as_expr"], where, {"expr_str", "hint"}, {"expr_str"})
        check_expr(e["expr_str"], where)
        if e.get("hint") is not None:
            hint = expect_dict(e["hint"], where, {"as_int", "as_float", "as_bool"})
            if len(hint) != 1:
                raise fail(where, "malformed hint")
            if "as_int" in hint:  # hints are evaluated: keep them to int64
                expect_int(hint["as_int"], where)
    elif "as_int" in v:
        expect_int(v["as_int"], where)
    return v


def check_tensor_meta(meta: Any, where: str, *, concrete: bool = False) -> dict[str, Any]:
    """A tensor's dtype, sizes, strides and device; `concrete` refuses symbolic sizes (weights)."""
    m = expect_dict(
        meta,
        where,
        {"dtype", "sizes", "requires_grad", "device", "strides", "storage_offset", "layout"},
        {"dtype", "sizes", "strides", "storage_offset", "device", "layout"},
    )
    if not isinstance(m["dtype"], int) or not (m["dtype"] in _DTYPES or not concrete):
        raise fail(where, f"unsupported dtype code {m['dtype']!r}")
    if m["layout"] != _STRIDED_LAYOUT:
        raise fail(where, "only dense (strided) tensors are supported")
    dev = expect_dict(m["device"], where, {"type", "index"}, {"type"})
    if (
        not isinstance(dev["type"], str)
        or dev["type"] not in DEVICE_TYPES
        or not (dev.get("index") is None or isinstance(dev["index"], int))
    ):
        raise fail(where, f"unsupported device {dev!r}")
    for key in ("sizes", "strides"):
        if not isinstance(m[key], list) or len(m[key]) > 16:
            raise fail(where, f"{key} must be a list of at most 16 dims")
        for item in m[key]:
            s = check_sym(item, where)
            if concrete:
                if "as_int" not in s:
                    raise fail(where, "weights must have concrete sizes")
                expect_int(s["as_int"], where, 0, _PAYLOAD_SIZE_LIMIT)
    if len(m["sizes"]) != len(m["strides"]):
        raise fail(where, "sizes and strides differ in length")
    off = check_sym(m["storage_offset"], where)
    if concrete and (
        "as_int" not in off or expect_int(off["as_int"], where, 0, _PAYLOAD_SIZE_LIMIT) < 0
    ):
        raise fail(where, "storage_offset must be a non-negative integer")
    if "requires_grad" in m and not isinstance(m["requires_grad"], bool):
        raise fail(where, "requires_grad must be a boolean")
    return m
