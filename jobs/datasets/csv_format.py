""".csv: a header row, then one numeric row per sample; one column may hold the labels.

Parsed as text, batch by batch: opening a file costs one streaming pass (to count rows and
tell class labels from float targets), and each pass over the data another.

Memory and time stay bounded whatever the file: a line (and a row, which quotes may spread
over lines) is at most `MAX_LINE_CHARS`, read with a limit so an endless line is never held
whole; the feature limit is checked on the header before any per-column work, and every
header check is linear; rows are parsed straight into one float64 table per pass.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NoReturn, Protocol, TextIO

import numpy as np
import numpy.typing as npt

from jobs.datasets.arrays import check_features
from jobs.datasets.base import ArrayBatch, Dataset, DatasetFileError, DatasetFormat, DatasetInfo

# About 100 000 numeric columns; wider data belongs in .npz or .safetensors.
MAX_LINE_CHARS: Final = 1024 * 1024
_READ_LIMIT: Final = MAX_LINE_CHARS + 1


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

    def _read(self, batch_size: int) -> Iterator[ArrayBatch]:
        layout = self._layout
        # One table per pass, filled in place; the batches handed out are copies of it.
        rows_per_table = min(batch_size, self.info.samples)
        table = np.empty((rows_per_table, len(layout.columns)), dtype=np.float64)
        filled = 0
        with _csv_rows(self._path, self.name, layout) as rows:
            for line, cells in rows:
                try:  # in place; NumPy parses text as float() does
                    table[filled] = cells
                except ValueError:
                    _refuse_row(self.name, line, cells, layout.columns)
                filled += 1
                if filled == rows_per_table:
                    yield self._batch(table)
                    filled = 0
        if filled:
            yield self._batch(table[:filled])

    def _batch(self, table: npt.NDArray[np.float64]) -> ArrayBatch:
        features, label = self._layout.features, self._layout.label
        x = np.ascontiguousarray(table[:, features], dtype=np.float32)  # a copy (fancy index)
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


class _BoundedLines:
    """The file's lines for csv.reader, refusing a row longer than `MAX_LINE_CHARS`.

    `readline` with a limit never holds more than the limit, even on a file with no newline;
    `row_chars` is reset by the caller at each row, since a quoted cell may span lines.
    """

    def __init__(self, f: TextIO, name: str) -> None:
        self._readline = f.readline
        self._name = name
        self.line = 0
        self.row_chars = 0

    def __iter__(self) -> _BoundedLines:
        return self

    def __next__(self) -> str:
        text = self._readline(_READ_LIMIT)
        if not text:
            raise StopIteration
        self.line += 1
        self.row_chars += len(text)
        if self.row_chars > MAX_LINE_CHARS:
            raise DatasetFileError(
                f"{self._name} line {self.line} is longer than {MAX_LINE_CHARS} characters "
                "(line end included): save wide data as .npz or .safetensors"
            )
        return text


@contextmanager
def _csv_text(path: Path, name: str) -> Iterator[tuple[_CsvReader, _BoundedLines]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            lines = _BoundedLines(f, name)
            yield csv.reader(lines), lines
    except UnicodeDecodeError:
        raise DatasetFileError(f"{name} is not UTF-8 text: save the CSV as UTF-8") from None
    except csv.Error as exc:
        raise DatasetFileError(f"{name} is not well-formed CSV: {exc}") from None


def _next_row(reader: _CsvReader, lines: _BoundedLines) -> list[str] | None:
    """The next non-blank row, or None at the end."""
    for cells in reader:
        lines.row_chars = 0
        if cells:
            return cells
    return None


@contextmanager
def _csv_rows(
    path: Path, name: str, layout: _CsvLayout
) -> Iterator[Iterator[tuple[int, list[str]]]]:
    """Data rows as (line number, cells), header skipped, blank lines skipped."""

    def rows(reader: _CsvReader, lines: _BoundedLines) -> Iterator[tuple[int, list[str]]]:
        _next_row(reader, lines)  # the header
        while (cells := _next_row(reader, lines)) is not None:
            line = reader.line_num
            if len(cells) != len(layout.columns):
                raise DatasetFileError(
                    f"{name} line {line} has {len(cells)} cells "
                    f"but the header has {len(layout.columns)}"
                )
            yield line, cells

    with _csv_text(path, name) as (reader, lines):
        yield rows(reader, lines)


def _refuse_row(name: str, line: int, cells: list[str], columns: list[str]) -> NoReturn:
    """Name the first cell that is not a number."""
    for cell, column in zip(cells, columns, strict=True):
        _parse_cell(name, line, cell, column)
    raise AssertionError("unreachable: some cell failed to parse")


def _parse_cell(name: str, line: int, cell: str, column: str) -> float:
    try:
        return float(cell)
    except ValueError:
        shown = repr(cell[:40]) if cell.strip() else "an empty cell"
        raise DatasetFileError(
            f"{name} line {line}, column '{column}': {shown} is not a number "
            "(every column must be numeric; encode categories and class names as numbers)"
        ) from None


def _csv_layout(
    path: Path, name: str, label_column: str | None, max_features: int | None
) -> _CsvLayout:
    with _csv_text(path, name) as (reader, lines):
        header = _next_row(reader, lines)
    if header is None:
        raise DatasetFileError(
            f"{name} is empty: a CSV needs a header row, then one row per sample"
        )
    # Before any per-column work: a header of a million names is refused at once.
    check_features(name, len(header) - (label_column is not None), max_features)
    columns = [c.strip() for c in header]
    if all(_is_number(c) for c in columns):
        raise DatasetFileError(
            f"{name}: the first row must be a header with column names, not numbers"
        )
    if "" in columns:
        raise DatasetFileError(
            f"{name}: column {columns.index('') + 1} has no name (pandas: save with index=False)"
        )
    counts = Counter(columns)  # linear: a quadratic check once held the API for minutes
    if len(counts) < len(columns):
        duplicates = sorted(c for c, n in counts.items() if n > 1)
        shown = ", ".join(repr(c[:40]) for c in duplicates[:10])
        more = f" and {len(duplicates) - 10} more" if len(duplicates) > 10 else ""
        raise DatasetFileError(f"{name}: column names must be unique; repeated: [{shown}]{more}")
    label = None
    if label_column is not None:
        if label_column.strip() not in counts:
            shown = ", ".join(columns[:30]) + (", ..." if len(columns) > 30 else "")
            raise DatasetFileError(
                f"{name} has no column '{label_column}'; its columns are: {shown}"
            )
        label = columns.index(label_column.strip())
    features = [i for i in range(len(columns)) if i != label]
    if not features:
        raise DatasetFileError(f"{name} has no feature columns besides the label column")
    return _CsvLayout(columns, features, label)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def open_csv(
    path: Path,
    name: str,
    label_column: str | None,
    max_samples: int | None,
    max_features: int | None = None,
) -> Dataset:
    layout = _csv_layout(path, name, label_column, max_features)
    samples, integral = 0, True
    # One streaming pass: count rows and see whether the labels are class indices. Only the
    # label cell is parsed here; every value is checked when the data is read.
    with _csv_rows(path, name, layout) as rows:
        for line, cells in rows:
            samples += 1
            if max_samples is not None and samples > max_samples:
                raise DatasetFileError(
                    f"{name} has more than {max_samples} samples: upload a subset"
                )
            if layout.label is not None and integral:
                v = _parse_cell(name, line, cells[layout.label], layout.columns[layout.label])
                integral = v.is_integer() and 0 <= v < 2**31
    if samples == 0:
        raise DatasetFileError(f"{name} has a header but no data rows")
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
