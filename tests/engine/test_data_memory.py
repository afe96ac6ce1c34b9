"""A job's passes over its data hold memory bounded by the batch, not by the samples (issue 12).

Each pass a job makes — a dataset file of every format, with and without labels, read
through the seeded hold-out split on both of its sides — is measured at N and 8N samples:
the traced peak (NumPy's buffers and Python objects) must stay within 10 % of the same pass
over N. The split's mask is made outside the measurement: one bool per sample is the record
of which rows served what, and its size is not the data's.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from jobs.datasets import open_dataset
from jobs.job_config import HOLDOUT_FRACTION
from pruning.holdout import Subset, holdout_mask
from tests.jobs.dataset_helpers import peak_while

SAMPLES = 128
BATCH = 16  # fewer rows than either side of the split holds at N
FORMATS = ["npz", "npz-compressed", "safetensors", "csv"]


def _write(path: Path, fmt: str, x: np.ndarray, y: np.ndarray | None) -> Path:
    arrays = {"x": x} | ({} if y is None else {"y": y})
    if fmt == "npz":
        np.savez(path.with_suffix(".npz"), **arrays)  # type: ignore[arg-type]
        return path.with_suffix(".npz")
    if fmt == "npz-compressed":
        np.savez_compressed(path.with_suffix(".npz"), **arrays)  # type: ignore[arg-type]
        return path.with_suffix(".npz")
    if fmt == "safetensors":
        save_file(arrays, str(path.with_suffix(".safetensors")))
        return path.with_suffix(".safetensors")
    csv_path = path.with_suffix(".csv")
    flat = x.reshape(len(x), -1)
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([f"f{i}" for i in range(flat.shape[1])] + ([] if y is None else ["y"]))
        for i, row in enumerate(flat.tolist()):
            writer.writerow(row + ([] if y is None else [int(y[i])]))
    return csv_path


def _pass_peak(path: Path, labelled: bool, samples: int) -> int:
    """Peak traced bytes of one pass over each side of the hold-out split."""
    mask = holdout_mask(samples, HOLDOUT_FRACTION, seed=0)
    label_column = "y" if labelled and path.suffix == ".csv" else None
    with open_dataset(path, label_column=label_column) as ds:

        def both_sides() -> None:
            for rows in (~mask, mask):
                seen = 0
                for x, y in Subset(ds, rows).batches(BATCH):
                    assert (y is not None) == labelled
                    seen += len(x)
                assert seen == int(rows.sum())

        both_sides()  # the first pass warms caches that are not the data's
        return peak_while(both_sides)


@pytest.mark.parametrize("labelled", [True, False], ids=["labels", "no-labels"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_pass_over_eight_times_the_samples_needs_no_more_memory(
    tmp_path: Path, fmt: str, labelled: bool
) -> None:
    rng = np.random.default_rng(0)
    shape = (3, 32, 32) if fmt != "csv" else (256,)  # 12 KiB a sample (CSV: flat, 1 KiB)
    peaks = {}
    for scale in (1, 8):
        n = SAMPLES * scale
        x = rng.standard_normal((n, *shape)).astype(np.float32)
        y = rng.integers(0, 10, n) if labelled else None
        path = _write(tmp_path / f"d{scale}", fmt, x, y)
        peaks[scale] = _pass_peak(path, labelled, n)
    # 8N holds 10.5 MiB (CSV: 0.9 MiB) more data than N: reading it whole, or a copy of one
    # side of the split, would multiply the peak.
    assert peaks[8] <= 1.1 * peaks[1], peaks
