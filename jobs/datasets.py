"""Dataset files: format detection, structural validation and batch streaming (NumPy only).

Both the HTTP process (validates uploads, never imports torch) and the engine (streams
batches) read datasets through this module. Nothing here unpickles: `.npz` members are read
as raw `.npy` streams whose headers are checked first, `.safetensors` headers are parsed as
JSON and checked against the file before any tensor data is read, CSV is parsed as text.

Memory does not grow with the dataset: `.safetensors` is read batch by batch at random
access, `.npz` members are decompressed as a stream (one exception: a member saved in
Fortran order is read whole), CSV rows are parsed batch by batch. `.safetensors` is the
format to use for data larger than memory: no decompression and no hidden copies.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import os
import struct
import zipfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Protocol

import numpy as np
import numpy.typing as npt

XBatch = npt.NDArray[np.float32]
YBatch = npt.NDArray[np.int64] | npt.NDArray[np.float32]
Batch = tuple[XBatch, YBatch | None]

ACCEPTED: Final = (
    ".npz (np.savez with arrays x and optional y), .safetensors (tensors x and optional y) "
    "or .csv (a header row, then numeric columns)"
)
HEAD_BYTES: Final = 4096  # what open_dataset reads for detect_format
MAX_SAFETENSORS_HEADER: Final = 100 * 1024 * 1024
_NPY_MAX_HEADER: Final = 10_000


class InvalidDataset(ValueError):
    """The dataset file cannot be used; the message says what to fix."""


class DatasetFormat(StrEnum):
    NPZ = "npz"
    SAFETENSORS = "safetensors"
    CSV = "csv"


@dataclass(frozen=True)
class DatasetInfo:
    format: DatasetFormat
    samples: int
    x_shape: list[int]  # per-sample shape, without the batch dimension
    has_labels: bool
    x_dtype: str  # as stored: "float64", "bfloat16", "uint8", ...; CSV: "float64"
    y_kind: str | None  # "class" (integer labels) | "value" (float targets) | None
    label_column: str | None
    y_shape: list[int] | None = None  # per-sample label shape: [] or [k] targets

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": str(self.format),
            "samples": self.samples,
            "x_shape": self.x_shape,
            "has_labels": self.has_labels,
            "x_dtype": self.x_dtype,
            "y_kind": self.y_kind,
            "y_shape": self.y_shape,
            "label_column": self.label_column,
        }


def detect_format(filename: str, head: bytes) -> DatasetFormat:
    """Tell the format from the first bytes of a file (and, for CSV, its name).

    Raises:
        InvalidDataset: for anything but a zip (.npz), a safetensors file or CSV text.
    """
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return DatasetFormat.NPZ
    if len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] > 0:
        return DatasetFormat.SAFETENSORS
    if filename.lower().endswith(".csv") and _is_text(head):
        return DatasetFormat.CSV
    raise InvalidDataset(
        f"{filename} is not a dataset format this service reads: upload {ACCEPTED}"
    )


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:  # final=False: the head may end inside a multi-byte character
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


def check_fits_model(info: DatasetInfo, model_input_shape: list[int | None]) -> None:
    """Refuse a dataset whose per-sample shape does not match the model's input.

    Args:
        info: the dataset's description.
        model_input_shape: the model's declared input shape, batch dimension first;
            None marks a dynamic dimension.

    Raises:
        InvalidDataset: naming both shapes.
    """
    expected = model_input_shape[1:]
    fits = len(model_input_shape) >= 1 and len(expected) == len(info.x_shape)
    fits = fits and all(e is None or e == s for e, s in zip(expected, info.x_shape, strict=False))
    if fits:
        return
    shown = "[" + ", ".join("?" if e is None else str(e) for e in expected) + "]"
    message = f"dataset samples have shape {info.x_shape} but the model expects {shown}"
    sized = [e for e in expected if e is not None]
    if len(sized) == len(expected) and math.prod(sized) == math.prod(info.x_shape):
        message += f": reshape x to (N, {', '.join(map(str, sized))}) before saving"
    raise InvalidDataset(message)


class Dataset(ABC):
    """An open dataset file: `info`, then `batches()` as many times as needed."""

    def __init__(self, info: DatasetInfo, name: str) -> None:
        self.info = info
        self.name = name
        self._closed = False

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """Stream (x, y) in file order: x float32 (b, *x_shape); y int64/float32 or None.

        Raises:
            InvalidDataset: (while iterating) at the first non-finite value or bad label.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self._closed:
            raise ValueError(f"dataset {self.name} is closed")
        return self._checked(batch_size)

    def validate(self, batch_size: int = 4096) -> None:
        """Stream the whole file once, checking every value (the upload check)."""
        for _ in self.batches(batch_size):
            pass

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Dataset:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @abstractmethod
    def _read(self, batch_size: int) -> Iterator[Batch]: ...

    def _checked(self, batch_size: int) -> Iterator[Batch]:
        start = 0
        for x, y in self._read(batch_size):
            _check_values(self.name, x, y, start)
            start += len(x)
            yield x, y
        if start != self.info.samples:
            raise InvalidDataset(f"{self.name} changed while it was read: upload it again")


