"""Dataset files: every format's happy path, lazy reading, and every refusal with its message."""

from __future__ import annotations

import json
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from jobs.datasets import (
    VALIDATE_BATCH_BYTES,
    DatasetFormat,
    DatasetInfo,
    InvalidDataset,
    check_fits_model,
    detect_format,
    open_dataset,
)
from tests.hostile_datasets import (
    MIB,
    csv_endless_line,
    csv_header,
    csv_quoted_row,
    csv_rows,
    npz_bomb,
    npz_many_dimensions,
    npz_nested_zip,
    safetensors_deep_json,
    safetensors_header,
    zip_directory_bomb,
)

BATCH_SIZES = [1, 3, 4, 10, 64]  # 3 and 4 do not divide N=10


def _collect(path: Path, batch_size: int, **kw: Any) -> tuple[np.ndarray, np.ndarray | None]:
    with open_dataset(path, **kw) as ds:
        xs, ys = [], []
        for x, y in ds.batches(batch_size):
            assert x.dtype == np.float32 and x.flags.c_contiguous
            assert x.shape[1:] == tuple(ds.info.x_shape) and 1 <= len(x) <= batch_size
            xs.append(x)
            ys.append(y)
    y_all = None if ys[0] is None else np.concatenate(ys)
    return np.concatenate(xs), y_all


def _write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]]) -> None:
    """A safetensors file by hand (dtypes numpy lacks, and broken headers)."""
    header: dict[str, Any] = {}
    offset, payload = 0, b""
    for key, (dtype, shape, data) in tensors.items():
        header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        payload += data
    _write_raw_safetensors(path, json.dumps(header).encode(), payload)


def _write_raw_safetensors(path: Path, header: bytes, payload: bytes) -> None:
    path.write_bytes(struct.pack("<Q", len(header)) + header + payload)


def _refused(path: Path, *fragments: str, **kw: Any) -> str:
    with pytest.raises(InvalidDataset) as err, open_dataset(path, **kw) as ds:
        ds.validate(batch_size=4)
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- detect_format -------------------------------------------------------------------------


def test_detect_format_by_magic_bytes(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=np.zeros((2, 2)))
    save_file({"x": np.zeros((2, 2), np.float32)}, str(tmp_path / "a.safetensors"))
    npz_head = (tmp_path / "a.npz").read_bytes()[:64]
    st_head = (tmp_path / "a.safetensors").read_bytes()[:64]
    # The name does not matter for binary formats: the bytes do.
    assert detect_format("upload.bin", npz_head) is DatasetFormat.NPZ
    assert detect_format("data.csv", st_head) is DatasetFormat.SAFETENSORS
    assert detect_format("data.csv", b"a,b,label\n1,2,0\n") is DatasetFormat.CSV
    assert detect_format("DATA.CSV", "é,ü\n1,2".encode()[:3]) is DatasetFormat.CSV  # cut mid-char


@pytest.mark.parametrize(
    ("filename", "head"),
    [
        ("data.csv", b"\x89PNG\r\n\x1a\n\x00\x00"),  # binary in a .csv
        ("data.csv", b"a,b\x00,c"),
        ("data.txt", b"a,b\n1,2\n"),  # text, but not named .csv
        ("data.pkl", b"\x80\x04\x95\x00"),  # a pickle
        ("data.npy", b"\x93NUMPY\x01\x00"),
    ],
)
def test_detect_format_refuses_unknown(filename: str, head: bytes) -> None:
    with pytest.raises(InvalidDataset, match=r"\.npz .*\.safetensors .*\.csv"):
        detect_format(filename, head)


