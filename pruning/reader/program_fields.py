"""Grammars and allowlists for single fields of a program's JSON.

`pruning.reader.program_check` walks the program's structure; each field it meets is checked
here: dtypes, names, attribute paths, symbolic expressions, tensor metadata, node arguments
and pytree specs.
"""

from __future__ import annotations

import json
import keyword
import re
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
_DEVICE_TYPES = {"cpu", "cuda", "meta"}
_SPEC_TYPES = {
    None,
    "builtins.tuple",
    "builtins.list",
    "builtins.dict",
    "collections.OrderedDict",
    "torch.fx.immutable_collections.immutable_list",
    "torch.fx.immutable_collections.immutable_dict",
}

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,250}$")
_FQN = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")  # "-": RegNet names blocks "block1-0"
_PAYLOAD_SIZE_LIMIT = 2**40

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


def dtype_from_code(code: Any, where: str) -> torch.dtype:
    """The torch dtype of a serialized ScalarType code, for the dtypes weights may have."""
    if not isinstance(code, int) or code not in _DTYPES:
        raise UnsafeModel(f"{where}: unsupported dtype code {code!r}")
    return _DTYPES[code]


def _fail(where: str, what: str) -> UnsafeModel:
    return UnsafeModel(f"{where}: {what}")


def expect_dict(
    value: Any, where: str, allowed: set[str], required: set[str] | frozenset[str] = frozenset()
) -> dict[str, Any]:
    """An object whose keys are among `allowed` and include `required`."""
    if not isinstance(value, dict):
        raise _fail(where, "expected an object")
    extra = set(value) - allowed
    if extra:
        raise _fail(where, f"unexpected field(s) {sorted(extra)[:5]}")
    missing = set(required) - set(value)
    if missing:
        raise _fail(where, f"missing field(s) {sorted(missing)}")
    return value


def expect_int(value: Any, where: str, lo: int = -(2**62), hi: int = 2**62) -> int:
    """An integer (not a bool) in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _fail(where, f"expected an integer in [{lo}, {hi}], got {str(value)[:40]!r}")
    return value


def expect_list(value: Any, where: str) -> None:
    """A list of bounded length; its items are checked by the caller."""
    if not isinstance(value, list) or len(value) > 100_000:
        raise _fail(where, "expected a list")


def check_ident(name: Any, where: str) -> str:
    """A node or tensor name: it becomes a Python identifier in FX's generated code."""
    if (
        not isinstance(name, str)
        or not _IDENT.match(name)
        or keyword.iskeyword(name)
        or name.startswith("__")  # dunders; in-place outputs such as `relu__1` are fine
    ):
        raise _fail(where, f"refused name {str(name)[:80]!r}")
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
        raise _fail(where, f"refused attribute path {str(name)[:80]!r}")
    clash = [part for part in name.split(".") if part in MODULE_ATTRIBUTES]
    if clash:
        raise _fail(
            where,
            f"attribute path {name[:80]!r} uses {clash[0]!r}, a name torch modules reserve: "
            "rename that parameter, buffer or submodule",
        )
    return name


def check_sym(value: Any, where: str) -> dict[str, Any]:
    """A symbolic int/float/bool: a literal or a grammar-checked expression."""
    v = expect_dict(value, where, {"as_int", "as_expr", "as_float", "as_bool"})
    if len(v) != 1:
        raise _fail(where, "expected exactly one of as_int/as_expr")
    if "as_expr" in v:
        e = expect_dict(v["as_expr"], where, {"expr_str", "hint"}, {"expr_str"})
        check_expr(e["expr_str"], where)
        if e.get("hint") is not None:
            hint = expect_dict(e["hint"], where, {"as_int", "as_float", "as_bool"})
            if len(hint) != 1:
                raise _fail(where, "malformed hint")
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
        raise _fail(where, f"unsupported dtype code {m['dtype']!r}")
    if m["layout"] != _STRIDED_LAYOUT:
        raise _fail(where, "only dense (strided) tensors are supported")
    dev = expect_dict(m["device"], where, {"type", "index"}, {"type"})
    if (
        not isinstance(dev["type"], str)
        or dev["type"] not in _DEVICE_TYPES
        or not (dev.get("index") is None or isinstance(dev["index"], int))
    ):
        raise _fail(where, f"unsupported device {dev!r}")
    for key in ("sizes", "strides"):
        if not isinstance(m[key], list) or len(m[key]) > 16:
            raise _fail(where, f"{key} must be a list of at most 16 dims")
        for item in m[key]:
            s = check_sym(item, where)
            if concrete:
                if "as_int" not in s:
                    raise _fail(where, "weights must have concrete sizes")
                expect_int(s["as_int"], where, 0, _PAYLOAD_SIZE_LIMIT)
    if len(m["sizes"]) != len(m["strides"]):
        raise _fail(where, "sizes and strides differ in length")
    off = check_sym(m["storage_offset"], where)
    if concrete and (
        "as_int" not in off or expect_int(off["as_int"], where, 0, _PAYLOAD_SIZE_LIMIT) < 0
    ):
        raise _fail(where, "storage_offset must be a non-negative integer")
    if "requires_grad" in m and not isinstance(m["requires_grad"], bool):
        raise _fail(where, "requires_grad must be a boolean")
    return m


