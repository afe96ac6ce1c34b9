"""What every dataset format shares: the error, the format names, the description of a
file, the `ArrayBatch` it streams (NumPy; the engine's tensors are `pruning.data.Batch`), and
the `Dataset` base class that checks every value it streams."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

XBatch = npt.NDArray[np.float32]
YBatch = npt.NDArray[np.int64] | npt.NDArray[np.float32]
ArrayBatch = tuple[XBatch, YBatch | None]

# `validate()` reads batches of about this many bytes, whatever the width of a sample: a
# count of rows would let a file of wide samples fill memory. One sample is the least.
VALIDATE_BATCH_BYTES: Final = 8 * 1024 * 1024
_MAX_BYTES_PER_VALUE: Final = 8 + 4  # float64 as read (at most), float32 as handed out


class DatasetFileError(ValueError):
    """A dataset cannot be used, for one of two reasons: its file (unreadable, malformed,
    non-finite, too large: the readers here, in the validation child and the engine), or its
    samples do not fit the model's recorded input shape (`check_fits_model`, when a job is
    submitted). The message says what to fix; the API answers it with a 422
    `invalid_dataset`. What only running the model shows is `pruning.errors.InvalidDataset`."""


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


class Dataset(ABC):
    """An open dataset file: `info`, then `batches()` as many times as needed."""

    def __init__(self, info: DatasetInfo, name: str) -> None:
        self.info = info
        self.name = name
        self._closed = False

    def batches(self, batch_size: int) -> Iterator[ArrayBatch]:
        """Stream (x, y) in file order: x float32 (b, *x_shape); y int64/float32 or None.

        Raises:
            DatasetFileError: (while iterating) at the first non-finite value or bad label.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self._closed:
            raise ValueError(f"dataset {self.name} is closed")
        return self._checked(batch_size)

    def validate(self, batch_size: int | None = None) -> None:
        """Stream the whole file once, checking every value (the upload check).

        Args:
            batch_size: samples per batch; by default as many as fit `VALIDATE_BATCH_BYTES`.
        """
        for _ in self.batches(batch_size or self.rows_per_batch(VALIDATE_BATCH_BYTES)):
            pass

    def rows_per_batch(self, budget_bytes: int) -> int:
        """Samples whose values, read and converted, take at most `budget_bytes` (at least 1)."""
        values = math.prod(self.info.x_shape) + math.prod(self.info.y_shape or [1])
        return max(1, budget_bytes // (values * _MAX_BYTES_PER_VALUE))

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
    def _read(self, batch_size: int) -> Iterator[ArrayBatch]: ...

    def _checked(self, batch_size: int) -> Iterator[ArrayBatch]:
        start = 0
        for x, y in self._read(batch_size):
            _check_values(self.name, x, y, start)
            start += len(x)
            yield x, y
        if start != self.info.samples:
            raise DatasetFileError(f"{self.name} changed while it was read: upload it again")


def _check_values(name: str, x: XBatch, y: YBatch | None, start: int) -> None:
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        i = start + int(np.argmax(bad))
        raise DatasetFileError(
            f"{name}: sample {i} (counting from 0) has a feature that is NaN, infinite or "
            "beyond float32 range: remove or impute it"
        )
    if y is None:
        return
    if y.dtype == np.int64:
        if (y < 0).any():
            i = start + int(np.argmax(y < 0))
            raise DatasetFileError(
                f"{name}: label of sample {i} is {int(y[i - start])}: class labels must be "
                "integers >= 0 (save float targets for regression)"
            )
        return
    bad = ~np.isfinite(y.reshape(len(y), -1)).all(axis=1)
    if bad.any():
        i = start + int(np.argmax(bad))
        raise DatasetFileError(
            f"{name}: the target of sample {i} is NaN or infinite: fix or drop it"
        )