# --- .npz ----------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("compressed", [False, True])
def test_npz_round_trip(tmp_path: Path, batch_size: int, compressed: bool) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 3, 2)), rng.integers(0, 5, size=10)
    path = tmp_path / "data.npz"
    (np.savez_compressed if compressed else np.savez)(path, x=x, y=y)
    with open_dataset(path) as ds:
        assert ds.info == DatasetInfo(
            format=DatasetFormat.NPZ,
            samples=10,
            x_shape=[3, 2],
            has_labels=True,
            x_dtype="float64",
            y_kind="class",
            label_column=None,
            y_shape=[],
        )
    xs, ys = _collect(path, batch_size)
    np.testing.assert_array_equal(xs, x.astype(np.float32))
    assert ys is not None and ys.dtype == np.int64
    np.testing.assert_array_equal(ys, y)


def test_npz_without_labels_bool_features_and_fortran_order(tmp_path: Path) -> None:
    x = np.asfortranarray(np.random.default_rng(1).random((7, 5)) > 0.5)
    path = tmp_path / "data.npz"
    np.savez(path, x=x)
    with zipfile.ZipFile(path) as zf:  # the member really is stored column-major
        assert b"'fortran_order': True" in zf.read("x.npy")[:128]
    with open_dataset(path) as ds:
        assert (ds.info.has_labels, ds.info.y_kind, ds.info.x_dtype) == (False, None, "bool")
    xs, ys = _collect(path, 3)
    assert ys is None
    np.testing.assert_array_equal(xs, x.astype(np.float32))


@pytest.mark.parametrize(
    ("y", "kind", "y_shape", "expected"),
    [
        (np.arange(6).reshape(6, 1), "class", [], np.arange(6)),  # (N, 1) squeezed
        (np.linspace(0, 1, 6), "value", [], np.linspace(0, 1, 6)),
        (np.ones((6, 1), np.float16), "value", [], np.ones(6)),
        (np.arange(12.0).reshape(6, 2), "value", [2], np.arange(12.0).reshape(6, 2)),
        (np.array([True, False] * 3), "class", [], np.array([1, 0] * 3)),
        (np.arange(6, dtype=np.uint8), "class", [], np.arange(6)),
    ],
)
def test_npz_label_kinds(
    tmp_path: Path, y: np.ndarray, kind: str, y_shape: list[int], expected: np.ndarray
) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, x=np.zeros((6, 2), np.int16), y=y)
    with open_dataset(path) as ds:
        assert (ds.info.y_kind, ds.info.y_shape) == (kind, y_shape)
    _, ys = _collect(path, 4)
    assert ys is not None
    assert ys.dtype == (np.int64 if kind == "class" else np.float32)
    np.testing.assert_allclose(ys, expected)