def check_tensor_arg(value: Any, where: str) -> None:
    """A reference to a tensor by its name."""
    check_ident(expect_dict(value, where, {"name"}, {"name"})["name"], where)


def check_argument(arg: Any, where: str) -> None:
    """One node argument: only plain data, tensors and symbolic sizes."""
    if not isinstance(arg, dict) or len(arg) != 1:
        raise _fail(where, "an argument has exactly one kind")
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
        if not isinstance(dev["type"], str) or dev["type"] not in _DEVICE_TYPES:
            raise _fail(where, f"unsupported device {dev['type']!r}")
    elif kind == "as_string":
        # Op string arguments (gelu's approximate, rounding_mode, padding) are data passed
        # to the kernel, never evaluated; still kept to a plain word.
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_]{0,32}", value):
            raise _fail(where, f"refused string argument {str(value)[:40]!r}")
    elif kind == "as_strings":
        expect_list(value, where)
        for v in value:
            if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9_]{0,32}", v):
                raise _fail(where, "refused string argument")
    else:
        raise _fail(
            where, f"argument kind {kind!r} is refused (subgraphs, custom objects, operators)"
        )


def _optional_tensor(value: Any, where: str) -> None:
    v = expect_dict(value, where, {"as_tensor", "as_none"})
    if len(v) != 1:
        raise _fail(where, "malformed optional tensor")
    if "as_tensor" in v:
        check_tensor_arg(v["as_tensor"], where)


def _sym_arg(value: Any, where: str) -> None:
    v = expect_dict(value, where, {"as_name", "as_int", "as_bool", "as_float"})
    if len(v) != 1:
        raise _fail(where, "malformed symbolic argument")
    if "as_name" in v:
        check_ident(v["as_name"], where)
    else:
        _plain_data(next(iter(v.values())), where)


def _plain_data(value: Any, where: str, depth: int = 0) -> None:
    if depth > 3:
        raise _fail(where, "argument nested too deeply")
    if isinstance(value, list):
        for v in value:
            _plain_data(v, where, depth + 1)
    elif value is not None and not isinstance(value, (bool, int, float)):
        if isinstance(value, str) and value in ("Infinity", "-Infinity", "NaN"):
            return  # torch writes non-finite floats as these strings
        raise _fail(where, f"expected plain data, got {type(value).__name__}")


def check_spec_string(text: Any, where: str) -> str:
    """A pytree spec (JSON in a string); its type names are resolved, so they are allowlisted."""
    if not isinstance(text, str) or len(text) > 1_000_000:
        raise _fail(where, "malformed tree spec")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested past the parser
        raise _fail(where, "tree spec is not JSON or nested too deeply") from exc
    if not isinstance(data, list) or len(data) != 2 or data[0] != 1:
        raise _fail(where, "unsupported tree spec protocol")
    _spec_node(data[1], where, 0)
    return text


def _spec_node(node: Any, where: str, depth: int) -> None:
    if depth > 32:
        raise _fail(where, "tree spec nested too deeply")
    n = expect_dict(node, where, {"type", "context", "children_spec"}, {"type", "children_spec"})
    if not (n["type"] is None or isinstance(n["type"], str)) or n["type"] not in _SPEC_TYPES:
        raise _fail(where, f"tree spec type {str(n['type'])[:80]!r} is refused")
    ctx = n.get("context")
    if ctx is not None:
        if not isinstance(ctx, str):
            raise _fail(where, "tree spec context must be a string")
        try:
            _plain_keys(json.loads(ctx), where, 0)
        except (ValueError, RecursionError) as exc:
            raise _fail(where, "tree spec context is not JSON or nested too deeply") from exc
    expect_list(n["children_spec"], where)
    for child in n["children_spec"]:
        _spec_node(child, where, depth + 1)


def _plain_keys(value: Any, where: str, depth: int) -> None:
    if depth > 8:  # a context holds a list of keys, never deep structures
        raise _fail(where, "tree spec context nested too deeply")
    if isinstance(value, list):
        for v in value:
            _plain_keys(v, where, depth + 1)
    elif value is not None and not isinstance(value, (str, int)):
        raise _fail(where, "tree spec context must hold plain keys")
