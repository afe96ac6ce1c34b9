"""Models that once escaped the reader as an unexpected exception, a native crash (SIGSEGV)
or hours of CPU (issue 10): each must now be a typed refusal, quickly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.hostile.archives import (
    Hostile,
    batch_norm_model,
    json_edit,
    model_edit,
    rewrite,
    valid_model,
)


def _segfaulting_batch_norm(folder: Path) -> bytes:
    """Segfaulted the engine (SIGSEGV in `deadweight prune`): a contiguous (1, 10^8) input
    to a batch norm whose running statistics hold one element; its CPU kernel reads them
    at every channel, and its meta kernel checks nothing."""
    big = 100_000_000

    def graph(doc: dict) -> None:  # type: ignore[type-arg]
        g = doc["graph_module"]["graph"]
        for node in g["nodes"]:
            if node["target"] == "torch.ops.aten.expand.default":
                node["target"] = "torch.ops.aten.new_zeros.default"
                node["inputs"][1]["arg"] = {"as_ints": [1, big]}
        for name in ("expand", "getitem"):
            g["tensor_values"][name]["sizes"] = [{"as_int": 1}, {"as_int": big}]
            g["tensor_values"][name]["strides"] = [{"as_int": big}, {"as_int": 1}]
        for name in ("b_bn_running_mean", "b_bn_running_var"):
            g["tensor_values"][name]["sizes"] = [{"as_int": 1}]

    def weights(doc: dict) -> None:  # type: ignore[type-arg]
        for key in ("bn.running_mean", "bn.running_var"):
            doc["config"][key]["tensor_meta"]["sizes"] = [{"as_int": 1}]

    edited = rewrite(batch_norm_model(folder), json_edit("models/model.json", graph))
    return rewrite(edited, json_edit("model_weights_config.json", weights))


def robustness_models(folder: Path) -> list[Hostile]:
    """Models that once escaped the reader as an unexpected exception, a native crash or
    hours of CPU (issue 10); each must now be a typed refusal, quickly."""
    base = valid_model(folder)
    weights_cfg = "model_weights_config.json"
    symbol = "Symbol('s77', positive=True, integer=True)"

    def x_size(expr: str) -> Callable[[dict], None]:  # type: ignore[type-arg]
        def change(doc: dict) -> None:  # type: ignore[type-arg]
            sizes = doc["graph_module"]["graph"]["tensor_values"]["x"]["sizes"]
            sizes[1] = {"as_expr": {"expr_str": expr, "hint": {"as_int": 6}}}

        return change

    def zero_strides(doc: dict) -> None:  # type: ignore[type-arg]
        meta = doc["config"]["fc1.weight"]["tensor_meta"]  # 72 floats stored
        meta["sizes"] = [{"as_int": 12_000}, {"as_int": 12_000}]
        meta["strides"] = [{"as_int": 0}, {"as_int": 0}]

    def overflowing_sizes(doc: dict) -> None:  # type: ignore[type-arg]
        meta = doc["config"]["fc1.weight"]["tensor_meta"]
        meta["sizes"] = [{"as_int": 2**40}] * 4
        meta["strides"] = [{"as_int": 0}] * 4

    def overflowing_input(doc: dict) -> None:  # type: ignore[type-arg]
        tv = doc["graph_module"]["graph"]["tensor_values"]["x"]
        tv["sizes"] = [{"as_int": 2**40}] * 3 + [{"as_int": 6}]
        tv["strides"] = [{"as_int": 1}] * 4

    def deep_spec(doc: dict) -> None:  # type: ignore[type-arg]
        sig = doc["graph_module"]["module_call_graph"][0]["signature"]
        sig["in_spec"] = "[1, " + "[" * 100_000 + "]" * 100_000 + "]"

    def rename(old: str, new: str) -> Callable[[dict], None]:  # type: ignore[type-arg]
        def change(doc: dict) -> None:  # type: ignore[type-arg]
            for spec in doc["graph_module"]["signature"]["input_specs"]:
                p = spec.get("parameter")
                if p and p["parameter_name"] == old:
                    p["parameter_name"] = new

        return change

    def rename_weight(old: str, new: str) -> Callable[[dict], None]:  # type: ignore[type-arg]
        def change(doc: dict) -> None:  # type: ignore[type-arg]
            doc["config"][new] = doc["config"].pop(old)

        return change

    def out_overload(doc: dict) -> None:  # type: ignore[type-arg]
        for node in doc["graph_module"]["graph"]["nodes"]:
            if node["target"] == "torch.ops.aten.relu.default":
                node["target"] = "torch.ops.aten.relu.out"

    def bad_linear(doc: dict) -> None:  # type: ignore[type-arg]
        for node in doc["graph_module"]["graph"]["nodes"]:
            if node["target"] == "torch.ops.aten.linear.default":
                node["inputs"][1]["arg"] = {"as_tensor": {"name": "p_out_weight"}}
                break

    def shrunk_weight(doc: dict) -> None:  # type: ignore[type-arg]
        doc["config"]["fc1.weight"]["tensor_meta"]["sizes"] = [{"as_int": 6}, {"as_int": 12}]
        doc["config"]["fc1.weight"]["tensor_meta"]["strides"] = [{"as_int": 12}, {"as_int": 1}]

    def renamed(name: str) -> bytes:
        edited = rewrite(base, model_edit(rename("fc1.weight", name)))
        return rewrite(edited, json_edit(weights_cfg, rename_weight("fc1.weight", name)))

    nested = symbol
    for _ in range(3):
        nested = f"Pow({nested}, Integer(1000))"
    return [
        Hostile(
            "powers of literals in a symbolic size (hours of CPU)",
            "m.pt2",
            rewrite(base, model_edit(x_size("Pow(Integer(3), Integer(100000000))"))),
            "power of a literal",
        ),
        Hostile(
            "nested powers of a symbol",
            "m.pt2",
            rewrite(base, model_edit(x_size(nested))),
            "exponent",
        ),
        Hostile(
            "a 1,900-digit integer literal",
            "m.pt2",
            rewrite(base, model_edit(x_size(f"Integer({'9' * 1900})"))),
            "symbolic expression",
        ),
        Hostile(
            "an expression nested 100 deep",
            "m.pt2",
            rewrite(base, model_edit(x_size("Max(" * 100 + symbol + ")" * 100))),
            "too long|nested too deeply",
        ),
        Hostile(
            "zero strides declare 144 million parameters over 72 stored floats",
            "m.pt2",
            rewrite(base, json_edit(weights_cfg, zero_strides)),
            "elements more than the archive stores",
        ),
        Hostile(
            "weight sizes whose product overflows int64",
            "m.pt2",
            rewrite(base, json_edit(weights_cfg, overflowing_sizes)),
            "elements more than the archive stores",
        ),
        Hostile(
            "input sizes whose product overflows int64",
            "m.pt2",
            rewrite(base, model_edit(overflowing_input)),
            "inconsistent|declares|overflow",
        ),
        Hostile(
            "a tree spec nested 100,000 deep (RecursionError)",
            "m.pt2",
            rewrite(base, model_edit(deep_spec)),
            "nested too deeply",
        ),
        Hostile("a parameter named forward", "m.pt2", renamed("forward"), "reserve"),
        Hostile("a parameter under _modules", "m.pt2", renamed("fc1._modules"), "reserve"),
        Hostile("a parameter named training", "m.pt2", renamed("training"), "reserve"),
        Hostile(
            "a parameter inside another parameter",
            "m.pt2",
            renamed("fc1.bias.weight"),
            "inside the tensor",
        ),
        Hostile(
            "an .out overload",
            "m.pt2",
            rewrite(base, model_edit(out_overload)),
            "not supported",
        ),
        Hostile(
            "a linear layer given a weight of the wrong shape",
            "m.pt2",
            rewrite(base, model_edit(bad_linear)),
            "inconsistent arguments",
        ),
        Hostile(
            "a stored weight of another shape than the program declares",
            "m.pt2",
            rewrite(base, json_edit(weights_cfg, shrunk_weight)),
            "declares",
        ),
        Hostile(
            "batch norm statistics shorter than its channels (SIGSEGV)",
            "m.pt2",
            _segfaulting_batch_norm(folder),
            "batch norm over 100000000 channels",
        ),
    ]
