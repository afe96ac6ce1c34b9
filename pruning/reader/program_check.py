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

The result is a new dict holding only what was checked. The signature and the module call
graph are checked in `pruning.reader.program_signature`.
"""

from __future__ import annotations

from typing import Any

from pruning.errors import UnsafeModel
from pruning.reader.names import check_ident
from pruning.reader.node_arguments import check_argument
from pruning.reader.op_allowlist import is_allowed_target
from pruning.reader.program_fields import (
    check_sym,
    check_tensor_meta,
    expect_dict,
    expect_int,
    expect_list,
)
from pruning.reader.program_signature import check_call_graph, check_signature
from pruning.reader.sym_expr import SYMBOL

SUPPORTED_SCHEMA_MAJOR = 8

_VERIFIERS = {"ATEN", "TRAINING", ""}


def _check_node(node: Any, index: int) -> dict[str, Any]:
    where = f"node {index}"
    n = expect_dict(
        node,
        where,
        {"target", "inputs", "outputs", "metadata", "is_hop_single_tensor_return", "name"},
        {"target", "inputs", "outputs"},
    )
    target = n["target"]
    if not isinstance(target, str) or not is_allowed_target(target):
        raise UnsafeModel(f"{where}: operator {str(target)[:120]!r} is not supported")
    where = f"node {index} ({target})"
    expect_list(n["inputs"], where)
    for inp in n["inputs"]:
        i = expect_dict(inp, where, {"name", "arg", "kind"}, {"name", "arg"})
        check_ident(i["name"], where)
        check_argument(i["arg"], where)
        if i.get("kind") is not None:
            expect_int(i["kind"], where, 0, 8)
    expect_list(n["outputs"], where)
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
    g = expect_dict(
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
        expect_list(g[key], f"graph {key}")
        for arg in g[key]:
            check_argument(arg, f"graph {key}")
    expect_list(g["nodes"], "graph nodes")
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
            check_sym(value, f"{key} {check_ident(name, key)}")
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


def check_program(program: Any) -> dict[str, Any]:
    """Validate a program's JSON and return a copy holding only checked fields.

    Raises:
        UnsafeModel: with the first offending field.
    """
    p = expect_dict(
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
    version = expect_dict(
        p["schema_version"], "schema_version", {"major", "minor"}, {"major", "minor"}
    )
    if expect_int(version["major"], "schema_version") != SUPPORTED_SCHEMA_MAJOR:
        raise UnsafeModel(
            f"unsupported .pt2 schema version {version['major']}: "
            f"export with torch 2.13 (schema {SUPPORTED_SCHEMA_MAJOR})"
        )
    expect_int(version["minor"], "schema_version")
    opset = p.get("opset_version") or {}
    if not isinstance(opset, dict) or any(not isinstance(v, int) for v in opset.values()):
        raise UnsafeModel("opset_version must map names to integers")
    ranges = p.get("range_constraints") or {}
    if not isinstance(ranges, dict):
        raise UnsafeModel("range_constraints must be an object")
    for name, rng in ranges.items():
        if not isinstance(name, str) or not SYMBOL.match(name):
            raise UnsafeModel(f"range constraint on refused symbol {str(name)[:40]!r}")
        r = expect_dict(rng, "range_constraints", {"min_val", "max_val"})
        for v in r.values():
            if v is not None:
                expect_int(v, "range_constraints", -(2**63), 2**63)
    verifiers = p.get("verifiers") or []
    if not isinstance(verifiers, list) or any(
        not isinstance(v, str) or v not in _VERIFIERS for v in verifiers
    ):
        raise UnsafeModel(f"unsupported verifier(s) {verifiers!r}")
    if not isinstance(p.get("guards_code", []), list):
        raise UnsafeModel("guards_code must be a list")

    gm = expect_dict(
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
            "signature": check_signature(gm["signature"]),
            "module_call_graph": check_call_graph(gm["module_call_graph"]),
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