def _check_values(name: str, x: XBatch, y: YBatch | None, start: int) -> None:
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        i = start + int(np.argmax(bad))
        raise InvalidDataset(
            f"{name}: sample {i} (counting from 0) has a feature that is NaN, infinite or "
            "beyond float32 range: remove or impute it"
        )
    if y is None:
        return
    if y.dtype == np.int64:
        if (y < 0).any():
            i = start + int(np.argmax(y < 0))
            raise InvalidDataset(
                f"{name}: label of sample {i} is {int(y[i - start])}: class labels must be "
                "integers >= 0 (save float targets for regression)"
            )
        return
    bad = ~np.isfinite(y.reshape(len(y), -1)).all(axis=1)
    if bad.any():
        i = start + int(np.argmax(bad))
        raise InvalidDataset(f"{name}: the target of sample {i} is NaN or infinite: fix or drop it")


# --- .npz and .safetensors: arrays x and y -------------------------------------------------


@dataclass(frozen=True)
class _ArraySpec:
    """One stored array: how its bytes are read and what they mean."""

    key: str  # "x" or "y"
    shape: tuple[int, ...]
    dtype: np.dtype[Any]  # how bytes are read: bool as uint8, bfloat16 as uint16
    kind: str  # "b" bool, "i" signed, "u" unsigned, "f" float, "bf16"
    dtype_name: str
    fortran: bool = False

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    @property
    def row_bytes(self) -> int:
        return math.prod(self.row_shape) * self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


RowReader = Callable[[int], npt.NDArray[Any]]  # count -> raw rows (count, *row_shape)
Readers = AbstractContextManager[tuple[RowReader, RowReader | None]]  # (x, y) readers


def _to_float32(raw: npt.NDArray[Any], spec: _ArraySpec) -> XBatch:
    if spec.kind == "bf16":  # bfloat16 is the top half of a float32
        return (raw.astype(np.uint32) << 16).view(np.float32)
    if spec.kind == "b":
        raw = raw != 0
    with np.errstate(over="ignore"):  # beyond float32 range -> inf, refused per batch
        return raw.astype(np.float32, order="C")


def _to_labels(raw: npt.NDArray[Any], spec: _ArraySpec, y_kind: str) -> YBatch:
    raw = raw.reshape(len(raw), -1) if spec.row_shape and spec.row_shape[0] > 1 else raw.reshape(-1)
    if y_kind == "value":
        return _to_float32(raw, spec)
    return (raw != 0 if spec.kind == "b" else raw).astype(np.int64, order="C")


def _describe_arrays(
    name: str, fmt: DatasetFormat, x: _ArraySpec, y: _ArraySpec | None, max_samples: int | None
) -> DatasetInfo:
    """The structural checks shared by .npz and .safetensors."""
    if x.kind not in ("b", "i", "u", "f", "bf16"):
        raise InvalidDataset(f"{name}: x has dtype {x.dtype_name}; save numeric features")
    if len(x.shape) < 2:
        raise InvalidDataset(
            f"{name}: x has shape {list(x.shape)} but must be (N, ...) with one row per sample: "
            "use x.reshape(-1, 1) if each sample is one number"
        )
    n = x.shape[0]
    if n == 0:
        raise InvalidDataset(f"{name} is empty: x has no samples")
    if math.prod(x.row_shape) == 0:
        raise InvalidDataset(f"{name}: x has shape {list(x.shape)}: samples must not be empty")
    if max_samples is not None and n > max_samples:
        raise InvalidDataset(f"{name} has {n} samples; the limit is {max_samples}: upload a subset")
    y_kind, y_shape = (None, None) if y is None else _describe_labels(name, y, n)
    return DatasetInfo(
        format=fmt,
        samples=n,
        x_shape=list(x.row_shape),
        has_labels=y is not None,
        x_dtype=x.dtype_name,
        y_kind=y_kind,
        label_column=None,
        y_shape=y_shape,
    )


