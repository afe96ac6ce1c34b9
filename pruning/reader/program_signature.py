"""A program's signature and module call graph, checked: what goes in and out of the model.

Model inputs must be tensors; every parameter, buffer and constant has an attribute path of
its own that runs through no other tensor's; outputs are user outputs only (no buffer
mutations); the call graph's pytree specs are allowlisted (`pruning.reader.tree_specs`).
"""

from __future__ import annotations

from typing import Any

from pruning.errors import UnsafeModel
from pruning.reader.names import check_fqn, check_ident
from pruning.reader.node_arguments import check_argument, check_tensor_arg
from pruning.reader.program_fields import expect_dict, expect_list
from pruning.reader.tree_specs import check_spec_string


def check_signature(sig: Any) -> dict[str, Any]:
    """The program's inputs (user inputs and stored tensors, each at its own path) and outputs."""
    s = expect_dict(
        sig, "signature", {"input_specs", "output_specs"}, {"input_specs", "output_specs"}
    )
    expect_list(s["input_specs"], "signature")
    paths = [path for spec in s["input_specs"] if (path := _check_input_spec(spec))]
    _check_distinct_paths(paths)
    expect_list(s["output_specs"], "signature")
    for spec in s["output_specs"]:
        out = expect_dict(spec, "output spec", {"user_output"})
        if "user_output" not in out:
            raise UnsafeModel(
                f"output spec kind {sorted(out)} is refused: export the model in eval "
                "mode without buffer mutations"
            )
        check_argument(
            expect_dict(out["user_output"], "output spec", {"arg"}, {"arg"})["arg"], "output spec"
        )
    return s


def _check_distinct_paths(paths: list[str]) -> None:
    """Each stored tensor has its own attribute path, and no path runs through another
    tensor (`fc` and `fc.weight`): torch would assign one over the other."""
    seen = set(paths)
    if len(seen) != len(paths):
        raise UnsafeModel("signature: two inputs name the same parameter, buffer or constant")
    for path in paths:
        parts = path.split(".")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            if prefix in seen:
                raise UnsafeModel(f"signature: {path!r} lies inside the tensor {prefix!r}")


def _check_input_spec(spec: Any) -> str | None:
    """Checks one input spec; returns the attribute path of a stored tensor, if it is one."""
    where = "input spec"
    s = expect_dict(spec, where, {"user_input", "parameter", "buffer", "tensor_constant"})
    if len(s) != 1:
        raise UnsafeModel(f"{where}: custom objects, tokens and constant inputs are refused")
    ((kind, value),) = s.items()
    if kind == "user_input":
        arg = expect_dict(value, where, {"arg"}, {"arg"})["arg"]
        if not isinstance(arg, dict) or set(arg) != {"as_tensor"}:
            raise UnsafeModel("model inputs must be tensors")
        check_argument(arg, where)
        return None
    name_key = {
        "parameter": "parameter_name",
        "buffer": "buffer_name",
        "tensor_constant": "tensor_constant_name",
    }[kind]
    v = expect_dict(value, where, {"arg", name_key, "persistent"}, {"arg", name_key})
    check_tensor_arg(v["arg"], where)
    return check_fqn(v[name_key], where)


def check_call_graph(entries: Any) -> list[dict[str, Any]]:
    """The module call graph: attribute paths, argument lists and pytree specs; root first."""
    expect_list(entries, "module_call_graph")
    out = []
    for entry in entries:
        e = expect_dict(entry, "module_call_graph", {"fqn", "signature"}, {"fqn"})
        if e["fqn"] != "":
            check_fqn(e["fqn"], "module_call_graph")
        sig = e.get("signature")
        if sig is not None:
            s = expect_dict(
                sig,
                "module_call_graph",
                {"inputs", "outputs", "in_spec", "out_spec", "forward_arg_names"},
                {"in_spec", "out_spec"},
            )
            for key in ("inputs", "outputs", "forward_arg_names"):
                expect_list(s.get(key) or [], "module_call_graph")
            for key in ("inputs", "outputs"):
                for arg in s.get(key) or []:
                    check_argument(arg, "module_call_graph")
            check_spec_string(s["in_spec"], "module_call_graph in_spec")
            check_spec_string(s["out_spec"], "module_call_graph out_spec")
            for name in s.get("forward_arg_names") or []:
                check_ident(name, "forward_arg_names")
        out.append(e)
    if not out or out[0]["fqn"] != "" or out[0].get("signature") is None:
        raise UnsafeModel("module_call_graph: the root module's signature comes first")
    return out
