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
