"""A dataset's samples against a model's inputs: the shape must fit, a static batch aside."""

from __future__ import annotations

import pytest

from jobs.datasets import DatasetFileError, DatasetFormat, DatasetInfo, check_fits_model


def _info(x_shape: list[int]) -> DatasetInfo:
    return DatasetInfo(DatasetFormat.NPZ, 10, x_shape, False, "float32", None, None)


def test_check_fits_model() -> None:
    check_fits_model(_info([8]), [None, 8])
    check_fits_model(_info([1, 28, 28]), [None, 1, None, None])
    check_fits_model(_info([8]), [32, 8])  # a static batch dimension is not the dataset's business
    with pytest.raises(DatasetFileError) as err:
        check_fits_model(_info([64]), [None, 8])
    assert str(err.value) == "dataset samples have shape [64] but the model expects [8]"
    with pytest.raises(DatasetFileError, match=r"expects \[\?, 28\]"):
        check_fits_model(_info([28]), [None, None, 28])
    with pytest.raises(DatasetFileError, match=r"reshape x to \(N, 1, 28, 28\)"):
        check_fits_model(_info([784]), [None, 1, 28, 28])
    with pytest.raises(DatasetFileError, match=r"expects \[\]"):
        check_fits_model(_info([3]), [])
