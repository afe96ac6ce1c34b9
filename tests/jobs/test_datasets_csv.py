""".csv datasets: header, label column, every refusal with its line and column, rows
streamed, and checks whose cost stays linear in what a file holds."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from jobs.datasets import DatasetFileError, DatasetFormat, DatasetInfo, open_dataset
from tests.hostile.costly_datasets import csv_endless_line, csv_header, csv_quoted_row, csv_rows
from tests.hostile.raw_zips import MIB
from tests.jobs.dataset_helpers import BATCH_SIZES, collect, peak_while, refused, validate_file


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_csv_round_trip_with_label_column(tmp_path: Path, batch_size: int) -> None:
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(10, 3)), rng.integers(0, 4, size=10)
    lines = ["f1,label,f2,f3"] + [
        f"{a!r},{c},{b!r},{d!r}" for (a, b, d), c in zip(x.tolist(), y.tolist(), strict=True)
    ]
    path = tmp_path / "data.csv"
    path.write_text("\n".join(lines) + "\n")
    with open_dataset(path, label_column="label") as ds:
        assert ds.info == DatasetInfo(
            format=DatasetFormat.CSV,
            samples=10,
            x_shape=[3],
            has_labels=True,
            x_dtype="float64",
            y_kind="class",
            label_column="label",
            y_shape=[],
        )
    xs, ys = collect(path, batch_size, label_column="label")
    np.testing.assert_array_equal(xs, x.astype(np.float32))
    np.testing.assert_array_equal(ys, y)  # type: ignore[arg-type]


def test_csv_variants(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    # BOM, blank lines, quotes, spaces, CRLF, float targets.
    path.write_bytes('\ufeff\n a , "b" ,t\r\n1, 2,0.5\r\n\r\n"3",4e1,-1\r\n'.encode())
    with open_dataset(path, label_column="t") as ds:
        assert (ds.info.samples, ds.info.x_shape, ds.info.y_kind) == (2, [2], "value")
    xs, ys = collect(path, 5, label_column="t")
    np.testing.assert_array_equal(xs, [[1, 2], [3, 40]])
    np.testing.assert_array_equal(ys, np.array([0.5, -1], np.float32))  # type: ignore[arg-type]
    # Without label_column every column is a feature and there are no labels.
    xs, ys = collect(path, 5)
    assert ys is None and xs.shape == (2, 3)


def test_csv_integer_valued_labels_are_classes(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a,y\n1,0\n2,1.0\n3,2\n")
    with open_dataset(path, label_column="y") as ds:
        assert ds.info.y_kind == "class"
    path.write_text("a,y\n1,0\n2,-1\n")  # negative: a regression target, not a class
    with open_dataset(path, label_column="y") as ds:
        assert ds.info.y_kind == "value"


@pytest.mark.parametrize(
    ("text", "label_column", "fragments"),
    [
        ("a,b\n1,2\n", "label", ["no column 'label'", "its columns are: a, b"]),
        ("a,b,c\n1,x,3\n", None, ["line 2, column 'b'", "'x' is not a number"]),
        ("a,b\n1,2\n3,\n", None, ["line 3, column 'b'", "an empty cell"]),
        ("a,y\n1,cat\n", "y", ["line 2, column 'y'", "class names as numbers"]),
        ("1,2\n3,4\n", None, ["first row must be a header"]),
        ("a,b\n1,2\n3,4,5\n", None, ["line 3 has 3 cells but the header has 2"]),
        ("", None, ["is empty", "header row"]),
        ("a,b\n", None, ["no data rows"]),
        (",a\n0,1\n", None, ["column 1 has no name", "index=False"]),
        ("a,a\n1,2\n", None, ["unique", "['a']"]),
        ("y\n1\n", "y", ["no feature columns"]),
        ("a,b\n1,nan\n", None, ["sample 0", "NaN"]),
        ("a,b\n1,2\n3,inf\n", None, ["sample 1", "NaN, infinite"]),
        ("a,y\n1,2\n3,nan\n", "y", ["target of sample 1 is NaN"]),
    ],
)
def test_csv_refusals(
    tmp_path: Path, text: str, label_column: str | None, fragments: list[str]
) -> None:
    path = tmp_path / "data.csv"
    path.write_text(text)
    refused(path, "data.csv", *fragments, label_column=label_column)


def test_csv_encoding_and_limits(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b"a,b\n1,2\n\xff\xfe,3\n")
    refused(path, "not UTF-8", fmt=DatasetFormat.CSV)
    path.write_text("a\n" + "1\n" * 20)
    refused(path, "more than 10 samples", max_samples=10)


def test_csv_streams_rows(tmp_path: Path) -> None:
    """Batches come before the file is read to the end: a bad late row fails late."""
    path = tmp_path / "data.csv"
    path.write_text("a,b\n" + "1,2\n" * 100 + "3,4\n")
    with open_dataset(path) as ds:
        path.write_text("a,b\n" + "1,2\n" * 100 + "3,oops\n")  # changed after the info pass
        batches = ds.batches(10)
        assert next(batches)[0].shape == (10, 2)
        with pytest.raises(DatasetFileError, match="line 102, column 'b'"):
            list(batches)


def test_csv_rows_are_parsed_into_a_table_in_place(tmp_path: Path) -> None:
    path = csv_rows(tmp_path / "wide.csv", rows=4096, columns=2000)  # 16 MB of zeros
    assert peak_while(lambda: validate_file(path)) < 40 * MIB
    with open_dataset(path) as ds:
        assert ds.info.samples == 4096 and ds.info.x_shape == [2000]


@pytest.mark.timeout(60)
def test_csv_header_checks_are_linear(tmp_path: Path) -> None:
    distinct = csv_header(tmp_path / "distinct.csv", 120_000, distinct=True, rows=1)  # 0.9 MB
    start = time.monotonic()
    with open_dataset(distinct) as ds:
        assert ds.info.x_shape == [120_000]
    repeated = csv_header(tmp_path / "repeated.csv", 450_000, distinct=False)
    refused(repeated, "column names must be unique; repeated: ['a']")
    assert time.monotonic() - start < 5


def test_csv_feature_limit_comes_before_any_column_work(tmp_path: Path) -> None:
    path = csv_header(tmp_path / "wide.csv", 450_000, distinct=False)
    refused(path, "has 450000 values per sample", "at most 1000", max_features=1000)
    path.write_text("a,b,y\n1,2,0\n")
    refused(path, "has 3 values per sample", max_features=2)
    with open_dataset(path, label_column="y", max_features=2) as ds:  # the label is no feature
        assert ds.info.x_shape == [2]


def test_csv_long_lines_are_refused_without_being_read_whole(tmp_path: Path) -> None:
    endless = csv_endless_line(tmp_path / "endless.csv", mib=8)
    message = refused(endless, "line 2 is longer than 1048576 characters", ".npz")
    assert message.startswith("endless.csv")
    assert peak_while(lambda: refused(endless, "longer")) < 16 * MIB
    header = tmp_path / "header.csv"
    header.write_text("a" * (2 * MIB) + "\n1\n")
    refused(header, "line 1 is longer than 1048576 characters")
    quoted = csv_quoted_row(tmp_path / "quoted.csv", 600_000)  # one row over many lines
    refused(quoted, "is longer than 1048576 characters")
