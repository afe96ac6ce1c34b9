"""Validation of a program's JSON before any of torch sees it.

torch's deserializer and the unlifted module turn some strings of the graph JSON into code
or into attribute lookups. Each such field is checked here against a strict grammar or an
allowlist, or dropped:

- node `target`: resolved by getattr from `torch`/`operator`/`math` -> `op_allowlist`;
- symbolic expressions (`expr_str`): passed to `sympy.sympify`, i.e. `eval` -> a token grammar
  with allowlisted names only;
- `guards_code`: `exec`'d by `ExportedProgram.module()` -> dropped (it only re-checks input
  shapes, which the engine derives itself);
- node `metadata` (`nn_module_stack`, `source_fn_stack`, `torch_fn`, `custom`): resolved by
  attribute lookup or parsed as JSON -> dropped; graph-level `metadata` likewise;
- pytree specs (`in_spec`, `out_spec`): type names resolved from a registry -> allowlist;
- names of nodes and tensors become Python identifiers in FX's generated code, and
  parameter/buffer names become attribute paths -> identifier grammar, no dunders;
- `verifiers` -> allowlist; custom objects, subgraphs, operator arguments, tokens -> refused.

The result is a new dict holding only what was checked.
"""

from __future__ import annotations

import json
import keyword
import re
from typing import Any

import torch

from pruning.errors import UnsafeModel
from pruning.op_allowlist import is_allowed_target

SUPPORTED_SCHEMA_MAJOR = 8

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
_MEMORY_FORMATS = {1, 2, 3, 4}
_DEVICE_TYPES = {"cpu", "cuda", "meta"}
_VERIFIERS = {"ATEN", "TRAINING", ""}
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
_FQN = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
_SYMBOL = re.compile(r"^[a-z]{1,4}[0-9]{1,9}$")
_EXPR_TOKEN = re.compile(
    r"\s*(?:(?P<name>[A-Za-z][A-Za-z0-9]*)|(?P<str>'[a-z]{1,4}[0-9]{1,9}')|(?P<num>[0-9]+(?:\.[0-9]+)?)"
    r"|(?P<op>\*\*|<=|>=|==|!=|[-+*/(),=<>%]))"
)
_EXPR_NAMES = frozenset(
    """Symbol Integer Rational Float Add Mul Pow Max Min Abs Eq Ne Lt Le Gt Ge And Or Not
    FloorDiv CeilDiv ModularIndexing Where PythonMod Mod CleanDiv CeilToInt FloorToInt
    IntTrueDiv FloatTrueDiv PowByNatural FloatPow TruncToFloat TruncToInt RoundToInt ToFloat
    Identity oo True False positive integer nonnegative negative real finite""".split()
)
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


