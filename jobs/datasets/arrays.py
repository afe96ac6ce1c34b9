"""What .npz and .safetensors share: both store arrays x and optional y.

Each format parses its own header into an `ArraySpec` per array, then hands the checks and
the batching to this module. A format provides row readers (count -> raw rows), so memory
does not grow with the file: rows are read batch by batch and converted here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, Any, Final

import numpy as np
import numpy.typing as npt

from jobs.datasets.base import (
    ArrayBatch,
    Dataset,
    DatasetFileError,
    DatasetFormat,
    DatasetInfo,
    XBatch,
    YBatch,
)


@dataclass(frozen=True)
class ArraySpec:
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
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


# Arrays are read in pieces of this size into buffers allocated once: never a list of chunks
# joined afterwards (twice the memory) nor a decompressor asked for gigabytes at once.
READ_CHUNK_BYTES: Final = 1024 * 1024
# numpy itself stops at 64 dimensions; no dataset needs more than a handful.
MAX_DIMENSIONS: Final = 16

RowReader = Callable[[int], npt.NDArray[Any]]  # count -> raw rows (count, *row_shape)
Readers = AbstractContextManager[tuple[RowReader, RowReader | None]]  # (x, y) readers


def _to_float32(raw: npt.NDArray[Any], spec: ArraySpec) -> XBatch:
    if spec.kind == "bf16":  # bfloat16 is the top half of a float32
        return (raw.astype(np.uint32) << 16).view(np.float32)
    if spec.kind == "b":
        raw = raw != 0
    with np.errstate(over="ignore"):  # beyond float32 range -> inf, refused per batch
        # copy=False: float32 rows are handed out as read, not copied once more per batch.
        return raw.astype(np.float32, order="C", copy=False)


def _to_labels(raw: npt.NDArray[Any], spec: ArraySpec, y_kind: str) -> YBatch:
    raw = raw.reshape(len(raw), -1) if spec.row_shape and spec.row_shape[0] > 1 else raw.reshape(-1)
    if y_kind == "value":
        return _to_float32(raw, spec)
    return (raw != 0 if spec.kind == "b" else raw).astype(np.int64, order="C")


def describe_arrays(
    name: str,
    fmt: DatasetFormat,
    x: ArraySpec,
    y: ArraySpec | None,
    max_samples: int | None,
    max_features: int | None = None,
) -> DatasetInfo:
    """The structural checks shared by .npz and .safetensors."""
    if x.kind not in ("b", "i", "u", "f", "bf16"):
        raise DatasetFileError(f"{name}: x has dtype {x.dtype_name}; save numeric features")
    for spec in (x, y):
        if spec is not None and len(spec.shape) > MAX_DIMENSIONS:
            raise DatasetFileError(
                f"{name}: {spec.key} has {len(spec.shape)} dimensions; "
                f"at most {MAX_DIMENSIONS} are accepted"
            )
    if len(x.shape) < 2:
        raise DatasetFileError(
            f"{name}: x has shape {list(x.shape)} but must be (N, ...) with one row per sample: "
            "use x.reshape(-1, 1) if each sample is one number"
        )
    n = x.shape[0]
    if n == 0:
        raise DatasetFileError(f"{name} is empty: x has no samples")
    if math.prod(x.row_shape) == 0:
        raise DatasetFileError(f"{name}: x has shape {list(x.shape)}: samples must not be empty")
    if max_samples is not None and n > max_samples:
        raise DatasetFileError(
            f"{name} has {n} samples; the limit is {max_samples}: upload a subset"
        )
    check_features(name, math.prod(x.row_shape), max_features)
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


def _describe_labels(name: str, y: ArraySpec, n: int) -> tuple[str, list[int]]:
    if y.kind not in ("b", "i", "u", "f", "bf16"):
        raise DatasetFileError(f"{name}: y has dtype {y.dtype_name}; save numeric labels")
    if not y.shape or y.shape[0] != n:
        raise DatasetFileError(
            f"{name}: x has {n} samples but y has shape {list(y.shape)}: save one label per sample"
        )
    y_kind = "value" if y.kind in ("f", "bf16") else "class"
    if len(y.shape) == 1 or y.shape[1:] == (1,):
        return y_kind, []
    if len(y.shape) == 2 and y_kind == "value":
        return y_kind, [y.shape[1]]
    raise DatasetFileError(
        f"{name}: y has shape {list(y.shape)}: give class labels as (N,) integers, "
        "or regression targets as (N,) or (N, k) floats"
    )


def check_bytes(name: str, x: ArraySpec, y: ArraySpec | None, max_bytes: int | None) -> None:
    total = x.nbytes + (0 if y is None else y.nbytes)
    if max_bytes is not None and total > max_bytes:
        raise DatasetFileError(f"{name} holds {total} bytes of arrays; the limit is {max_bytes}")


def read_exact(stream: IO[bytes], n: int) -> bytes:
    """A few bytes (headers); arrays go through `read_array`."""
    return read_array(stream, n, np.dtype(np.uint8)).tobytes()


def truncated() -> DatasetFileError:
    return DatasetFileError("the file ends before its data does (truncated?): upload it again")


def read_array(stream: IO[bytes], count: int, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """`count` items read into one buffer allocated up front, a chunk at a time."""
    out = np.empty(count, dtype=dtype)
    view = out.view(np.uint8).data
    position = 0
    while position < len(view):
        chunk = stream.read(min(len(view) - position, READ_CHUNK_BYTES))
        if not chunk:
            raise truncated()
        view[position : position + len(chunk)] = chunk
        position += len(chunk)
    return out


def check_features(name: str, features: int, max_features: int | None) -> None:
    """Refuse samples wider than the server takes, before any per-value (or per-column) work."""
    if max_features is not None and features > max_features:
        raise DatasetFileError(
            f"{name} has {features} values per sample; this server takes at most "
            f"{max_features} (DEADWEIGHT_MAX_FEATURES)"
        )


class ArrayDataset(Dataset):
    """x and y read row by row through readers the format provides."""

    def __init__(
        self,
        info: DatasetInfo,
        name: str,
        x: ArraySpec,
        y: ArraySpec | None,
        open_readers: Callable[[], Readers],
        on_close: Callable[[], None],
    ) -> None:
        super().__init__(info, name)
        self._x, self._y = x, y
        self._open_readers = open_readers  # fresh readers for each pass over the data
        self._on_close = on_close

    def _read(self, batch_size: int) -> Iterator[ArrayBatch]:
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
