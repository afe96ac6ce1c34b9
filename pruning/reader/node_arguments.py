"""A node's arguments in a program's JSON: plain data, tensors by name and symbolic sizes only.

Custom objects, subgraphs and operators as arguments are refused; string arguments (gelu's
`approximate`, a `rounding_mode`) are data passed to a kernel, still kept to a plain word.
"""

from __future__ import annotations

import re
from typing import Any

from pruning.reader.names import check_ident
from pruning.reader.program_fields import DEVICE_TYPES, expect_dict, expect_list, fail

_ARG_SIMPLE = {
    "as_none",
    "as_int",
    "as_ints",
    "as_float",
    "as_floats",
    "as_bool",
    "as_bools",
    "as_scalar_type",
    "as_memory_format",
    "as_layout",
    "as_int_lists",
    "as_float_lists",
}


def check_tensor_arg(value: Any, where: str) -> None:
    """A reference to a tensor by its name."""
    check_ident(expect_dict(value, where, {"name"}, {"name"})["name"], where)


def check_argument(arg: Any, where: str) -> None:
    """One node argument: only plain data, tensors and symbolic sizes."""
    if not isinstance(arg, dict) or len(arg) != 1:
        raise fail(where, "an argument has exactly one kind")
    ((kind, value),) = arg.items()
    if kind in _ARG_SIMPLE:
        _plain_data(value, where)
    elif kind == "as_tensor":
        check_tensor_arg(value, where)
    elif kind in ("as_tensors",):
        expect_list(value, where)
        for v in value:
            check_tensor_arg(v, where)
    elif kind in ("as_optional_tensors",):
        expect_list(value, where)
        for v in value:
            _optional_tensor(v, where)
    elif kind == "as_optional_tensor":
        _optional_tensor(value, where)
    elif kind in ("as_sym_int", "as_sym_bool", "as_sym_float"):
        _sym_arg(value, where)
    elif kind in ("as_sym_ints", "as_sym_bools", "as_sym_floats"):
        expect_list(value, where)
        for v in value:
            _sym_arg(v, where)
    elif kind == "as_device":
        dev = expect_dict(value, where, {"type", "index"}, {"type"})
        if not isinstance(dev["type"], str) or dev["type"] not in DEVICE_TYPES:
            raise fail(where, f"unsupported device {dev['type']!r}")
    elif kind == "as_string":
        # Op string arguments (gelu's approximate, rounding_mode, padding) are data passed
        # to the kernel, never evaluated; still kept to a plain word.
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_]{0,32}", value):
            raise fail(where, f"refused string argument {str(value)[:40]!r}")
    elif kind == "as_strings":
        expect_list(value, where)
        for v in value:
            if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9_]{0,32}", v):
                raise fail(where, "refused string argument")
    else:
        raise fail(
            where, f"argument kind {kind!r} is refused (subgraphs, custom objects, operators)"
        )


def _optional_tensor(value: Any, where: str) -> None:
    v = expect_dict(value, where, {"as_tensor", "as_none"})
    if len(v) != 1:
        raise fail(where, "malformed optional tensor")
    if "as_tensor" in v:
        check_tensor_arg(v["as_tensor"], where)


def _sym_arg(value: Any, where: str) -> None:
    v = expect_dict(value, where, {"as_name", "as_int", "as_bool", "as_float"})
    if len(v) != 1:
        raise fail(where, "malformed symbolic argument")
    if "as_name" in v:
        check_ident(v["as_name"], where)
    else:
        _plain_data(next(iter(v.values())), where)


def _plain_data(value: Any, where: str, depth: int = 0) -> None:
    if depth > 3:
        raise fail(where, "argument nested too deeply")
    if isinstance(value, list):
        for v in value:
            _plain_data(v, where, depth + 1)
    elif value is not None and not isinstance(value, (bool, int, float)):
        if isinstance(value, str) and value in ("Infinity", "-Infinity", "NaN"):
            return  # torch writes non-finite floats as these strings
        raise fail(where, f"expected plain data, got {type(value).__name__}")