def _dict(
    value: Any, where: str, allowed: set[str], required: set[str] | frozenset[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, "expected an object")
    extra = set(value) - allowed
    if extra:
        raise _fail(where, f"unexpected field(s) {sorted(extra)[:5]}")
    missing = set(required) - set(value)
    if missing:
        raise _fail(where, f"missing field(s) {sorted(missing)}")
    return value


def _int(value: Any, where: str, lo: int = -(2**62), hi: int = 2**62) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _fail(where, f"expected an integer in [{lo}, {hi}], got {str(value)[:40]!r}")
    return value


def check_ident(name: Any, where: str) -> str:
    """A node or tensor name: it becomes a Python identifier in FX's generated code."""
    if (
        not isinstance(name, str)
        or not _IDENT.match(name)
        or keyword.iskeyword(name)
        or "__" in name
    ):
        raise _fail(where, f"refused name {str(name)[:80]!r}")
    return name


def check_fqn(name: Any, where: str) -> str:
    """A parameter/buffer path: it becomes an attribute path on the unlifted module."""
    if not isinstance(name, str) or len(name) > 512 or not _FQN.match(name) or "__" in name:
        raise _fail(where, f"refused attribute path {str(name)[:80]!r}")
    return name


def check_expr(expr: Any, where: str) -> str:
    """A symbolic size expression; sympy evaluates it, so only a tiny grammar passes."""
    if not isinstance(expr, str) or len(expr) > 2000:
        raise _fail(where, "symbolic expression missing or too long")
    pos = 0
    while pos < len(expr):
        m = _EXPR_TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise _fail(where, f"refused symbolic expression {expr[:80]!r}")
        name = m.group("name")
        if name is not None and name not in _EXPR_NAMES and not _SYMBOL.match(name):
            raise _fail(where, f"refused name {name!r} in symbolic expression")
        pos = m.end()
        if expr[pos:].strip() == "":
            break
    return expr


def _sym(value: Any, where: str, hint_key: str = "as_int") -> dict[str, Any]:
    v = _dict(value, where, {"as_int", "as_expr", "as_float", "as_bool"})
    if len(v) != 1:
        raise _fail(where, "expected exactly one of as_int/as_expr")
    if "as_expr" in v:
        e = _dict(v["as_expr"], where, {"expr_str", "hint"}, {"expr_str"})
        check_expr(e["expr_str"], where)
        if e.get("hint") is not None:
            _dict(e["hint"], where, {"as_int", "as_float", "as_bool"})
    elif "as_int" in v:
        _int(v["as_int"], where)
    return v


def check_tensor_meta(meta: Any, where: str, *, concrete: bool = False) -> dict[str, Any]:
    """A tensor's dtype, sizes, strides and device; `concrete` refuses symbolic sizes (weights)."""
    m = _dict(
        meta,
        where,
        {"dtype", "sizes", "requires_grad", "device", "strides", "storage_offset", "layout"},
        {"dtype", "sizes", "strides", "storage_offset", "device", "layout"},
    )
    if not isinstance(m["dtype"], int) or not (m["dtype"] in _DTYPES or not concrete):
        raise _fail(where, f"unsupported dtype code {m['dtype']!r}")
    if m["layout"] != _STRIDED_LAYOUT:
        raise _fail(where, "only dense (strided) tensors are supported")
    dev = _dict(m["device"], where, {"type", "index"}, {"type"})
    if dev["type"] not in _DEVICE_TYPES or not (
        dev.get("index") is None or isinstance(dev["index"], int)
    ):
        raise _fail(where, f"unsupported device {dev!r}")
    for key in ("sizes", "strides"):
        if not isinstance(m[key], list) or len(m[key]) > 16:
            raise _fail(where, f"{key} must be a list of at most 16 dims")
        for item in m[key]:
            s = _sym(item, where)
            if concrete:
                if "as_int" not in s:
                    raise _fail(where, "weights must have concrete sizes")
                _int(s["as_int"], where, 0, _PAYLOAD_SIZE_LIMIT)
    if len(m["sizes"]) != len(m["strides"]):
        raise _fail(where, "sizes and strides differ in length")
    off = _sym(m["storage_offset"], where)
    if concrete and ("as_int" not in off or _int(off["as_int"], where, 0, _PAYLOAD_SIZE_LIMIT) < 0):
        raise _fail(where, "storage_offset must be a non-negative integer")
    if "requires_grad" in m and not isinstance(m["requires_grad"], bool):
        raise _fail(where, "requires_grad must be a boolean")
    return m


def _tensor_arg(value: Any, where: str) -> None:
    check_ident(_dict(value, where, {"name"}, {"name"})["name"], where)


def check_argument(arg: Any, where: str) -> None:
    """One node argument: only plain data, tensors and symbolic sizes."""
    if not isinstance(arg, dict) or len(arg) != 1:
        raise _fail(where, "an argument has exactly one kind")
    ((kind, value),) = arg.items()
    if kind in _ARG_SIMPLE:
        _plain_data(value, where)
    elif kind == "as_tensor":
        _tensor_arg(value, where)
    elif kind in ("as_tensors",):
        _list(value, where)
        for v in value:
            _tensor_arg(v, where)
    elif kind in ("as_optional_tensors",):
        _list(value, where)
        for v in value:
            _optional_tensor(v, where)
    elif kind == "as_optional_tensor":
        _optional_tensor(value, where)
    elif kind in ("as_sym_int", "as_sym_bool", "as_sym_float"):
        _sym_arg(value, where)
    elif kind in ("as_sym_ints", "as_sym_bools", "as_sym_floats"):
        _list(value, where)
        for v in value:
            _sym_arg(v, where)
    elif kind == "as_device":
        dev = _dict(value, where, {"type", "index"}, {"type"})
        if dev["type"] not in _DEVICE_TYPES:
            raise _fail(where, f"unsupported device {dev['type']!r}")
    elif kind == "as_string":
        # Op string arguments (gelu's approximate, rounding_mode, padding) are data passed
        # to the kernel, never evaluated; still kept to a plain word.
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_]{0,32}", value):
            raise _fail(where, f"refused string argument {str(value)[:40]!r}")
    elif kind == "as_strings":
        _list(value, where)
        for v in value:
            if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9_]{0,32}", v):
                raise _fail(where, "refused string argument")
    else:
        raise _fail(
            where, f"argument kind {kind!r} is refused (subgraphs, custom objects, operators)"
        )


