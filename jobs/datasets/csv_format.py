""".csv: a header row, then one numeric row per sample; one column may hold the labels.

Parsed as text, batch by batch: opening a file costs one streaming pass (to count rows and
tell class labels from float targets), and each pass over the data another.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from jobs.datasets.base import Batch, Dataset, DatasetFormat, DatasetInfo, InvalidDataset


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


def open_csv(path: Path, name: str, label_column: str | None, max_samples: int | None) -> Dataset:
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
