"""A corpus of hostile uploads, each of which would leave a canary file if its code ran.

Models are built from a real `torch.export.save` archive by rewriting entries; datasets
are written byte by byte. Every pickle in the corpus unpickles to `os.system("touch
<canary>")`, and every code string runs the same command if evaluated, so after feeding
the corpus to an entry point the canary folder must still be empty.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tests.tiny_models import MLP, export_to


class Canary:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.path}",))


@dataclass(frozen=True)
class Hostile:
    name: str
    filename: str
    data: bytes
    reason: str  # a regex the refusal's message matches


Edit = Callable[[str, bytes], bytes | None]


def _rewrite(src: bytes, edit: Edit, extra: list[tuple[str, bytes]] | None = None) -> bytes:
    """Copy an archive, letting `edit(name, data)` change or drop (None) entries."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            data = edit(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info.filename, data)
        for name, data in extra or []:
            zout.writestr(name, data)
    return out.getvalue()


def _json_edit(suffix: str, change: Callable[[dict], None]) -> Edit:  # type: ignore[type-arg]
    def edit(name: str, data: bytes) -> bytes:
        if not name.endswith(suffix):
            return data
        doc = json.loads(data)
        change(doc)
        return json.dumps(doc).encode()

    return edit


def valid_model(folder: Path) -> bytes:
    torch.manual_seed(0)
    return export_to(MLP(), folder / "valid.pt2").read_bytes()