def _list(value: Any, where: str) -> None:
    if not isinstance(value, list) or len(value) > 100_000:
        raise _fail(where, "expected a list")


def _optional_tensor(value: Any, where: str) -> None:
    v = _dict(value, where, {"as_tensor", "as_none"})
    if len(v) != 1:
        raise _fail(where, "malformed optional tensor")
    if "as_tensor" in v:
        _tensor_arg(v["as_tensor"], where)


def _sym_arg(value: Any, where: str) -> None:
    v = _dict(value, where, {"as_name", "as_int", "as_bool", "as_float"})
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


def _check_node(node: Any, index: int) -> dict[str, Any]:
    where = f"node {index}"
    n = _dict(
        node,
        where,
        {"target", "inputs", "outputs", "metadata", "is_hop_single_tensor_return", "name"},
        {"target", "inputs", "outputs"},
    )
    target = n["target"]
    if not isinstance(target, str) or not is_allowed_target(target):
        raise UnsafeModel(f"{where}: operator {str(target)[:120]!r} is not supported")
    where = f"node {index} ({target})"
    _list(n["inputs"], where)
    for inp in n["inputs"]:
        i = _dict(inp, where, {"name", "arg", "kind"}, {"name", "arg"})
        check_ident(i["name"], where)
        check_argument(i["arg"], where)
        if i.get("kind") is not None:
            _int(i["kind"], where, 0, 8)
    _list(n["outputs"], where)
    for out in n["outputs"]:
        check_argument(out, where)
    if n.get("name") is not None:
        check_ident(n["name"], where)
    return {
        "target": target,
        "inputs": n["inputs"],
        "outputs": n["outputs"],
        "metadata": {},  # dropped: torch resolves parts of it by attribute lookup
        "is_hop_single_tensor_return": n.get("is_hop_single_tensor_return"),
        "name": n.get("name"),
    }


def _check_graph(graph: Any) -> dict[str, Any]:
    g = _dict(
        graph,
        "graph",
        {
            "inputs",
            "outputs",
            "nodes",
            "tensor_values",
            "sym_int_values",
            "sym_bool_values",
            "is_single_tensor_return",
            "custom_obj_values",
            "sym_float_values",
        },
        {"inputs", "outputs", "nodes", "tensor_values"},
    )
    if g.get("custom_obj_values"):
        raise UnsafeModel("graph: custom objects are refused")
    for key in ("inputs", "outputs"):
        _list(g[key], f"graph {key}")
        for arg in g[key]:
            check_argument(arg, f"graph {key}")
    _list(g["nodes"], "graph nodes")
    nodes = [_check_node(node, i) for i, node in enumerate(g["nodes"])]
    if not isinstance(g["tensor_values"], dict):
        raise UnsafeModel("graph: tensor_values must be an object")
    for name, meta in g["tensor_values"].items():
        check_tensor_meta(meta, f"tensor {check_ident(name, 'tensor')}")
    for key in ("sym_int_values", "sym_bool_values", "sym_float_values"):
        values = g.get(key) or {}
        if not isinstance(values, dict):
            raise UnsafeModel(f"graph: {key} must be an object")
        for name, value in values.items():
            _sym(value, f"{key} {check_ident(name, key)}")
    return {
        "inputs": g["inputs"],
        "outputs": g["outputs"],
        "nodes": nodes,
        "tensor_values": g["tensor_values"],
        "sym_int_values": g.get("sym_int_values") or {},
        "sym_bool_values": g.get("sym_bool_values") or {},
        "is_single_tensor_return": bool(g.get("is_single_tensor_return", False)),
        "custom_obj_values": {},
        "sym_float_values": g.get("sym_float_values") or {},
    }


