"""The safe `.pt2` reader: an uploaded archive becomes an ExportedProgram without torch's loader.

`torch.export.load` unpickles entries marked `use_pickle`, custom and opaque objects and the
sample inputs, and torch's deserializer evaluates strings of the graph JSON. So this module
reads the zip itself: entry names and sizes are checked, JSON is parsed as data and
validated (`pruning.reader.program_check`), weights are raw bytes whose sizes, strides and offsets
are checked against the payload, and example inputs are never read from the file. Only the
checked objects reach torch's deserializer, which accepts a state dict and constants as
Python objects, so nothing is unpickled.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pruning.errors import UnsafeModel
from pruning.reader.program_check import check_program
from pruning.reader.program_fields import check_fqn, check_tensor_meta, dtype_from_code
from pruning.reader.program_shapes import check_shapes

# Entries of an archive written by torch.export.save, relative to its single top folder.
_ALLOWED_ENTRY = re.compile(
    r"^(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/[A-Za-z0-9_]+\.json"
    r"|data/weights/[A-Za-z0-9_]+_weights_config\.json|data/weights/weight_[0-9]+"
    r"|data/constants/[A-Za-z0-9_]+_constants_config\.json|data/constants/tensor_[0-9]+"
    r"|data/sample_inputs/[A-Za-z0-9_]+\.pt)$"
)
_TOP_DIR = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps that keep a hostile archive from exhausting the machine."""

    max_entries: int = 20_000
    max_total_bytes: int = 8 * 1024**3  # uncompressed, all entries
    max_json_bytes: int = 256 * 1024**2
    max_compression_ratio: float = 200.0  # zip bombs compress far better than weights do
    # Checked on the declared sizes of parameters, buffers and constants, before any payload.
    max_parameters: int | None = None
    # Elements that views may claim beyond the bytes their payloads hold, in all: torch
    # writes an expanded buffer as its small storage with zero strides, but every pruned
    # candidate is written dense, so a 4 KB upload could otherwise declare 10^8 parameters.
    max_expanded_elements: int = 1 << 20


DEFAULT_LIMITS = ArchiveLimits()


def read_program(
    path: Path, limits: ArchiveLimits = DEFAULT_LIMITS
) -> torch.export.ExportedProgram:
    """Read an uploaded `.pt2` archive into an ExportedProgram, refusing anything unsafe.

    Args:
        path: the archive, as uploaded.
        limits: size caps.

    Returns:
        The program with its weights, on the CPU; `example_inputs` is None.

    Raises:
        UnsafeModel: the archive is malformed or holds something this reader refuses.
    """
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnsafeModel(
            "not a .pt2 archive (not a zip file): save the model with torch.export.save"
        ) from exc
    with zf:
        top, entries = _check_entries(zf, limits)
        return _build_program(zf, top, entries, limits)


def _check_entries(
    zf: zipfile.ZipFile, limits: ArchiveLimits
) -> tuple[str, dict[str, zipfile.ZipInfo]]:
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise UnsafeModel(f"archive has {len(infos)} entries; at most {limits.max_entries} allowed")
    entries: dict[str, zipfile.ZipInfo] = {}
    tops: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        if info.is_dir():
            continue
        top, _, rest = name.partition("/")
        if not _TOP_DIR.match(top) or top in (".", "..") or not _ALLOWED_ENTRY.match(rest):
            raise UnsafeModel(f"unexpected entry in archive: {name[:200]!r}")
        if rest in entries:  # zip readers disagree on which copy wins: refuse both
            raise UnsafeModel(f"duplicate entry in archive: {name!r}")
        if info.flag_bits & 0x1:
            raise UnsafeModel(f"encrypted entry in archive: {name!r}")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise UnsafeModel(f"unsupported compression in entry {name!r}")
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > 1024**2:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits.max_compression_ratio:
                raise UnsafeModel(f"entry {name!r} expands {ratio:.0f}x: refused as a zip bomb")
        total += info.file_size
        tops.add(top)
        entries[rest] = info
    if total > limits.max_total_bytes:
        raise UnsafeModel(f"archive expands to {total} bytes; at most {limits.max_total_bytes}")
    if not tops:
        raise UnsafeModel("the archive is empty: save the model with torch.export.save")
    if len(tops) != 1:
        raise UnsafeModel("a .pt2 archive has exactly one top-level folder")
    return tops.pop(), entries


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    """Read an entry, never more than `cap` bytes nor more than its declared size."""
    limit = min(cap, info.file_size)
    with zf.open(info) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise UnsafeModel(f"entry {info.filename!r} is larger than it declares or allowed")
    return data


