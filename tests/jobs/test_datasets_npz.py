""".npz datasets: round trips, label kinds, every refusal with its message, and bounds on
memory that do not grow with what a file declares."""

from __future__ import annotations

import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jobs.datasets import DatasetFormat, DatasetInfo, open_dataset
from tests.hostile.costly_datasets import (
    npz_bomb,
    npz_many_dimensions,
    npz_nested_zip,
    zip_directory_bomb,
)
from tests.hostile.raw_zips import MIB
from tests.jobs.dataset_helpers import BATCH_SIZES, collect, peak_while, refused


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
    xs, ys = collect(path, batch_size)
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
    xs, ys = collect(path, 3)
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
    _, ys = collect(path, 4)
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
    refused(path, f"array '{key}'", "Python objects", "never loaded")
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
    refused(path, *fragments)


def test_npz_limits_and_corruption(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    np.savez_compressed(path, x=np.zeros((100, 1000)))  # 800 kB of zeros in a few kB
    refused(path, "100 samples", "limit is 50", max_samples=50)
    refused(path, "800000 bytes", "limit is 1000", max_bytes=1000)
    refused(path, "label_column is for CSV files only", label_column="y")
    # A zip cut in half.
    half = tmp_path / "half.npz"
    half.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    refused(half, "half.npz is not a readable .npz", fmt=DatasetFormat.NPZ)
    # A member whose header promises more data than it holds.
    short = tmp_path / "short.npz"
    with zipfile.ZipFile(short, "w") as zf, zf.open("x.npy", "w") as member:
        np.lib.format.write_array(member, np.zeros((10, 10)))
    raw = zipfile.ZipFile(short).read("x.npy")
    with zipfile.ZipFile(short, "w") as zf:
        zf.writestr("x.npy", raw[:-80])
    refused(short, "array 'x' is truncated or corrupt")


def test_npz_name_in_messages_is_the_upload_name(tmp_path: Path) -> None:
    path = tmp_path / "blob-123"
    np.savez(path, y=np.zeros(2))
    refused(path.with_suffix(".npz"), "my-data.npz has no array 'x'", name="my-data.npz")


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


def test_npz_zip_directory_is_checked_before_zipfile_parses_it(tmp_path: Path) -> None:
    path = zip_directory_bomb(tmp_path / "entries.npz", 300_000, model=False)
    assert peak_while(lambda: refused(path, "declares 300001 entries; at most 64")) < MIB


def test_npz_declared_sizes_are_capped_before_reading(tmp_path: Path) -> None:
    bomb = npz_bomb(tmp_path / "bomb.npz", rows=512, row_mib=4)  # 2 MB -> 2 GiB
    assert bomb.stat().st_size < 4 * MIB
    refused(bomb, "holds 2147483648 bytes of arrays; the limit is 1000000", max_bytes=1_000_000)
    fortran = npz_bomb(tmp_path / "fortran.npz", rows=300, row_mib=1, fortran=True)
    refused(fortran, "Fortran (column-major) order", "np.ascontiguousarray(x)")
    dims = npz_many_dimensions(tmp_path / "dims.npz")
    refused(dims, "x has 41 dimensions; at most 16")
    nested = npz_nested_zip(tmp_path / "nested.npz")
    refused(nested, "array 'x' has an unreadable .npy header")