def _check_signature(sig: Any) -> dict[str, Any]:
    s = _dict(sig, "signature", {"input_specs", "output_specs"}, {"input_specs", "output_specs"})
    _list(s["input_specs"], "signature")
    for spec in s["input_specs"]:
        _check_input_spec(spec)
    _list(s["output_specs"], "signature")
    for spec in s["output_specs"]:
        out = _dict(spec, "output spec", {"user_output"})
        if "user_output" not in out:
            raise UnsafeModel(
                f"output spec kind {sorted(out)} is refused: export the model in eval "
                "mode without buffer mutations"
            )
        check_argument(
            _dict(out["user_output"], "output spec", {"arg"}, {"arg"})["arg"], "output spec"
        )
    return s


def _check_input_spec(spec: Any) -> None:
    where = "input spec"
    s = _dict(spec, where, {"user_input", "parameter", "buffer", "tensor_constant"})
    if len(s) != 1:
        raise UnsafeModel(f"{where}: custom objects, tokens and constant inputs are refused")
    ((kind, value),) = s.items()
    if kind == "user_input":
        arg = _dict(value, where, {"arg"}, {"arg"})["arg"]
        if not isinstance(arg, dict) or set(arg) != {"as_tensor"}:
            raise UnsafeModel("model inputs must be tensors")
        check_argument(arg, where)
        return
    name_key = {
        "parameter": "parameter_name",
        "buffer": "buffer_name",
        "tensor_constant": "tensor_constant_name",
    }[kind]
    v = _dict(value, where, {"arg", name_key, "persistent"}, {"arg", name_key})
    _tensor_arg(v["arg"], where)
    check_fqn(v[name_key], where)


def check_spec_string(text: Any, where: str) -> str:
    """A pytree spec (JSON in a string); its type names are resolved, so they are allowlisted."""
    if not isinstance(text, str) or len(text) > 1_000_000:
        raise _fail(where, "malformed tree spec")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _fail(where, "tree spec is not JSON") from exc
    if not isinstance(data, list) or len(data) != 2 or data[0] != 1:
        raise _fail(where, "unsupported tree spec protocol")
    _spec_node(data[1], where, 0)
    return text


def _spec_node(node: Any, where: str, depth: int) -> None:
    if depth > 32:
        raise _fail(where, "tree spec nested too deeply")
    n = _dict(node, where, {"type", "context", "children_spec"}, {"type", "children_spec"})
    if n["type"] not in _SPEC_TYPES:
        raise _fail(where, f"tree spec type {str(n['type'])[:80]!r} is refused")
    ctx = n.get("context")
    if ctx is not None:
        if not isinstance(ctx, str):
            raise _fail(where, "tree spec context must be a string")
        try:
            _plain_keys(json.loads(ctx), where)
        except ValueError as exc:
            raise _fail(where, "tree spec context is not JSON") from exc
    _list(n["children_spec"], where)
    for child in n["children_spec"]:
        _spec_node(child, where, depth + 1)


def _plain_keys(value: Any, where: str) -> None:
    if isinstance(value, list):
        for v in value:
            _plain_keys(v, where)
    elif value is not None and not isinstance(value, (str, int)):
        raise _fail(where, "tree spec context must hold plain keys")


