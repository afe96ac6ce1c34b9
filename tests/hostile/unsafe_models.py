"""Models whose code would run in a naive loader: pickles, code strings, hostile zips. Every
entry point must refuse each of them without running anything."""

from __future__ import annotations

import io
import pickle
import warnings
import zipfile
from pathlib import Path

from tests.hostile.archives import (
    Canary,
    Hostile,
    json_edit,
    rewrite,
    valid_model,
    zip_bytes,
)


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
            rewrite(
                rewrite(base, json_edit(weights_cfg, mark_pickled)),
                lambda n, d: payload("weight") if n.endswith("weights/weight_0") else d,
            ),
            "pickle",
        ),
        Hostile(
            "pickled constant",
            "m.pt2",
            rewrite(
                base,
                json_edit("model_constants_config.json", pickled_constant),
                [(f"{top}/data/constants/tensor_0", payload("constant"))],
            ),
            "pickle|constant",
        ),
        Hostile(
            "custom object entry",
            "m.pt2",
            rewrite(base, keep, [(f"{top}/data/constants/custom_obj_0", payload("custom"))]),
            "entry",
        ),
        Hostile(
            "custom object argument",
            "m.pt2",
            rewrite(base, json_edit("models/model.json", custom_class)),
            "custom|argument|refused|not supported",
        ),
        Hostile("duplicate entries", "m.pt2", duplicate.getvalue(), "duplicate"),
        Hostile(
            "path traversal",
            "m.pt2",
            rewrite(base, keep, [(f"{top}/../../evil", payload("traversal"))]),
            "entry",
        ),
        Hostile(
            "absolute path",
            "m.pt2",
            rewrite(base, keep, [("/tmp/evil", payload("absolute"))]),
            "entry|folder",
        ),
        Hostile(
            "backslash path",
            "m.pt2",
            rewrite(base, keep, [(f"{top}\\..\\evil", payload("backslash"))]),
            "entry|folder",
        ),
        Hostile("zip bomb", "m.pt2", bomb.getvalue(), "zip bomb"),
        Hostile(
            "weight past its payload",
            "m.pt2",
            rewrite(base, json_edit(weights_cfg, past_payload)),
            "past the payload",
        ),
        Hostile(
            "operator outside the allowlist",
            "m.pt2",
            rewrite(base, json_edit("models/model.json", from_file)),
            "not supported",
        ),
        Hostile(
            "code in a symbolic expression",
            "m.pt2",
            rewrite(base, json_edit("models/model.json", code_in_expr)),
            "symbolic expression|refused name",
        ),
        Hostile(
            "code in a node name",
            "m.pt2",
            rewrite(base, json_edit("models/model.json", code_in_name)),
            "refused name",
        ),
        Hostile("empty zip", "m.pt2", zip_bytes({}), "torch.export|empty|no "),
    ]


def sample_inputs_with_a_canary(folder: Path, canary: Path) -> bytes:
    """A valid model whose example-inputs pickle (written by torch itself) is a canary:
    accepted, because that entry is never read."""
    base = valid_model(folder)
    evil = pickle.dumps(Canary(canary / "sample-inputs"))
    return rewrite(base, lambda n, d: evil if "/data/sample_inputs/" in n else d)