class _Canary:
    """Unpickling this creates a file: proof that the reader never unpickles."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize("key", ["x", "y"])
def test_npz_object_array_is_refused_without_unpickling(tmp_path: Path, key: str) -> None:
    canary = tmp_path / "unpickled"
    objects = np.empty((3, 2), dtype=object)
    objects[:] = _Canary(canary)
    arrays = {"x": np.zeros((3, 2)), "y": np.zeros(3)}
    arrays[key] = objects if key == "x" else objects[:, 0]
    path = tmp_path / "evil.npz"
    np.savez(path, allow_pickle=True, **arrays)  # only the test pickles
    assert not canary.exists()
    _refused(path, f"array '{key}'", "Python objects", "never loaded")
    assert not canary.exists()


@pytest.mark.parametrize(
    ("arrays", "fragments"),
    [
        ({"y": np.zeros(3)}, ["no array 'x'", "np.savez"]),
        ({"features": np.zeros((3, 2))}, ["data.npz has no array 'x'"]),
        ({"x": np.array([["a", "b"]] * 3)}, ["x has dtype <U1", "numeric"]),
        ({"x": np.zeros((3, 2), np.complex64)}, ["x has dtype complex64"]),
        ({"x": np.zeros(3)}, ["x has shape [3]", "(N, ...)", "reshape(-1, 1)"]),
        ({"x": np.zeros((0, 4))}, ["empty"]),
        ({"x": np.zeros((3, 0))}, ["must not be empty"]),
        ({"x": np.zeros((3, 2)), "y": np.zeros(4)}, ["x has 3 samples but y has shape [4]"]),
        ({"x": np.zeros((3, 2)), "y": np.zeros((3, 2), np.int64)}, ["y has shape [3, 2]"]),
        ({"x": np.zeros((3, 2)), "y": np.zeros((3, 1, 1))}, ["y has shape [3, 1, 1]"]),
        ({"x": np.zeros((3, 2)), "y": np.array(["a", "b", "c"])}, ["y has dtype <U1"]),
        ({"x": np.zeros((3, 2)), "y": np.float32(1)}, ["y has shape []"]),
    ],
)
def test_npz_structural_refusals(
    tmp_path: Path, arrays: dict[str, np.ndarray], fragments: list[str]
) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    _refused(path, *fragments)


def test_npz_limits_and_corruption(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    np.savez_compressed(path, x=np.zeros((100, 1000)))  # 800 kB of zeros in a few kB
    _refused(path, "100 samples", "limit is 50", max_samples=50)
    _refused(path, "800000 bytes", "limit is 1000", max_bytes=1000)
    _refused(path, "label_column is for CSV files only", label_column="y")
    # A zip cut in half.
    half = tmp_path / "half.npz"
    half.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _refused(half, "half.npz is not a readable .npz", fmt=DatasetFormat.NPZ)
    # A member whose header promises more data than it holds.
    short = tmp_path / "short.npz"
    with zipfile.ZipFile(short, "w") as zf, zf.open("x.npy", "w") as member:
        np.lib.format.write_array(member, np.zeros((10, 10)))
    raw = zipfile.ZipFile(short).read("x.npy")
    with zipfile.ZipFile(short, "w") as zf:
        zf.writestr("x.npy", raw[:-80])
    _refused(short, "array 'x' is truncated or corrupt")


def test_npz_name_in_messages_is_the_upload_name(tmp_path: Path) -> None:
    path = tmp_path / "blob-123"
    np.savez(path, y=np.zeros(2))
    _refused(path.with_suffix(".npz"), "my-data.npz has no array 'x'", name="my-data.npz")


# --- .safetensors --------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_safetensors_round_trip(tmp_path: Path, batch_size: int) -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(10, 1, 4, 4)).astype(np.float32), rng.integers(0, 3, 10)
    path = tmp_path / "data.safetensors"
    save_file({"x": x, "y": y}, str(path), metadata={"source": "test"})
    with open_dataset(path) as ds:
        info = ds.info
    assert (info.format, info.samples, info.x_shape) == (DatasetFormat.SAFETENSORS, 10, [1, 4, 4])
    assert (info.has_labels, info.x_dtype, info.y_kind) == (True, "float32", "class")
    xs, ys = _collect(path, batch_size)
    np.testing.assert_array_equal(xs, x)
    np.testing.assert_array_equal(ys, y)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("dtype", "array"),
    [
        ("F16", np.arange(12, dtype="<f2").reshape(6, 2)),
        ("F64", np.arange(12, dtype="<f8").reshape(6, 2)),
        ("I8", np.arange(-6, 6, dtype="i1").reshape(6, 2)),
        ("I16", np.arange(12, dtype="<i2").reshape(6, 2)),
        ("I32", np.arange(12, dtype="<i4").reshape(6, 2)),
        ("I64", np.arange(12, dtype="<i8").reshape(6, 2)),
        ("U8", np.arange(250, 262, dtype=np.int64).astype("u1").reshape(6, 2)),
        ("BOOL", (np.arange(12) % 3 == 0).reshape(6, 2)),
    ],
)
def test_safetensors_dtypes(tmp_path: Path, dtype: str, array: np.ndarray) -> None:
    path = tmp_path / "data.safetensors"
    _write_safetensors(path, {"x": (dtype, [6, 2], array.tobytes())})
    xs, _ = _collect(path, 4)
    np.testing.assert_array_equal(xs, array.astype(np.float32))


def test_safetensors_bfloat16(tmp_path: Path) -> None:
    values = np.array([[1.0, -2.5], [3.140625, 0.0], [2.0**100, -(2.0**-100)]], np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2")  # exact for these values
    targets = np.array([0.5, 1.5, 2.5], np.float32)
    path = tmp_path / "data.safetensors"
    _write_safetensors(
        path,
        {
            "x": ("BF16", [3, 2], bf16.tobytes()),
            "y": ("BF16", [3], (targets.view(np.uint32) >> 16).astype("<u2").tobytes()),
        },
    )
    with open_dataset(path) as ds:
        assert (ds.info.x_dtype, ds.info.y_kind) == ("bfloat16", "value")
    xs, ys = _collect(path, 2)
    np.testing.assert_array_equal(xs, values)
    np.testing.assert_array_equal(ys, targets)  # type: ignore[arg-type]


def test_safetensors_streams_lazily(tmp_path: Path) -> None:
    """A 50 MB file streams with a peak of a few batches, not the whole tensor."""
    n, width = 50_000, 256
    x = np.random.default_rng(3).random((n, width), dtype=np.float32)  # 51.2 MB
    expected = x.sum(axis=0, dtype=np.float64)
    path = tmp_path / "big.safetensors"
    save_file({"x": x, "y": np.arange(n)}, str(path))
    del x
    total = np.zeros(width)
    tracemalloc.start()
    try:
        with open_dataset(path) as ds:
            for xb, _ in ds.batches(1024):  # ~1 MB per batch
                total += xb.sum(axis=0, dtype=np.float64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    np.testing.assert_allclose(total, expected, rtol=1e-6)


def test_npz_streams_lazily_too(tmp_path: Path) -> None:
    n, width = 20_000, 256
    x = np.random.default_rng(4).random((n, width)).astype(np.float32)  # 20 MB
    path = tmp_path / "big.npz"
    np.savez_compressed(path, x=x, y=np.arange(n))
    del x
    tracemalloc.start()
    try:
        with open_dataset(path) as ds:
            ds.validate(batch_size=512)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


def test_passes_may_interleave(tmp_path: Path) -> None:
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    for path in (tmp_path / "a.safetensors", tmp_path / "a.npz"):
        if path.suffix == ".npz":
            np.savez(path, x=x)
        else:
            save_file({"x": x}, str(path))
        with open_dataset(path) as ds:
            first, second = ds.batches(3), ds.batches(5)
            a, b = next(first)[0], next(second)[0]
            np.testing.assert_array_equal(a, x[:3])
            np.testing.assert_array_equal(b, x[:5])
            np.testing.assert_array_equal(next(first)[0], x[3:6])


def _st_header(x_entry: dict[str, Any]) -> bytes:
    return json.dumps({"x": x_entry}).encode()


@pytest.mark.parametrize(
    ("header", "payload", "fragments"),
    [
        (b"[1, 2]", b"", ["must be a JSON object"]),
        (b"{not json", b"", ["not valid JSON"]),
        (b'{"y": {}, "z": {}}', b"", ["no tensor 'x'", "found ['y', 'z']"]),
        (
            _st_header({"dtype": "C64", "shape": [2, 2], "data_offsets": [0, 32]}),
            bytes(32),
            ["dtype 'C64'", "BF16"],
        ),
        (
            _st_header({"dtype": "F32", "shape": [2, -2], "data_offsets": [0, 16]}),
            bytes(16),
            ["invalid shape"],
        ),
        (
            _st_header({"dtype": "F32", "shape": [2, True], "data_offsets": [0, 8]}),
            bytes(8),
            ["invalid shape"],
        ),
        (
            _st_header({"dtype": "F32", "shape": [2, 2], "data_offsets": [0]}),
            bytes(16),
            ["invalid data_offsets"],
        ),
        (
            _st_header({"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}),
            bytes(8),
            ["lie outside the file's data"],
        ),
        (
            _st_header({"dtype": "F32", "shape": [4, 2], "data_offsets": [0, 16]}),
            bytes(16),
            ["needs 32 bytes, not 16"],
        ),
        (
            _st_header({"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}),
            bytes(16),
            ["x has shape [4]", "(N, ...)"],
        ),
        (b'{"x": [1]}', b"", ["not described by a JSON object"]),
    ],
)
def test_safetensors_header_refusals(
    tmp_path: Path, header: bytes, payload: bytes, fragments: list[str]
) -> None:
    path = tmp_path / "data.safetensors"
    _write_raw_safetensors(path, header, payload)
    _refused(path, *fragments, fmt=DatasetFormat.SAFETENSORS)


def test_safetensors_header_size_is_checked_before_reading(tmp_path: Path) -> None:
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", 200 * 1024 * 1024) + b"{}")
    _refused(huge, "claims 209715200 bytes", "at most 1048576")
    longer = tmp_path / "longer.safetensors"
    longer.write_bytes(struct.pack("<Q", 1000) + b'{"x": 1}')
    _refused(longer, "runs past the end of the file")
    stub = tmp_path / "stub.safetensors"
    stub.write_bytes(b"\x01\x00")
    _refused(stub, "too short", fmt=DatasetFormat.SAFETENSORS)


def test_safetensors_label_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "data.safetensors"
    save_file({"x": np.zeros((4, 2), np.float32), "y": np.zeros(5, np.int64)}, str(path))
    _refused(path, "x has 4 samples but y has shape [5]")


# --- values, checked while streaming ---------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e300])
def test_non_finite_features_name_the_sample(tmp_path: Path, bad: float) -> None:
    x = np.ones((10, 3))
    x[7, 1] = bad
    path = tmp_path / "data.npz"
    np.savez(path, x=x)
    with open_dataset(path) as ds:  # open is structural: it does not look at values
        batches = ds.batches(3)
        assert len(next(batches)[0]) == 3 and len(next(batches)[0]) == 3
        with pytest.raises(InvalidDataset, match=r"sample 7 .*NaN, infinite"):
            next(batches)
        with pytest.raises(InvalidDataset, match="sample 7"):
            ds.validate()


def test_bad_labels_name_the_sample(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, x=np.zeros((5, 2)), y=np.array([0.5, 1.0, np.nan, 2.0, 1.0]))
    _refused(path, "target of sample 2 is NaN")
    np.savez(path, x=np.zeros((5, 2)), y=np.array([0, 1, 2, -1, 0]))
    _refused(path, "label of sample 3 is -1", "integers >= 0")


def test_batch_size_and_close_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, x=np.zeros((5, 2)))
    ds = open_dataset(path)
    with pytest.raises(ValueError, match="batch_size"):
        ds.batches(0)
    ds.close()
    with pytest.raises(ValueError, match="closed"):
        ds.batches(2)


# --- .csv ----------------------------------------------------------------------------------


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
    xs, ys = _collect(path, batch_size, label_column="label")
    np.testing.assert_array_equal(xs, x.astype(np.float32))
    np.testing.assert_array_equal(ys, y)  # type: ignore[arg-type]


def test_csv_variants(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    # BOM, blank lines, quotes, spaces, CRLF, float targets.
    path.write_bytes('\ufeff\n a , "b" ,t\r\n1, 2,0.5\r\n\r\n"3",4e1,-1\r\n'.encode())
    with open_dataset(path, label_column="t") as ds:
        assert (ds.info.samples, ds.info.x_shape, ds.info.y_kind) == (2, [2], "value")
    xs, ys = _collect(path, 5, label_column="t")
    np.testing.assert_array_equal(xs, [[1, 2], [3, 40]])
    np.testing.assert_array_equal(ys, np.array([0.5, -1], np.float32))  # type: ignore[arg-type]
    # Without label_column every column is a feature and there are no labels.
    xs, ys = _collect(path, 5)
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
    _refused(path, "data.csv", *fragments, label_column=label_column)


def test_csv_encoding_and_limits(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b"a,b\n1,2\n\xff\xfe,3\n")
    _refused(path, "not UTF-8", fmt=DatasetFormat.CSV)
    path.write_text("a\n" + "1\n" * 20)
    _refused(path, "more than 10 samples", max_samples=10)


def test_csv_streams_rows(tmp_path: Path) -> None:
    """Batches come before the file is read to the end: a bad late row fails late."""
    path = tmp_path / "data.csv"
    path.write_text("a,b\n" + "1,2\n" * 100 + "3,4\n")
    with open_dataset(path) as ds:
        path.write_text("a,b\n" + "1,2\n" * 100 + "3,oops\n")  # changed after the info pass
        batches = ds.batches(10)
        assert next(batches)[0].shape == (10, 2)
        with pytest.raises(InvalidDataset, match="line 102, column 'b'"):
            list(batches)


# --- check_fits_model ------------------------------------------------------------------------


def _info(x_shape: list[int]) -> DatasetInfo:
    return DatasetInfo(DatasetFormat.NPZ, 10, x_shape, False, "float32", None, None)


def test_check_fits_model() -> None:
    check_fits_model(_info([8]), [None, 8])
    check_fits_model(_info([1, 28, 28]), [None, 1, None, None])
    check_fits_model(_info([8]), [32, 8])  # a static batch dimension is not the dataset's business
    with pytest.raises(InvalidDataset) as err:
        check_fits_model(_info([64]), [None, 8])
    assert str(err.value) == "dataset samples have shape [64] but the model expects [8]"
    with pytest.raises(InvalidDataset, match=r"expects \[\?, 28\]"):
        check_fits_model(_info([28]), [None, None, 28])
    with pytest.raises(InvalidDataset, match=r"reshape x to \(N, 1, 28, 28\)"):
        check_fits_model(_info([784]), [None, 1, 28, 28])
    with pytest.raises(InvalidDataset, match=r"expects \[\]"):
        check_fits_model(_info([3]), [])


# --- bounds: memory and time do not grow with what a file declares ---------------------------


def _peak_while(fn: Any) -> int:
    """Peak bytes traced (NumPy's buffers and Python objects) while `fn` runs."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _validate(path: Path, **kw: Any) -> None:
    with open_dataset(path, **kw) as ds:
        ds.validate()


def test_validate_batches_are_sized_by_bytes_not_rows(tmp_path: Path) -> None:
    # 64 rows of 4 MiB: a batch of 4096 rows would be the whole 256 MiB, read twice over.
    npz = npz_bomb(tmp_path / "wide.npz", rows=64, row_mib=4)
    assert _peak_while(lambda: _validate(npz)) < 40 * MIB
    st = tmp_path / "wide.safetensors"
    width = 2 * MIB  # float32: 8 MiB per row
    _write_raw_safetensors(
        st, _st_header({"dtype": "F32", "shape": [8, width], "data_offsets": [0, 64 * MIB]}),
        bytes(64 * MIB),
    )  # fmt: skip
    assert _peak_while(lambda: _validate(st)) < 48 * MIB
    with open_dataset(npz) as ds:
        assert ds.rows_per_batch(VALIDATE_BATCH_BYTES) == 1  # one wide sample at least
    with open_dataset(st) as ds:
        assert ds.rows_per_batch(1 << 40) > 1000


def test_csv_rows_are_parsed_into_a_table_in_place(tmp_path: Path) -> None:
    path = csv_rows(tmp_path / "wide.csv", rows=4096, columns=2000)  # 16 MB of zeros
    assert _peak_while(lambda: _validate(path)) < 40 * MIB
    with open_dataset(path) as ds:
        assert ds.info.samples == 4096 and ds.info.x_shape == [2000]


@pytest.mark.timeout(60)
def test_csv_header_checks_are_linear(tmp_path: Path) -> None:
    distinct = csv_header(tmp_path / "distinct.csv", 120_000, distinct=True, rows=1)  # 0.9 MB
    start = time.monotonic()
    with open_dataset(distinct) as ds:
        assert ds.info.x_shape == [120_000]
    repeated = csv_header(tmp_path / "repeated.csv", 450_000, distinct=False)
    _refused(repeated, "column names must be unique; repeated: ['a']")
    assert time.monotonic() - start < 5


def test_csv_feature_limit_comes_before_any_column_work(tmp_path: Path) -> None:
    path = csv_header(tmp_path / "wide.csv", 450_000, distinct=False)
    _refused(path, "has 450000 values per sample", "at most 1000", max_features=1000)
    path.write_text("a,b,y\n1,2,0\n")
    _refused(path, "has 3 values per sample", max_features=2)
    with open_dataset(path, label_column="y", max_features=2) as ds:  # the label is no feature
        assert ds.info.x_shape == [2]


def test_csv_long_lines_are_refused_without_being_read_whole(tmp_path: Path) -> None:
    endless = csv_endless_line(tmp_path / "endless.csv", mib=8)
    message = _refused(endless, "line 2 is longer than 1048576 characters", ".npz")
    assert message.startswith("endless.csv")
    assert _peak_while(lambda: _refused(endless, "longer")) < 16 * MIB
    header = tmp_path / "header.csv"
    header.write_text("a" * (2 * MIB) + "\n1\n")
    _refused(header, "line 1 is longer than 1048576 characters")
    quoted = csv_quoted_row(tmp_path / "quoted.csv", 600_000)  # one row over many lines
    _refused(quoted, "is longer than 1048576 characters")


def test_safetensors_holds_only_x_y_and_small_metadata(tmp_path: Path) -> None:
    path = tmp_path / "data.safetensors"
    save_file({"x": np.zeros((2, 2), np.float32), "extra": np.zeros(1)}, str(path))
    _refused(path, "holds tensors other than x and y ('extra')", "save only x")
    junk = safetensors_header(tmp_path / "junk.safetensors", junk_mib=64)
    _refused(junk, "header claims", "at most 1048576")
    x = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    for metadata, fragment in [
        ({"a": 1}, "must map names to strings"),
        ([], "must map names to strings"),
        ({"a": "b" * (65 * 1024)}, "more than 65536 characters"),
    ]:
        header = json.dumps({"x": x, "__metadata__": metadata}).encode()
        _write_raw_safetensors(path, header, bytes(16))
        _refused(path, fragment)
    deep = safetensors_deep_json(tmp_path / "deep.safetensors", 100_000)
    _refused(deep, "not valid JSON")


def test_npz_zip_directory_is_checked_before_zipfile_parses_it(tmp_path: Path) -> None:
    path = zip_directory_bomb(tmp_path / "entries.npz", 300_000, model=False)
    assert _peak_while(lambda: _refused(path, "declares 300001 entries; at most 64")) < MIB


def test_npz_declared_sizes_are_capped_before_reading(tmp_path: Path) -> None:
    bomb = npz_bomb(tmp_path / "bomb.npz", rows=512, row_mib=4)  # 2 MB -> 2 GiB
    assert bomb.stat().st_size < 4 * MIB
    _refused(bomb, "holds 2147483648 bytes of arrays; the limit is 1000000", max_bytes=1_000_000)
    fortran = npz_bomb(tmp_path / "fortran.npz", rows=300, row_mib=1, fortran=True)
    _refused(fortran, "Fortran (column-major) order", "np.ascontiguousarray(x)")
    dims = npz_many_dimensions(tmp_path / "dims.npz")
    _refused(dims, "x has 41 dimensions; at most 16")
    nested = npz_nested_zip(tmp_path / "nested.npz")
    _refused(nested, "array 'x' has an unreadable .npy header")