def _check_call_graph(entries: Any) -> list[dict[str, Any]]:
    _list(entries, "module_call_graph")
    out = []
    for entry in entries:
        e = _dict(entry, "module_call_graph", {"fqn", "signature"}, {"fqn"})
        if e["fqn"] != "":
            check_fqn(e["fqn"], "module_call_graph")
        sig = e.get("signature")
        if sig is not None:
            s = _dict(
                sig,
                "module_call_graph",
                {"inputs", "outputs", "in_spec", "out_spec", "forward_arg_names"},
                {"in_spec", "out_spec"},
            )
            for key in ("inputs", "outputs"):
                for arg in s.get(key) or []:
                    check_argument(arg, "module_call_graph")
            check_spec_string(s["in_spec"], "module_call_graph in_spec")
            check_spec_string(s["out_spec"], "module_call_graph out_spec")
            for name in s.get("forward_arg_names") or []:
                check_ident(name, "forward_arg_names")
        out.append(e)
    return out


def check_program(program: Any) -> dict[str, Any]:
    """Validate a program's JSON and return a copy holding only checked fields.

    Raises:
        UnsafeModel: with the first offending field.
    """
    p = _dict(
        program,
        "program",
        {
            "graph_module",
            "opset_version",
            "range_constraints",
            "schema_version",
            "verifiers",
            "torch_version",
            "guards_code",
        },
        {"graph_module", "schema_version"},
    )
    version = _dict(p["schema_version"], "schema_version", {"major", "minor"}, {"major", "minor"})
    if _int(version["major"], "schema_version") != SUPPORTED_SCHEMA_MAJOR:
        raise UnsafeModel(
            f"unsupported .pt2 schema version {version['major']}: "
            f"export with torch 2.13 (schema {SUPPORTED_SCHEMA_MAJOR})"
        )
    _int(version["minor"], "schema_version")
    opset = p.get("opset_version") or {}
    if not isinstance(opset, dict) or any(not isinstance(v, int) for v in opset.values()):
        raise UnsafeModel("opset_version must map names to integers")
    ranges = p.get("range_constraints") or {}
    if not isinstance(ranges, dict):
        raise UnsafeModel("range_constraints must be an object")
    for name, rng in ranges.items():
        if not isinstance(name, str) or not _SYMBOL.match(name):
            raise UnsafeModel(f"range constraint on refused symbol {str(name)[:40]!r}")
        r = _dict(rng, "range_constraints", {"min_val", "max_val"})
        for v in r.values():
            if v is not None:
                _int(v, "range_constraints", -(2**63), 2**63)
    verifiers = p.get("verifiers") or []
    if not isinstance(verifiers, list) or any(v not in _VERIFIERS for v in verifiers):
        raise UnsafeModel(f"unsupported verifier(s) {verifiers!r}")
    if not isinstance(p.get("guards_code", []), list):
        raise UnsafeModel("guards_code must be a list")

    gm = _dict(
        p["graph_module"],
        "graph_module",
        {"graph", "signature", "module_call_graph", "metadata", "treespec_namedtuple_fields"},
        {"graph", "signature", "module_call_graph"},
    )
    if gm.get("treespec_namedtuple_fields"):
        raise UnsafeModel("named-tuple inputs/outputs are not supported: return plain tensors")
    return {
        "graph_module": {
            "graph": _check_graph(gm["graph"]),
            "signature": _check_signature(gm["signature"]),
            "module_call_graph": _check_call_graph(gm["module_call_graph"]),
            "metadata": {},  # dropped: "custom" is parsed and kept on the module
            "treespec_namedtuple_fields": {},
        },
        "opset_version": opset,
        "range_constraints": ranges,
        "schema_version": version,
        "verifiers": verifiers,
        "torch_version": str(p.get("torch_version", ""))[:64],
        "guards_code": [],  # dropped: ExportedProgram.module() would exec it
    }