def _describe_labels(name: str, y: _ArraySpec, n: int) -> tuple[str, list[int]]:
    if y.kind not in ("b", "i", "u", "f", "bf16"):
        raise InvalidDataset(f"{name}: y has dtype {y.dtype_name}; save numeric labels")
    if not y.shape or y.shape[0] != n:
        raise InvalidDataset(
            f"{name}: x has {n} samples but y has shape {list(y.shape)}: save one label per sample"
        )
    y_kind = "value" if y.kind in ("f", "bf16") else "class"
    if len(y.shape) == 1 or y.shape[1:] == (1,):
        return y_kind, []
    if len(y.shape) == 2 and y_kind == "value":
        return y_kind, [y.shape[1]]
    raise InvalidDataset(
        f"{name}: y has shape {list(y.shape)}: give class labels as (N,) integers, "
        "or regression targets as (N,) or (N, k) floats"
    )


class _ArrayDataset(Dataset):
    """x and y read row by row through readers the format provides."""

    def __init__(
        self,
        info: DatasetInfo,
        name: str,
        x: _ArraySpec,
        y: _ArraySpec | None,
        open_readers: Callable[[], Readers],
        on_close: Callable[[], None],
    ) -> None:
        super().__init__(info, name)
        self._x, self._y = x, y
        self._open_readers = open_readers  # fresh readers for each pass over the data
        self._on_close = on_close

    def _read(self, batch_size: int) -> Iterator[Batch]:
        n = self.info.samples
        with self._open_readers() as (read_x, read_y):
            for start in range(0, n, batch_size):
                count = min(batch_size, n - start)
                x = _to_float32(read_x(count), self._x)
                y = None
                if read_y is not None and self._y is not None and self.info.y_kind is not None:
                    y = _to_labels(read_y(count), self._y, self.info.y_kind)
                yield x, y

    def close(self) -> None:
        if not self._closed:
            self._on_close()
        super().close()


# .safetensors ------------------------------------------------------------------------------

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


def _open_safetensors(
    path: Path, name: str, max_samples: int | None, max_bytes: int | None
) -> Dataset:
    fh = path.open("rb")
    try:
        size = path.stat().st_size
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise InvalidDataset(f"{name} is too short to be a safetensors file")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > MAX_SAFETENSORS_HEADER:
            raise InvalidDataset(
                f"{name}: the safetensors header claims {header_len} bytes (limit 100 MB)"
            )
        if 8 + header_len > size:
            raise InvalidDataset(f"{name}: the safetensors header runs past the end of the file")
        header = _parse_st_header(name, fh.read(header_len))
        base, payload = 8 + header_len, size - 8 - header_len
        x, x_begin = _st_tensor(name, header, "x", payload)
        y, y_begin = _st_tensor(name, header, "y", payload) if "y" in header else (None, 0)
        _check_bytes(name, x, y, max_bytes)
        info = _describe_arrays(name, DatasetFormat.SAFETENSORS, x, y, max_samples)
    except BaseException:
        fh.close()
        raise

    @contextmanager
    def readers() -> Iterator[tuple[RowReader, RowReader | None]]:
        yield (
            _file_rows(fh, base + x_begin, x),
            (None if y is None else _file_rows(fh, base + y_begin, y)),
        )

    return _ArrayDataset(info, name, x, y, readers, fh.close)


