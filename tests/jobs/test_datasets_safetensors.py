""".safetensors datasets: round trips in every dtype, lazy streaming, and every refusal of a
header with its message."""

from __future__ import annotations

import json
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from jobs.datasets import DatasetFormat, open_dataset
from tests.hostile.costly_datasets import safetensors_deep_json, safetensors_header
from tests.jobs.dataset_helpers import (
    BATCH_SIZES,
    collect,
    refused,
    st_header,
    write_raw_safetensors,
    write_safetensors,
)


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
    xs, ys = collect(path, batch_size)
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
    write_safetensors(path, {"x": (dtype, [6, 2], array.tobytes())})
    xs, _ = collect(path, 4)
    np.testing.assert_array_equal(xs, array.astype(np.float32))


def test_safetensors_bfloat16(tmp_path: Path) -> None:
    values = np.array([[1.0, -2.5], [3.140625, 0.0], [2.0**100, -(2.0**-100)]], np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2")  # exact for these values
    targets = np.array([0.5, 1.5, 2.5], np.float32)
    path = tmp_path / "data.safetensors"
    write_safetensors(
        path,
        {
            "x": ("BF16", [3, 2], bf16.tobytes()),
            "y": ("BF16", [3], (targets.view(np.uint32) >> 16).astype("<u2").tobytes()),
        },
    )
    with open_dataset(path) as ds:
        assert (ds.info.x_dtype, ds.info.y_kind) == ("bfloat16", "value")
    xs, ys = collect(path, 2)
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


@pytest.mark.parametrize(
    ("header", "payload", "fragments"),
    [
        (b"[1, 2]", b"", ["must be a JSON object"]),
        (b"{not json", b"", ["not valid JSON"]),
        (b'{"y": {}, "z": {}}', b"", ["no tensor 'x'", "found ['y', 'z']"]),
        (
            st_header({"dtype": "C64", "shape": [2, 2], "data_offsets": [0, 32]}),
            bytes(32),
            ["dtype 'C64'", "BF16"],
        ),
        (
            st_header({"dtype": "F32", "shape": [2, -2], "data_offsets": [0, 16]}),
            bytes(16),
            ["invalid shape"],
        ),
        (
            st_header({"dtype": "F32", "shape": [2, True], "data_offsets": [0, 8]}),
            bytes(8),
            ["invalid shape"],
        ),
        (
            st_header({"dtype": "F32", "shape": [2, 2], "data_offsets": [0]}),
            bytes(16),
            ["invalid data_offsets"],
        ),
        (
            st_header({"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}),
            bytes(8),
            ["lie outside the file's data"],
        ),
        (
            st_header({"dtype": "F32", "shape": [4, 2], "data_offsets": [0, 16]}),
            bytes(16),
            ["needs 32 bytes, not 16"],
        ),
        (
            st_header({"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}),
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
    write_raw_safetensors(path, header, payload)
    refused(path, *fragments, fmt=DatasetFormat.SAFETENSORS)


def test_safetensors_header_size_is_checked_before_reading(tmp_path: Path) -> None:
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", 200 * 1024 * 1024) + b"{}")
    refused(huge, "claims 209715200 bytes", "at most 1048576")
    longer = tmp_path / "longer.safetensors"
    longer.write_bytes(struct.pack("<Q", 1000) + b'{"x": 1}')
    refused(longer, "runs past the end of the file")
    stub = tmp_path / "stub.safetensors"
    stub.write_bytes(b"\x01\x00")
    refused(stub, "too short", fmt=DatasetFormat.SAFETENSORS)


def test_safetensors_label_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "data.safetensors"
    save_file({"x": np.zeros((4, 2), np.float32), "y": np.zeros(5, np.int64)}, str(path))
    refused(path, "x has 4 samples but y has shape [5]")


def test_safetensors_holds_only_x_y_and_small_metadata(tmp_path: Path) -> None:
    path = tmp_path / "data.safetensors"
    save_file({"x": np.zeros((2, 2), np.float32), "extra": np.zeros(1)}, str(path))
    refused(path, "holds tensors other than x and y ('extra')", "save only x")
    junk = safetensors_header(tmp_path / "junk.safetensors", junk_mib=64)
    refused(junk, "header claims", "at most 1048576")
    x = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    for metadata, fragment in [
        ({"a": 1}, "must map names to strings"),
        ([], "must map names to strings"),
        ({"a": "b" * (65 * 1024)}, "more than 65536 characters"),
    ]:
        header = json.dumps({"x": x, "__metadata__": metadata}).encode()
        write_raw_safetensors(path, header, bytes(16))
        refused(path, fragment)
    deep = safetensors_deep_json(tmp_path / "deep.safetensors", 100_000)
    refused(deep, "not valid JSON")
