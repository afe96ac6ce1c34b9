"""Memory stays bounded by the batch size, not the dataset (issue 3).

Statistics and candidate evaluation stream batches through the program and keep only
running sums, so eight times the samples must not raise the peak memory of a real
`deadweight prune` process by anything like the activations of the extra samples.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from torch import nn

from tests.tiny_models import export_to


class WideConv(nn.Module):
    """`mix` reads 64 channels of 32x32 per sample: 256 KiB of activations each."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 64, 3, padding=1)
        self.mix = nn.Conv2d(64, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.fc(self.mix(nn.functional.relu(self.conv(x))).mean((2, 3)))


def _peak_rss_mib(model: Path, data: Path, out: Path) -> float:
    cmd = [sys.executable, "-m", "service.cli", "prune", str(model), str(data), "--out", str(out)]
    cmd += ["--thresholds", "f0.3", "--batch-size", "64", "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read() if proc.stderr else ""
    return usage.ru_maxrss / 1024  # KiB on Linux


def test_peak_memory_does_not_grow_with_the_dataset(tmp_path: Path) -> None:
    model = export_to(WideConv(), tmp_path / "wide.pt2", d_in=(3, 32, 32))
    rng = np.random.default_rng(0)
    peaks = {}
    for samples in (200, 1600):
        data = tmp_path / f"d{samples}.npz"
        x = rng.normal(size=(samples, 3, 32, 32)).astype(np.float32)  # 12 KiB per sample
        np.savez(data, x=x, y=rng.integers(0, 10, size=samples))
        peaks[samples] = _peak_rss_mib(model, data, tmp_path / f"out{samples}")
    # Keeping the activations of the 1400 extra samples would add 350 MiB; the input data
    # itself is 16 MiB more, which a reader may hold.
    assert peaks[1600] - peaks[200] < 100, peaks
