"""The entry point: detect the format, then hand the file to that format's reader."""

from __future__ import annotations

from pathlib import Path

from jobs.datasets.base import Dataset, DatasetFileError, DatasetFormat
from jobs.datasets.csv_format import open_csv
from jobs.datasets.detect import HEAD_BYTES, detect_format
from jobs.datasets.npz import open_npz
from jobs.datasets.safetensors import open_safetensors


def open_dataset(
    path: Path,
    fmt: DatasetFormat | None = None,
    label_column: str | None = None,
    max_samples: int | None = None,
    *,
    name: str | None = None,
    max_bytes: int | None = None,
    max_features: int | None = None,
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
        max_features: refuse samples with more values than this, checked before any
            per-value or per-column work.

    Raises:
        DatasetFileError: what is wrong and how to fix it.
    """
    name = name or path.name
    if fmt is None:
        with path.open("rb") as f:
            fmt = detect_format(name, f.read(HEAD_BYTES))
    if label_column is not None and fmt is not DatasetFormat.CSV:
        raise DatasetFileError(
            f"label_column is for CSV files only: {name} is {fmt}, whose labels are the array y"
        )
    if fmt is DatasetFormat.NPZ:
        return open_npz(path, name, max_samples, max_bytes, max_features)
    if fmt is DatasetFormat.SAFETENSORS:
        return open_safetensors(path, name, max_samples, max_bytes, max_features)
    return open_csv(path, name, label_column, max_samples, max_features)