def _parse_st_header(name: str, raw: bytes) -> dict[str, Any]:
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidDataset(f"{name}: the safetensors header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise InvalidDataset(f"{name}: the safetensors header must be a JSON object")
    if "x" not in header:
        found = sorted(k for k in header if k != "__metadata__")
        raise InvalidDataset(
            f"{name} has no tensor 'x' (found {found[:10]}): save features as x "
            "(and labels as y) with safetensors.numpy.save_file"
        )
    return header


def _st_tensor(name: str, header: dict[str, Any], key: str, payload: int) -> tuple[_ArraySpec, int]:
    entry = header[key]
    where = f"{name}: tensor '{key}'"
    if not isinstance(entry, dict):
        raise InvalidDataset(f"{where} is not described by a JSON object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in _ST_DTYPES:
        raise InvalidDataset(f"{where} has dtype {dtype!r}; supported: {', '.join(_ST_DTYPES)}")
    if not isinstance(shape, list) or not all(_is_size(d) for d in shape):
        raise InvalidDataset(f"{where} has an invalid shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_size(o) for o in offsets)):
        raise InvalidDataset(f"{where} has invalid data_offsets {offsets!r}")
    read, kind, shown = _ST_DTYPES[dtype]
    spec = _ArraySpec(key, tuple(shape), np.dtype(read), kind, shown)
    begin, end = offsets
    if not begin <= end <= payload:
        raise InvalidDataset(f"{where}: data_offsets {offsets} lie outside the file's data")
    if end - begin != spec.nbytes:
        raise InvalidDataset(
            f"{where}: shape {shape} x {dtype} needs {spec.nbytes} bytes, not {end - begin}"
        )
    return spec, begin


def _is_size(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _file_rows(fh: IO[bytes], offset: int, spec: _ArraySpec) -> RowReader:
    position = offset

    def read(count: int) -> npt.NDArray[Any]:
        nonlocal position
        buf = _read_at(fh, position, count * spec.row_bytes)
        position += len(buf)
        return np.frombuffer(buf, dtype=spec.dtype).reshape(count, *spec.row_shape)

    return read


def _read_at(fh: IO[bytes], offset: int, n: int) -> bytes:
    """Positional read: passes over one handle (threads, interleaved batches()) do not clash."""
    if not hasattr(os, "pread"):  # Windows
        fh.seek(offset)
        return _read_exact(fh, n)
    chunks: list[bytes] = []
    while n > 0:
        chunk = os.pread(fh.fileno(), min(n, 1 << 30), offset)
        if not chunk:
            raise InvalidDataset("the file ends before its data does (truncated?): upload it again")
        chunks.append(chunk)
        n -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    chunks: list[bytes] = []
    while n > 0:
        chunk = stream.read(n)
        if not chunk:
            raise InvalidDataset("the file ends before its data does (truncated?): upload it again")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _check_bytes(name: str, x: _ArraySpec, y: _ArraySpec | None, max_bytes: int | None) -> None:
    total = x.nbytes + (0 if y is None else y.nbytes)
    if max_bytes is not None and total > max_bytes:
        raise InvalidDataset(f"{name} holds {total} bytes of arrays; the limit is {max_bytes}")


# .npz ---------------------------------------------------------------------------------------


@contextmanager
def _zip_errors(name: str) -> Iterator[None]:
    try:
        yield
    except InvalidDataset:
        raise
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        RuntimeError,
        NotImplementedError,
    ) as exc:
        raise InvalidDataset(f"{name} is not a readable .npz (zip) file: {exc}") from None


def _open_npz(path: Path, name: str, max_samples: int | None, max_bytes: int | None) -> Dataset:
    with _zip_errors(name):
        zf = zipfile.ZipFile(path)
    try:
        with _zip_errors(name):
            x_member = _npz_member(zf, "x")
            if x_member is None:
                raise InvalidDataset(
                    f"{name} has no array 'x': save features as x (and labels as y) with np.savez"
                )
            y_member = _npz_member(zf, "y")
            x, x_start = _npy_header(zf, x_member, name, "x")
            y, y_start = (None, 0) if y_member is None else _npy_header(zf, y_member, name, "y")
        _check_bytes(name, x, y, max_bytes)
        info = _describe_arrays(name, DatasetFormat.NPZ, x, y, max_samples)
    except BaseException:
        zf.close()
        raise

    @contextmanager
    def readers() -> Iterator[tuple[RowReader, RowReader | None]]:
        with _zip_errors(name), zf.open(x_member) as xs:
            if y_member is None or y is None:
                yield _npy_rows(xs, x_start, x), None
                return
            with zf.open(y_member) as ys:
                yield _npy_rows(xs, x_start, x), _npy_rows(ys, y_start, y)

    return _ArrayDataset(info, name, x, y, readers, zf.close)


def _npz_member(zf: zipfile.ZipFile, key: str) -> zipfile.ZipInfo | None:
    for candidate in (f"{key}.npy", key):
        try:
            return zf.getinfo(candidate)
        except KeyError:
            continue
    return None


def _npy_header(
    zf: zipfile.ZipFile, member: zipfile.ZipInfo, name: str, key: str
) -> tuple[_ArraySpec, int]:
    """Parse a member's .npy header (a literal dict, never unpickled) and check its size."""
    fmt = np.lib.format
    with zf.open(member) as stream:
        try:
            version = fmt.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(stream, _NPY_MAX_HEADER)
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(stream, _NPY_MAX_HEADER)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except (ValueError, TypeError, SyntaxError) as exc:
            raise InvalidDataset(
                f"{name}: array '{key}' has an unreadable .npy header: {exc}"
            ) from None
        start = stream.tell()
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise InvalidDataset(
            f"{name}: array '{key}' holds Python objects or records ({dtype}); "
            "save a plain numeric array (pickled data is never loaded)"
        )
    kind = {"b": "b", "i": "i", "u": "u", "f": "f"}.get(dtype.kind, "?")
    read = np.dtype(np.uint8) if kind == "b" else dtype
    spec = _ArraySpec(key, tuple(shape), read, kind, str(dtype), bool(fortran))
    if kind != "?" and member.file_size != start + spec.nbytes:
        raise InvalidDataset(f"{name}: array '{key}' is truncated or corrupt: save it again")
    return spec, start


def _npy_rows(stream: IO[bytes], start: int, spec: _ArraySpec) -> RowReader:
    _read_exact(stream, start)  # skip the header: zip members only stream forwards
    if not spec.fortran:
        return lambda count: np.frombuffer(
            _read_exact(stream, count * spec.row_bytes), dtype=spec.dtype
        ).reshape(count, *spec.row_shape)
    # Fortran order scatters each row across the whole array: read it once, whole.
    whole = np.frombuffer(_read_exact(stream, spec.nbytes), dtype=spec.dtype)
    array = whole.reshape(spec.shape, order="F")
    position = 0

    def read(count: int) -> npt.NDArray[Any]:
        nonlocal position
        position += count
        return array[position - count : position]

    return read


# .csv ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CsvLayout:
    columns: list[str]
    features: list[int]  # column indices of the features
    label: int | None


class _CsvDataset(Dataset):
    def __init__(self, info: DatasetInfo, name: str, path: Path, layout: _CsvLayout) -> None:
        super().__init__(info, name)
        self._path = path
        self._layout = layout

    def _read(self, batch_size: int) -> Iterator[Batch]:
        features, label = self._layout.features, self._layout.label
        rows: list[list[float]] = []
        with _csv_rows(self._path, self.name, self._layout) as reader:
            for _line, values in reader:
                rows.append(values)
                if len(rows) == batch_size:
                    yield self._batch(rows, features, label)
                    rows = []
        if rows:
            yield self._batch(rows, features, label)

    def _batch(self, rows: list[list[float]], features: list[int], label: int | None) -> Batch:
        table = np.asarray(rows, dtype=np.float64)  # (b, columns)
        x = np.ascontiguousarray(table[:, features], dtype=np.float32)
        if label is None:
            return x, None
        y = table[:, label]
        if self.info.y_kind == "class":
            return x, y.astype(np.int64)
        return x, y.astype(np.float32)


class _CsvReader(Protocol):
    line_num: int

    def __iter__(self) -> Iterator[list[str]]: ...
    def __next__(self) -> list[str]: ...


@contextmanager
def _csv_text(path: Path, name: str) -> Iterator[_CsvReader]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            yield csv.reader(f)
    except UnicodeDecodeError:
        raise InvalidDataset(f"{name} is not UTF-8 text: save the CSV as UTF-8") from None
    except csv.Error as exc:
        raise InvalidDataset(f"{name} is not well-formed CSV: {exc}") from None


@contextmanager
def _csv_rows(
    path: Path, name: str, layout: _CsvLayout
) -> Iterator[Iterator[tuple[int, list[float]]]]:
    """Data rows as (line number, all cells as floats), header skipped, blank lines skipped."""

    def rows(reader: _CsvReader) -> Iterator[tuple[int, list[float]]]:
        next((row for row in reader if row), None)  # the header
        for cells in reader:
            if not cells:
                continue
            line = reader.line_num
            if len(cells) != len(layout.columns):
                raise InvalidDataset(
                    f"{name} line {line} has {len(cells)} cells "
                    f"but the header has {len(layout.columns)}"
                )
            yield line, _parse_row(name, line, cells, layout.columns)

    with _csv_text(path, name) as reader:
        yield rows(reader)


def _parse_row(name: str, line: int, cells: list[str], columns: list[str]) -> list[float]:
    try:
        return [float(c) for c in cells]
    except ValueError:
        pass
    for cell, column in zip(cells, columns, strict=True):
        try:
            float(cell)
        except ValueError:
            shown = repr(cell[:40]) if cell.strip() else "an empty cell"
            raise InvalidDataset(
                f"{name} line {line}, column '{column}': {shown} is not a number "
                "(every column must be numeric; encode categories and class names as numbers)"
            ) from None
    raise AssertionError("unreachable: some cell failed to parse")


def _csv_layout(path: Path, name: str, label_column: str | None) -> _CsvLayout:
    with _csv_text(path, name) as reader:
        header = next((row for row in reader if row), None)
    if header is None:
        raise InvalidDataset(f"{name} is empty: a CSV needs a header row, then one row per sample")
    columns = [c.strip() for c in header]
    if all(_is_number(c) for c in columns):
        raise InvalidDataset(
            f"{name}: the first row must be a header with column names, not numbers"
        )
    if "" in columns:
        raise InvalidDataset(
            f"{name}: column {columns.index('') + 1} has no name (pandas: save with index=False)"
        )
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise InvalidDataset(f"{name}: column names must be unique; repeated: {duplicates}")
    label = None
    if label_column is not None:
        if label_column.strip() not in columns:
            shown = ", ".join(columns[:30]) + (", ..." if len(columns) > 30 else "")
            raise InvalidDataset(f"{name} has no column '{label_column}'; its columns are: {shown}")
        label = columns.index(label_column.strip())
    features = [i for i in range(len(columns)) if i != label]
    if not features:
        raise InvalidDataset(f"{name} has no feature columns besides the label column")
    return _CsvLayout(columns, features, label)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _open_csv(path: Path, name: str, label_column: str | None, max_samples: int | None) -> Dataset:
    layout = _csv_layout(path, name, label_column)
    samples, integral = 0, True
    # One streaming pass: count rows and see whether the labels are class indices.
    with _csv_rows(path, name, layout) as rows:
        for _line, values in rows:
            samples += 1
            if max_samples is not None and samples > max_samples:
                raise InvalidDataset(f"{name} has more than {max_samples} samples: upload a subset")
            if layout.label is not None and integral:
                v = values[layout.label]
                integral = v.is_integer() and 0 <= v < 2**31
    if samples == 0:
        raise InvalidDataset(f"{name} has a header but no data rows")
    info = DatasetInfo(
        format=DatasetFormat.CSV,
        samples=samples,
        x_shape=[len(layout.features)],
        has_labels=layout.label is not None,
        x_dtype="float64",
        y_kind=None if layout.label is None else ("class" if integral else "value"),
        label_column=None if layout.label is None else layout.columns[layout.label],
        y_shape=None if layout.label is None else [],
    )
    return _CsvDataset(info, name, path, layout)


# --- entry point ----------------------------------------------------------------------------


def open_dataset(
    path: Path,
    fmt: DatasetFormat | None = None,
    label_column: str | None = None,
    max_samples: int | None = None,
    *,
    name: str | None = None,
    max_bytes: int | None = None,
) -> Dataset:
    """Open a dataset file after cheap structural checks (shapes, dtypes, lengths, headers).

    Values are checked while streaming: call `validate()` to check them all at once.

    Args:
        path: the file.
        fmt: its format; None detects it from the first bytes (and `name` for CSV).
        label_column: CSV only: the column holding the labels; without it, no labels.
        max_samples: refuse a dataset with more samples than this.
        name: the name users know the file by (the upload's file name), used in messages.
        max_bytes: refuse .npz/.safetensors whose arrays hold more bytes than this once
            decoded (an .npz of zeros compresses a thousandfold).

    Raises:
        InvalidDataset: what is wrong and how to fix it.
    """
    name = name or path.name
    if fmt is None:
        with path.open("rb") as f:
            fmt = detect_format(name, f.read(HEAD_BYTES))
    if label_column is not None and fmt is not DatasetFormat.CSV:
        raise InvalidDataset(
            f"label_column is for CSV files only: {name} is {fmt}, whose labels are the array y"
        )
    if fmt is DatasetFormat.NPZ:
        return _open_npz(path, name, max_samples, max_bytes)
    if fmt is DatasetFormat.SAFETENSORS:
        return _open_safetensors(path, name, max_samples, max_bytes)
    return _open_csv(path, name, label_column, max_samples)
