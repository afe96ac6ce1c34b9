"""Fuzzing the dataset readers: a mutated file gives a dataset or an `DatasetFileError`.

Each example starts from a valid `.npz` (stored and compressed), `.safetensors` or `.csv`
file and applies a few mutations: bytes flipped, inserted, deleted, the file truncated,
numbers in the `.npy` header, the safetensors JSON header or a CSV row redrawn (edges of
int64 included). Opening the file and streaming it (the upload check, then the engine's
batches) must end in success or `DatasetFileError`; any other exception, or a hang
(pytest-timeout), fails the test.

`DEADWEIGHT_FUZZ_EXAMPLES` sets the number of examples per format (default 150).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save

from jobs.datasets import DatasetFileError, detect_format, open_dataset

EXAMPLES = int(os.environ.get("DEADWEIGHT_FUZZ_EXAMPLES", "150"))
# Small caps, so that a file that lies about its size is refused rather than read.
MAX_BYTES = 16 * 1024 * 1024
MAX_SAMPLES = 100_000
MAX_FEATURES = 4096

_NUMBERS = st.one_of(
    st.integers(-3, 300),
    st.sampled_from([2**31, 2**32 + 1, 2**62, 2**63 - 1, 2**63, 2**64, 10**30, -(2**63)]),
)


def _x() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)


def _npz(compressed: bool) -> bytes:
    buf = io.BytesIO()
    y = np.arange(12) % 3
    (np.savez_compressed if compressed else np.savez)(buf, x=_x(), y=y)
    return buf.getvalue()


def _safetensors() -> bytes:
    return save({"x": _x(), "y": (np.arange(12) % 3).astype(np.int64)})


def _csv() -> bytes:
    rows = ["a,b,c,label"] + [",".join(f"{v:.3f}" for v in r) + f",{i % 3}" for i, r in
                               enumerate(_x())]  # fmt: skip
    return ("\n".join(rows) + "\n").encode()


SEEDS = {
    "stored.npz": _npz(False),
    "compressed.npz": _npz(True),
    "data.safetensors": _safetensors(),
    "data.csv": _csv(),
}


@st.composite
def _mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "number"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del data[at:]
        else:
            data = _renumber(data, draw(st.integers(0, 50)), draw(_NUMBERS))
    return bytes(data)


def _renumber(data: bytearray, which: int, value: int) -> bytearray:
    """Replace one run of digits (a shape, an offset, a header length, a cell)."""
    runs = list(re.finditer(rb"\d+", bytes(data)))
    if not runs:
        return data
    run = runs[which % len(runs)]
    return bytearray(data[: run.start()] + str(value).encode() + data[run.end() :])


def _check(path: Path, name: str) -> None:
    try:
        with path.open("rb") as f:
            fmt = detect_format(name, f.read(4096))
        label = "label" if name.endswith(".csv") else None
        with open_dataset(
            path,
            fmt,
            label_column=label,
            max_samples=MAX_SAMPLES,
            name=name,
            max_bytes=MAX_BYTES,
            max_features=MAX_FEATURES,
        ) as dataset:
            dataset.validate()
            for _ in dataset.batches(5):  # the engine's fixed-size batches
                pass
    except DatasetFileError:
        pass


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_mutated_datasets_are_read_or_refused(name: str, tmp_path: Path) -> None:
    path = tmp_path / name

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(_mutated(SEEDS[name]))
    def run(data: bytes) -> None:
        path.write_bytes(data)
        _check(path, name)

    run()


def test_the_seeds_themselves_are_valid(tmp_path: Path) -> None:
    # Mutations must start from files the readers accept, or the fuzz proves little.
    for name, data in SEEDS.items():
        (tmp_path / name).write_bytes(data)
        label = "label" if name.endswith(".csv") else None
        with open_dataset(tmp_path / name, label_column=label, name=name) as dataset:
            dataset.validate()
            assert dataset.info.samples == 12 and dataset.info.has_labels
