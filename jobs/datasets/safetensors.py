""".safetensors: a JSON header, then raw little-endian tensors x and optional y.

The header is parsed as JSON and checked against the file before any tensor data is read.
Rows are then read at random access, batch by batch, so this is the format to use for data
larger than memory: no decompression and no hidden copies.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
import numpy.typing as npt

from jobs.datasets.arrays import (
    ArrayDataset,
    ArraySpec,
    RowReader,
    check_bytes,
    describe_arrays,
    read_array,
    truncated,
)
from jobs.datasets.base import Dataset, DatasetFileError, DatasetFormat

# A dataset's header describes x, y and a little metadata: a few hundred bytes. The cap
# bounds what JSON parsing may allocate (a 100 MB header once cost the API 960 MB).
MAX_SAFETENSORS_HEADER: Final = 1024 * 1024
MAX_METADATA_CHARS: Final = 64 * 1024
_KEYS: Final = frozenset({"x", "y", "__metadata__"})

_ST_DTYPES: Final[dict[str, tuple[str, str, str]]] = {  # name -> (read dtype, kind, shown)
    "F16": ("<f2", "f", "float16"),
    "BF16": ("<u2", "bf16", "bfloat16"),
    "F32": ("<f4", "f", "float32"),
    "F64": ("<f8", "f", "float64"),
    "I8": ("i1", "i", "int8"),
    "I16": ("<i2", "i", "int16"),
    "I32": ("<i4", "i", "int32"),
    "I64": ("<i8", "i", "int64"),
    "U8": ("u1", "u", "uint8"),
    "BOOL": ("u1", "b", "bool"),
}


def open_safetensors(
    path: Path,
    name: str,
    max_samples: int | None,
    max_bytes: int | None,
    max_features: int | None = None,
) -> Dataset:
    fh = path.open("rb")
    try:
        size = path.stat().st_size
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise DatasetFileError(f"{name} is too short to be a safetensors file")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > MAX_SAFETENSORS_HEADER:
            raise DatasetFileError(
                f"{name}: the safetensors header claims {header_len} bytes; at most "
                f"{MAX_SAFETENSORS_HEADER} are accepted (save only tensors x and y)"
            )
        if 8 + header_len > size:
            raise DatasetFileError(f"{name}: the safetensors header runs past the end of the file")
        header = _parse_st_header(name, fh.read(header_len))
        base, payload = 8 + header_len, size - 8 - header_len
        x, x_begin = _st_tensor(name, header, "x", payload)
        y, y_begin = _st_tensor(name, header, "y", payload) if "y" in header else (None, 0)
        check_bytes(name, x, y, max_bytes)
        info = describe_arrays(name, DatasetFormat.SAFETENSORS, x, y, max_samples, max_features)
    except BaseException:
        fh.close()
        raise

    @contextmanager
    def readers() -> Iterator[tuple[RowReader, RowReader | None]]:
        yield (
            _file_rows(fh, base + x_begin, x),
            (None if y is None else _file_rows(fh, base + y_begin, y)),
        )

    return ArrayDataset(info, name, x, y, readers, fh.close)


def _parse_st_header(name: str, raw: bytes) -> dict[str, Any]:
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DatasetFileError(f"{name}: the safetensors header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise DatasetFileError(f"{name}: the safetensors header must be a JSON object")
    if "x" not in header:
        found = sorted(k for k in header if k != "__metadata__")
        raise DatasetFileError(
            f"{name} has no tensor 'x' (found {found[:10]}): save features as x "
            "(and labels as y) with safetensors.numpy.save_file"
        )
    unknown = sorted(k for k in header if k not in _KEYS)
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:10])
        raise DatasetFileError(
            f"{name} holds tensors other than x and y ({shown}): save only x (and y)"
        )
    _check_metadata(name, header.get("__metadata__", {}))
    return header


def _check_metadata(name: str, metadata: object) -> None:
    # The format's metadata is a flat string-to-string map; nothing here reads it.
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise DatasetFileError(f"{name}: __metadata__ must map names to strings")
    if sum(len(k) + len(v) for k, v in metadata.items()) > MAX_METADATA_CHARS:
        raise DatasetFileError(
            f"{name}: __metadata__ holds more than {MAX_METADATA_CHARS} characters: "
            "save the dataset without it"
        )


def _st_tensor(name: str, header: dict[str, Any], key: str, payload: int) -> tuple[ArraySpec, int]:
    entry = header[key]
    where = f"{name}: tensor '{key}'"
    if not isinstance(entry, dict):
        raise DatasetFileError(f"{where} is not described by a JSON object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in _ST_DTYPES:
        raise DatasetFileError(f"{where} has dtype {dtype!r}; supported: {', '.join(_ST_DTYPES)}")
    if not isinstance(shape, list) or not all(_is_size(d) for d in shape):
        raise DatasetFileError(f"{where} has an invalid shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_size(o) for o in offsets)):
        raise DatasetFileError(f"{where} has invalid data_offsets {offsets!r}")
    read, kind, shown = _ST_DTYPES[dtype]
    spec = ArraySpec(key, tuple(shape), np.dtype(read), kind, shown)
    begin, end = offsets
    if not begin <= end <= payload:
        raise DatasetFileError(f"{where}: data_offsets {offsets} lie outside the file's data")
    if end - begin != spec.nbytes:
        raise DatasetFileError(
            f"{where}: shape {shape} x {dtype} needs {spec.nbytes} bytes, not {end - begin}"
        )
    return spec, begin


def _is_size(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _file_rows(fh: IO[bytes], offset: int, spec: ArraySpec) -> RowReader:
    position = offset

    row_items = math.prod(spec.row_shape)

    def read(count: int) -> npt.NDArray[Any]:
        nonlocal position
        rows = _read_at(fh, position, count * row_items, spec.dtype)
        position += rows.nbytes
        return rows.reshape(count, *spec.row_shape)

    return read


def _read_at(fh: IO[bytes], offset: int, count: int, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """Positional read: passes over one handle (threads, interleaved batches()) do not clash."""
    if not hasattr(os, "preadv"):  # Windows, macOS before 11
        fh.seek(offset)
        return read_array(fh, count, dtype)
    out = np.empty(count, dtype=dtype)
    view = out.view(np.uint8).data
    position = 0
    while position < len(view):  # straight into the buffer: no chunks joined afterwards
        done = os.preadv(fh.fileno(), [view[position : position + (1 << 30)]], offset + position)
        if done <= 0:
            raise truncated()
        position += done
    return out
