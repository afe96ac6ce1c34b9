"""A worker's world for tests: a job store, a blob store and settings in one data directory,
with a tiny model and datasets to run jobs on."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from jobs.blobs import BlobStore
from jobs.records import JobRecord
from jobs.settings import Settings
from jobs.store import JobStore
from worker.execute import execute_job

TENANT = "default"


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class World:
    """A job store, a blob store and settings in one temporary data directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # No latency timing: these tests are about the worker; a whole run's figures are
        # checked in tests/engine/test_sweep.py, a real worker's in tests/integration.
        self.settings = Settings(data_dir=root, batch_size=32, device="cpu", measure_latency=False)
        self.settings.ensure_dirs()
        self.store = JobStore(self.settings.resolved_database_url())
        self.store.migrate()
        self.blobs = BlobStore(self.settings.resolved_data_dir())

    def model(self, path: Path) -> str:
        sha, size = self.blobs.put_file(path)
        return self.store.models.add(TENANT, sha, size, path.name).id

    def npz(self, samples: int = 200, labels: bool = True) -> str:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(samples, 5)).astype(np.float32)
        path = self.root / f"data-{samples}.npz"
        if labels:
            np.savez(path, x=x, y=rng.integers(0, 3, size=samples))
        else:
            np.savez(path, x=x)
        sha, size = self.blobs.put_file(path)
        return self.store.datasets.add(
            TENANT, sha, size, path.name, "npz", samples, [5], labels, None
        ).id

    def job(self, model_id: str, dataset_id: str, **config: object) -> JobRecord:
        body = {
            "criterion": "variance",
            "thresholds": [{"fraction": 0.25}, {"fraction": 0.5}],
            "compensate": True,
            "metric": "accuracy",
            "max_metric_drop": 0.01,
        }
        body.update(config)
        return self.store.jobs.add(TENANT, model_id, dataset_id, None, body)

    def run(self, job_id: str) -> JobRecord:
        execute_job(job_id, self.store, self.blobs, self.settings)
        record = self.store.jobs.get(TENANT, job_id)
        assert record is not None
        return record

    def attempt_folders(self) -> list[str]:
        """Hidden folders left in jobs/ (staging and working folders of attempts)."""
        return [p.name for p in self.blobs.jobs_dir.iterdir() if p.name.startswith(".")]


def assert_engine_limits(seen: dict[str, Any], memory_bytes: int, cpu_seconds: int) -> None:
    """The limits a self-check engine reported on itself: those of `Limits(memory_bytes,
    cpu_seconds)` (address space only off GPU machines), while the worker keeps its own."""
    limits = seen["limits"]
    if not Path("/dev/nvidiactl").exists():
        assert limits["RLIMIT_AS"] == [memory_bytes, memory_bytes]
    assert limits["RLIMIT_CPU"] == [cpu_seconds, cpu_seconds + 60]
    assert limits["RLIMIT_NOFILE"] == [1024, 1024]
    assert limits["RLIMIT_CORE"] == [0, 0]
    assert resource.getrlimit(resource.RLIMIT_CPU)[0] != cpu_seconds