def _read_json(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ArchiveLimits) -> Any:
    raw = _read(zf, info, limits.max_json_bytes)
    try:
        # parse_constant refuses NaN/Infinity literals; object_pairs_hook refuses duplicate keys,
        # which different parsers would resolve differently.
        return json.loads(raw, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as exc:
        raise UnsafeModel(f"entry {info.filename!r} is not valid JSON: {exc}") from exc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _build_program(
    zf: zipfile.ZipFile, top: str, entries: dict[str, zipfile.ZipInfo], limits: ArchiveLimits
) -> torch.export.ExportedProgram:
    fmt = entries.get("archive_format")
    if fmt is None or _read(zf, fmt, 16).strip() != b"pt2":
        raise UnsafeModel("archive_format is not 'pt2': save the model with torch.export.save")
    order = entries.get("byteorder")
    if order is not None and _read(zf, order, 16).strip() != b"little":
        raise UnsafeModel("only little-endian archives are supported")
    models = [name for name in entries if name.startswith("models/")]
    if len(models) != 1:
        raise UnsafeModel(f"the archive must hold exactly one program, found {len(models)}")
    model_name = models[0][len("models/") : -len(".json")]

    program = check_program(_read_json(zf, entries[models[0]], limits))
    weights = _read_config(zf, entries, f"data/weights/{model_name}_weights_config.json", limits)
    consts = _read_config(
        zf, entries, f"data/constants/{model_name}_constants_config.json", limits, required=False
    )
    clash = weights.keys() & consts.keys()
    if clash:
        raise UnsafeModel(f"{sorted(clash)[0]!r} is both a weight and a constant")
    if limits.max_parameters is not None:
        _check_element_count({**weights, **consts}, limits.max_parameters)
    payloads = _Payloads(zf, entries, limits)
    state_dict = payloads.read(weights, "data/weights/")
    constants = payloads.read(consts, "data/constants/")
    exported = _deserialize(program, state_dict, constants)
    check_shapes(exported)  # before any real kernel runs on it
    try:
        exported.module()  # the engine's first step: unlifting must work, or we refuse now
    except Exception as exc:  # torch raises many types for malformed programs
        raise UnsafeModel(f"the program could not be rebuilt: {type(exc).__name__}") from exc
    return exported


def _read_config(
    zf: zipfile.ZipFile,
    entries: dict[str, zipfile.ZipInfo],
    name: str,
    limits: ArchiveLimits,
    *,
    required: bool = True,
) -> dict[str, Any]:
    """A weights or constants config: `{"config": {fqn: payload entry}}`, names checked."""
    info = entries.get(name)
    if info is None:
        if required:
            raise UnsafeModel(f"{name} is missing from the archive")
        return {}
    config = _read_json(zf, info, limits)
    if (
        not isinstance(config, dict)
        or set(config) != {"config"}
        or not isinstance(config["config"], dict)
    ):
        raise UnsafeModel(f"{name}: expected {{'config': {{...}}}}")
    for fqn, meta in config["config"].items():
        check_fqn(fqn, name)
        if not isinstance(meta, dict) or set(meta) - {
            "path_name",
            "is_param",
            "use_pickle",
            "tensor_meta",
        }:
            raise UnsafeModel(f"{fqn}: malformed payload entry")
        if meta.get("use_pickle") is not False:
            raise UnsafeModel(f"{fqn}: pickled payloads are refused (use_pickle)")
        meta["tensor_meta"] = check_tensor_meta(meta.get("tensor_meta"), fqn, concrete=True)
    return dict(config["config"])


def _check_element_count(config: dict[str, Any], limit: int) -> None:
    # Buffers and constants count too: every candidate writes them all, dense.
    total = sum(math.prod(s["as_int"] for s in m["tensor_meta"]["sizes"]) for m in config.values())
    if total > limit:
        raise UnsafeModel(
            f"the model holds {total} parameters, buffers and constants; this server takes "
            f"at most {limit} (DEADWEIGHT_MAX_PARAMETERS)"
        )


class _Payloads:
    """Reads payload entries once each and checks what the views on them claim."""

    def __init__(
        self, zf: zipfile.ZipFile, entries: dict[str, zipfile.ZipInfo], limits: ArchiveLimits
    ) -> None:
        self.zf = zf
        self.entries = entries
        self.limits = limits
        self.flat: dict[str, torch.Tensor] = {}  # entry -> flat payload; shared by tied views
        self.views: dict[str, set[tuple[Any, ...]]] = {}  # entry -> distinct views on it
        self.claimed: dict[str, int] = {}  # entry -> elements its distinct views claim
        self.expanded = 0  # elements claimed beyond what payloads hold, all entries

    def read(self, config: dict[str, Any], folder: str) -> dict[str, torch.Tensor]:
        return {fqn: self.tensor(folder, fqn, meta) for fqn, meta in config.items()}

    def tensor(self, folder: str, fqn: str, meta: dict[str, Any]) -> torch.Tensor:
        path_name = meta.get("path_name")
        if not isinstance(path_name, str) or folder + path_name not in self.entries:
            raise UnsafeModel(f"{fqn}: payload {str(path_name)[:100]!r} is not in the archive")
        if not re.fullmatch(r"(weight|tensor)_[0-9]+", path_name):
            raise UnsafeModel(
                f"{fqn}: refused payload name {path_name!r} (custom or opaque object)"
            )
        tmeta = meta["tensor_meta"]
        dtype = dtype_from_code(tmeta["dtype"], fqn)
        sizes = [s["as_int"] for s in tmeta["sizes"]]
        strides = [s["as_int"] for s in tmeta["strides"]]
        offset = tmeta["storage_offset"]["as_int"]
        flat = self.payload(folder + path_name, fqn, dtype)
        self.claim(folder + path_name, fqn, flat.numel(), sizes, strides, offset)
        tensor = torch.as_strided(flat, sizes, strides, offset)
        if meta.get("is_param"):
            # Only floating-point tensors can require gradients; torch raises for others.
            grad = tmeta.get("requires_grad", False) is True and dtype.is_floating_point
            return torch.nn.Parameter(tensor, requires_grad=grad)
        return tensor

    def payload(self, name: str, fqn: str, dtype: torch.dtype) -> torch.Tensor:
        flat = self.flat.get(name)
        if flat is None:
            info = self.entries[name]
            element = torch.empty((), dtype=dtype).element_size()
            if info.file_size % element:
                raise UnsafeModel(
                    f"{fqn}: payload size {info.file_size} is not a multiple of {element}"
                )
            raw = bytearray(_read(self.zf, info, info.file_size))
            flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            self.flat[name] = flat
        elif flat.dtype != dtype:
            raise UnsafeModel(f"{fqn}: payload {name} is shared with a different dtype")
        return flat

    def claim(
        self, name: str, fqn: str, stored: int, sizes: list[int], strides: list[int], offset: int
    ) -> None:
        """A view must lie inside its payload, and claim no more elements than it holds
        (beyond a small allowance for expanded buffers)."""
        numel = math.prod(sizes)
        if numel == 0:
            return
        # The highest element the view touches must lie inside the payload.
        last = offset + sum(
            (size - 1) * stride for size, stride in zip(sizes, strides, strict=True)
        )
        if last >= stored:
            raise UnsafeModel(f"{fqn}: sizes/strides/offset reach past the payload")
        views = self.views.setdefault(name, set())
        key = (tuple(sizes), tuple(strides), offset)
        if key in views:  # a tied weight: the same tensor twice
            return
        views.add(key)
        before = max(self.claimed.get(name, 0) - stored, 0)
        self.claimed[name] = self.claimed.get(name, 0) + numel
        self.expanded += max(self.claimed[name] - stored, 0) - before
        if self.expanded > self.limits.max_expanded_elements:
            raise UnsafeModel(
                f"{fqn}: declares {numel} elements over a payload of {stored}: views may "
                f"claim at most {self.limits.max_expanded_elements} elements more than "
                "the archive stores (save the model with torch.export.save)"
            )


def _deserialize(
    program: dict[str, Any], state_dict: dict[str, torch.Tensor], constants: dict[str, torch.Tensor]
) -> torch.export.ExportedProgram:
    # Imported here: private torch API, kept in one place.
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _dict_to_dataclass

    try:
        serialized = _dict_to_dataclass(schema.ExportedProgram, program)  # type: ignore[no-untyped-call]
        # example_inputs=None: the sample inputs in the file are a pickle and are never read.
        return ExportedProgramDeserializer().deserialize(serialized, state_dict, constants, None)
    except UnsafeModel:
        raise
    except Exception as exc:  # torch raises many types for malformed graphs
        raise UnsafeModel(f"the program could not be rebuilt: {type(exc).__name__}: {exc}") from exc
