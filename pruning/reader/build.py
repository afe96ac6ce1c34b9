"""From a checked archive to an ExportedProgram: `read_program`, the safe reader's entry point.

The program's JSON is validated field by field (`pruning.reader.program_check`), the weights
and constants configs are checked (names, tensor metadata, no `use_pickle`), the payloads are
read as raw bytes (`pruning.reader.payloads`), and only these checked objects reach torch's
deserializer, with `example_inputs=None`: the sample inputs in the file are a pickle and are
never read. The rebuilt program is then run once on fake tensors
(`pruning.reader.program_shapes`) and unlifted, so that a program the engine cannot use is
refused here, as an `UnsafeModel`.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any

import torch

from pruning.errors import UnsafeModel
from pruning.reader.archive import (
    DEFAULT_LIMITS,
    ArchiveLimits,
    Entries,
    check_entries,
    open_zip,
    read_entry,
    read_json,
)
from pruning.reader.names import check_fqn
from pruning.reader.payloads import Payloads
from pruning.reader.program_check import check_program
from pruning.reader.program_fields import check_tensor_meta
from pruning.reader.program_shapes import check_shapes
from pruning.reader.schema_objects import to_schema


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
    with open_zip(path) as zf:
        entries = check_entries(zf, limits)
        return _build_program(zf, entries, limits)


def _build_program(
    zf: zipfile.ZipFile, entries: Entries, limits: ArchiveLimits
) -> torch.export.ExportedProgram:
    model_name = _model_name(zf, entries)
    program = check_program(read_json(zf, entries[f"models/{model_name}.json"], limits))
    weights = _read_config(zf, entries, f"data/weights/{model_name}_weights_config.json", limits)
    consts = _read_config(
        zf, entries, f"data/constants/{model_name}_constants_config.json", limits, required=False
    )
    clash = weights.keys() & consts.keys()
    if clash:
        raise UnsafeModel(f"{sorted(clash)[0]!r} is both a weight and a constant")
    if limits.max_parameters is not None:
        _check_element_count({**weights, **consts}, limits.max_parameters)
    payloads = Payloads(zf, entries, limits)
    state_dict = payloads.read(weights, "data/weights/")
    constants = payloads.read(consts, "data/constants/")
    exported = _deserialize(program, state_dict, constants)
    check_shapes(exported)  # before any real kernel runs on it
    try:
        exported.module()  # the engine's first step: unlifting must work, or we refuse now
    except Exception as exc:  # torch raises many types for malformed programs
        raise UnsafeModel(f"the program could not be rebuilt: {type(exc).__name__}") from exc
    return exported


def _model_name(zf: zipfile.ZipFile, entries: Entries) -> str:
    """The name of the archive's one program, once its format and byte order are checked."""
    fmt = entries.get("archive_format")
    if fmt is None or read_entry(zf, fmt, 16).strip() != b"pt2":
        raise UnsafeModel("archive_format is not 'pt2': save the model with torch.export.save")
    order = entries.get("byteorder")
    if order is not None and read_entry(zf, order, 16).strip() != b"little":
        raise UnsafeModel("only little-endian archives are supported")
    models = [name for name in entries if name.startswith("models/")]
    if len(models) != 1:
        raise UnsafeModel(f"the archive must hold exactly one program, found {len(models)}")
    return models[0][len("models/") : -len(".json")]


def _read_config(
    zf: zipfile.ZipFile,
    entries: Entries,
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
    config = read_json(zf, info, limits)
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


def _deserialize(
    program: dict[str, Any], state_dict: dict[str, torch.Tensor], constants: dict[str, torch.Tensor]
) -> torch.export.ExportedProgram:
    # Imported here: private torch API, kept in one place.
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer

    try:
        serialized = to_schema(schema.ExportedProgram, program)
        # example_inputs=None: the sample inputs in the file are a pickle and are never read.
        return ExportedProgramDeserializer().deserialize(serialized, state_dict, constants, None)
    except UnsafeModel:
        raise
    except Exception as exc:  # torch raises many types for malformed graphs
        raise UnsafeModel(f"the program could not be rebuilt: {type(exc).__name__}: {exc}") from exc