class _BatchNormAfterExpand(torch.nn.Module):
    """Decomposed, its BatchNorm is `_native_batch_norm_legit_no_training` (no affine)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(6, 1)
        self.bn = torch.nn.BatchNorm1d(4, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 6)
        return self.bn(self.fc(x).expand(-1, 4))  # (N, 4)


def batch_norm_model(folder: Path) -> bytes:
    torch.manual_seed(0)
    model = _BatchNormAfterExpand().eval()
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (torch.randn(4, 6),), dynamic_shapes=({0: batch},))
    torch.export.save(program.run_decompositions(), folder / "bn.pt2")
    return (folder / "bn.pt2").read_bytes()


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

    edited = _rewrite(batch_norm_model(folder), _json_edit("models/model.json", graph))
    return _rewrite(edited, _json_edit("model_weights_config.json", weights))


def _model_edit(change: Callable[[dict], None]) -> Edit:  # type: ignore[type-arg]
    return _json_edit("models/model.json", change)


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
        edited = _rewrite(base, _model_edit(rename("fc1.weight", name)))
        return _rewrite(edited, _json_edit(weights_cfg, rename_weight("fc1.weight", name)))

    nested = symbol
    for _ in range(3):
        nested = f"Pow({nested}, Integer(1000))"
    return [
        Hostile(
            "powers of literals in a symbolic size (hours of CPU)",
            "m.pt2",
            _rewrite(base, _model_edit(x_size("Pow(Integer(3), Integer(100000000))"))),
            "power of a literal",
        ),
        Hostile(
            "nested powers of a symbol",
            "m.pt2",
            _rewrite(base, _model_edit(x_size(nested))),
            "exponent",
        ),
        Hostile(
            "a 1,900-digit integer literal",
            "m.pt2",
            _rewrite(base, _model_edit(x_size(f"Integer({'9' * 1900})"))),
            "symbolic expression",
        ),
        Hostile(
            "an expression nested 100 deep",
            "m.pt2",
            _rewrite(base, _model_edit(x_size("Max(" * 100 + symbol + ")" * 100))),
            "too long|nested too deeply",
        ),
        Hostile(
            "zero strides declare 144 million parameters over 72 stored floats",
            "m.pt2",
            _rewrite(base, _json_edit(weights_cfg, zero_strides)),
            "elements more than the archive stores",
        ),
        Hostile(
            "weight sizes whose product overflows int64",
            "m.pt2",
            _rewrite(base, _json_edit(weights_cfg, overflowing_sizes)),
            "elements more than the archive stores",
        ),
        Hostile(
            "input sizes whose product overflows int64",
            "m.pt2",
            _rewrite(base, _model_edit(overflowing_input)),
            "inconsistent|declares|overflow",
        ),
        Hostile(
            "a tree spec nested 100,000 deep (RecursionError)",
            "m.pt2",
            _rewrite(base, _model_edit(deep_spec)),
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
            _rewrite(base, _model_edit(out_overload)),
            "not supported",
        ),
        Hostile(
            "a linear layer given a weight of the wrong shape",
            "m.pt2",
            _rewrite(base, _model_edit(bad_linear)),
            "inconsistent arguments",
        ),
        Hostile(
            "a stored weight of another shape than the program declares",
            "m.pt2",
            _rewrite(base, _json_edit(weights_cfg, shrunk_weight)),
            "declares",
        ),
        Hostile(
            "batch norm statistics shorter than its channels (SIGSEGV)",
            "m.pt2",
            _segfaulting_batch_norm(folder),
            "batch norm over 100000000 channels",
        ),
    ]


def hostile_models(folder: Path, canary: Path) -> list[Hostile]:
    """Models that every entry point must refuse; `canary` is a folder for canary files."""
    base = valid_model(folder)
    top = zipfile.ZipFile(io.BytesIO(base)).namelist()[0].split("/")[0]

    def touch(name: str) -> str:
        return f"__import__('os').system('touch {canary / name}')"

    def payload(name: str) -> bytes:
        return pickle.dumps(Canary(canary / name))

    def mark_pickled(doc: dict) -> None:  # type: ignore[type-arg]
        doc["config"]["fc1.weight"]["use_pickle"] = True

    def pickled_constant(doc: dict) -> None:  # type: ignore[type-arg]
        doc["config"]["evil"] = {"path_name": "tensor_0", "is_param": False, "use_pickle": True}

    def from_file(doc: dict) -> None:  # type: ignore[type-arg]
        doc["graph_module"]["graph"]["nodes"][0]["target"] = "torch.ops.aten.from_file.default"

    def code_in_expr(doc: dict) -> None:  # type: ignore[type-arg]
        sizes = doc["graph_module"]["graph"]["tensor_values"]["x"]["sizes"]
        sizes[0] = {"as_expr": {"expr_str": touch("expr"), "hint": {"as_int": 2}}}

    def code_in_name(doc: dict) -> None:  # type: ignore[type-arg]
        doc["graph_module"]["graph"]["nodes"][0]["outputs"][0]["as_tensor"]["name"] = touch("n")

    def past_payload(doc: dict) -> None:  # type: ignore[type-arg]
        doc["config"]["fc1.weight"]["tensor_meta"]["storage_offset"] = {"as_int": 10_000}

    def custom_class(doc: dict) -> None:  # type: ignore[type-arg]
        node = doc["graph_module"]["graph"]["nodes"][0]
        node["inputs"][0]["arg"] = {"as_custom_obj": {"name": "obj0", "class_fqn": "os.system"}}

    def keep(name: str, data: bytes) -> bytes:
        return data

    bomb = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(base)) as zin, zipfile.ZipFile(bomb, "w", 8) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
        zout.writestr(f"{top}/data/weights/weight_99", bytes(64 * 1024**2))

    duplicate = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(base)) as zin, zipfile.ZipFile(duplicate, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
        model_json = next(n for n in zin.namelist() if n.endswith("models/model.json"))
        with warnings.catch_warnings():  # zipfile warns about the duplicate name
            warnings.simplefilter("ignore", UserWarning)
            zout.writestr(model_json, zin.read(model_json))

    weights_cfg = "model_weights_config.json"
    return [
        Hostile("not a zip: a plain pickle", "m.pt2", payload("plain"), "not a zip"),
        Hostile("truncated archive", "m.pt2", base[: len(base) // 2], "zip"),
        Hostile(
            "torch.save pickle archive",
            "m.pt2",
            zip_bytes({"archive/data.pkl": payload("torch-save"), "archive/version": b"3\n"}),
            "not a torch.export|unexpected|entry",
        ),
        Hostile(
            "weight marked use_pickle",
            "m.pt2",
            _rewrite(
                _rewrite(base, _json_edit(weights_cfg, mark_pickled)),
                lambda n, d: payload("weight") if n.endswith("weights/weight_0") else d,
            ),
            "pickle",
        ),
        Hostile(
            "pickled constant",
            "m.pt2",
            _rewrite(
                base,
                _json_edit("model_constants_config.json", pickled_constant),
                [(f"{top}/data/constants/tensor_0", payload("constant"))],
            ),
            "pickle|constant",
        ),
        Hostile(
            "custom object entry",
            "m.pt2",
            _rewrite(base, keep, [(f"{top}/data/constants/custom_obj_0", payload("custom"))]),
            "entry",
        ),
        Hostile(
            "custom object argument",
            "m.pt2",
            _rewrite(base, _json_edit("models/model.json", custom_class)),
            "custom|argument|refused|not supported",
        ),
        Hostile("duplicate entries", "m.pt2", duplicate.getvalue(), "duplicate"),
        Hostile(
            "path traversal",
            "m.pt2",
            _rewrite(base, keep, [(f"{top}/../../evil", payload("traversal"))]),
            "entry",
        ),
        Hostile(
            "absolute path",
            "m.pt2",
            _rewrite(base, keep, [("/tmp/evil", payload("absolute"))]),
            "entry|folder",
        ),
        Hostile(
            "backslash path",
            "m.pt2",
            _rewrite(base, keep, [(f"{top}\\..\\evil", payload("backslash"))]),
            "entry|folder",
        ),
        Hostile("zip bomb", "m.pt2", bomb.getvalue(), "zip bomb"),
        Hostile(
            "weight past its payload",
            "m.pt2",
            _rewrite(base, _json_edit(weights_cfg, past_payload)),
            "past the payload",
        ),
        Hostile(
            "operator outside the allowlist",
            "m.pt2",
            _rewrite(base, _json_edit("models/model.json", from_file)),
            "not supported",
        ),
        Hostile(
            "code in a symbolic expression",
            "m.pt2",
            _rewrite(base, _json_edit("models/model.json", code_in_expr)),
            "symbolic expression|refused name",
        ),
        Hostile(
            "code in a node name",
            "m.pt2",
            _rewrite(base, _json_edit("models/model.json", code_in_name)),
            "refused name",
        ),
        Hostile("empty zip", "m.pt2", zip_bytes({}), "torch.export|empty|no "),
    ]


def sample_inputs_with_a_canary(folder: Path, canary: Path) -> bytes:
    """A valid model whose example-inputs pickle (written by torch itself) is a canary:
    accepted, because that entry is never read."""
    base = valid_model(folder)
    evil = pickle.dumps(Canary(canary / "sample-inputs"))
    return _rewrite(base, lambda n, d: evil if "/data/sample_inputs/" in n else d)


def hostile_datasets(canary: Path) -> list[Hostile]:
    """Datasets that upload and `deadweight prune` must refuse."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6)).astype(np.float32)

    def npz(**arrays: object) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        return buf.getvalue()

    objects = np.empty(8, dtype=object)
    objects[:] = [Canary(canary / "object-array")] * 8

    def safetensors(header: bytes, body: bytes = b"", length: int | None = None) -> bytes:
        size = len(header) if length is None else length
        return struct.pack("<Q", size) + header + body

    good_header = json.dumps(
        {"x": {"dtype": "F32", "shape": [8, 6], "data_offsets": [0, 192]}}
    ).encode()
    nan_x = x.copy()
    nan_x[3, 2] = np.nan
    return [
        Hostile("npz object array", "d.npz", npz(x=x, y=objects), "object|pickle"),
        Hostile(
            "plain pickle named .npz",
            "d.npz",
            pickle.dumps(Canary(canary / "p")),
            "not a dataset format",
        ),
        Hostile("npz with NaN", "d.npz", npz(x=nan_x), "NaN|finite"),
        Hostile("npz with inf", "d.npz", npz(x=np.full((8, 6), np.inf, np.float32)), "finite"),
        Hostile("safetensors bad JSON", "d.safetensors", safetensors(b"{not json"), "header"),
        Hostile(
            "safetensors header longer than the file",
            "d.safetensors",
            safetensors(good_header, length=10**9),
            "header",
        ),
        Hostile(
            "safetensors data past the file",
            "d.safetensors",
            safetensors(good_header, bytes(16)),
            "offset|size|past|bytes",
        ),
        Hostile(
            "safetensors code in dtype",
            "d.safetensors",
            safetensors(
                json.dumps(
                    {"x": {"dtype": "__import__('os')", "shape": [8, 6], "data_offsets": [0, 192]}}
                ).encode(),
                bytes(192),
            ),
            "dtype",
        ),
        Hostile("csv with inf", "d.csv", b"a,b\n1,2\ninf,3\n", "finite|inf"),
    ]


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()
