"""Helpers shared by the dataset reader tests: reading a file whole, writing safetensors by
hand, asserting a refusal's message, measuring a peak of memory."""

from __future__ import annotations

import json
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jobs.datasets import DatasetFileError, open_dataset

BATCH_SIZES = [1, 3, 4, 10, 64]  # 3 and 4 do not divide N=10


def collect(path: Path, batch_size: int, **kw: Any) -> tuple[np.ndarray, np.ndarray | None]:
    with open_dataset(path, **kw) as ds:
        xs, ys = [], []
        for x, y in ds.batches(batch_size):
            assert x.dtype == np.float32 and x.flags.c_contiguous
            assert x.shape[1:] == tuple(ds.info.x_shape) and 1 <= len(x) <= batch_size
            xs.append(x)
            ys.append(y)
    y_all = None if ys[0] is None else np.concatenate(ys)
    return np.concatenate(xs), y_all


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]]) -> None:
    """A safetensors file by hand (dtypes numpy lacks, and broken headers)."""
    header: dict[str, Any] = {}
    offset, payload = 0, b""
    for key, (dtype, shape, data) in tensors.items():
        header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        payload += data
    write_raw_safetensors(path, json.dumps(header).encode(), payload)


def write_raw_safetensors(path: Path, header: bytes, payload: bytes) -> None:
    path.write_bytes(struct.pack("<Q", len(header)) + header + payload)


def st_header(x_entry: dict[str, Any]) -> bytes:
    return json.dumps({"x": x_entry}).encode()


def refused(path: Path, *fragments: str, **kw: Any) -> str:
    with pytest.raises(DatasetFileError) as err, open_dataset(path, **kw) as ds:
        ds.validate(batch_size=4)
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def peak_while(fn: Any) -> int:
    """Peak bytes traced (NumPy's buffers and Python objects) while `fn` runs."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def validate_file(path: Path, **kw: Any) -> None:
    with open_dataset(path, **kw) as ds:
        ds.validate()
