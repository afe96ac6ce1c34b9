"""Batches, whatever the format: values checked while streaming, passes that interleave,
batches sized by bytes rather than rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from jobs.datasets import VALIDATE_BATCH_BYTES, DatasetFileError, open_dataset
from tests.hostile.costly_datasets import npz_bomb
from tests.hostile.raw_zips import MIB
from tests.jobs.dataset_helpers import (
    peak_while,
    refused,
    st_header,
    validate_file,
    write_raw_safetensors,
)


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


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e300])
def test_non_finite_features_name_the_sample(tmp_path: Path, bad: float) -> None:
    x = np.ones((10, 3))
    x[7, 1] = bad
    path = tmp_path / "data.npz"
    np.savez(path, x=x)
    with open_dataset(path) as ds:  # open is structural: it does not look at values
        batches = ds.batches(3)
        assert len(next(batches)[0]) == 3 and len(next(batches)[0]) == 3
        with pytest.raises(DatasetFileError, match=r"sample 7 .*NaN, infinite"):
            next(batches)
        with pytest.raises(DatasetFileError, match="sample 7"):
            ds.validate()


def test_bad_labels_name_the_sample(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, x=np.zeros((5, 2)), y=np.array([0.5, 1.0, np.nan, 2.0, 1.0]))
    refused(path, "target of sample 2 is NaN")
    np.savez(path, x=np.zeros((5, 2)), y=np.array([0, 1, 2, -1, 0]))
    refused(path, "label of sample 3 is -1", "integers >= 0")


def test_batch_size_and_close_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, x=np.zeros((5, 2)))
    ds = open_dataset(path)
    with pytest.raises(ValueError, match="batch_size"):
        ds.batches(0)
    ds.close()
    with pytest.raises(ValueError, match="closed"):
        ds.batches(2)


def test_validate_batches_are_sized_by_bytes_not_rows(tmp_path: Path) -> None:
    # 64 rows of 4 MiB: a batch of 4096 rows would be the whole 256 MiB, read twice over.
    npz = npz_bomb(tmp_path / "wide.npz", rows=64, row_mib=4)
    assert peak_while(lambda: validate_file(npz)) < 40 * MIB
    st = tmp_path / "wide.safetensors"
    width = 2 * MIB  # float32: 8 MiB per row
    write_raw_safetensors(
        st, st_header({"dtype": "F32", "shape": [8, width], "data_offsets": [0, 64 * MIB]}),
        bytes(64 * MIB),
    )  # fmt: skip
    assert peak_while(lambda: validate_file(st)) < 48 * MIB
    with open_dataset(npz) as ds:
        assert ds.rows_per_batch(VALIDATE_BATCH_BYTES) == 1  # one wide sample at least
    with open_dataset(st) as ds:
        assert ds.rows_per_batch(1 << 40) > 1000
