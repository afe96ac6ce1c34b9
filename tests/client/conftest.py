"""One real service for the client's tests: `deadweight serve` (API and embedded workers) with
an API key, started as users start it, and the files a pipeline would upload."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from deadweight_client import Client, RetryPolicy

from tests.integration.conftest import DEADWEIGHT, Processes, base_env, free_port, wait_http
from tests.integration.webhook_helpers import SECRET

TENANT, API_KEY = "pipeline", "client-test-key"
# Quick retries: the tests wait on real failures (a closed port, a dropped answer).
FAST_RETRY = RetryPolicy(retries=3, backoff=0.1, max_delay=1.0)


@dataclass(frozen=True)
class Service:
    url: str
    files: Path  # model.pt2, data.npz, far_labels.npz
    procs: Processes

    def env(self) -> dict[str, str]:
        """What a pipeline step is given: where the service is, and its key."""
        return {"DEADWEIGHT_URL": self.url, "DEADWEIGHT_API_KEY": API_KEY}


def write_files(root: Path) -> Path:
    """A tiny MLP and data labelled by its own predictions (baseline accuracy 1), plus data
    whose labels lie past the model's 4 classes (a job on it fails while running)."""
    import torch

    from tests.tiny_models import MLP, export_to

    torch.manual_seed(0)
    model = MLP()
    export_to(model, root / "model.pt2")
    x = np.random.default_rng(0).normal(size=(256, 6)).astype(np.float32)
    with torch.no_grad():
        y = model.eval()(torch.from_numpy(x)).argmax(1).numpy()
    np.savez(root / "data.npz", x=x, y=y)
    np.savez(root / "far_labels.npz", x=x, y=np.full(len(x), 10**9))
    return root


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("client-service")
    (root / "logs").mkdir()
    procs = Processes(root / "logs")
    env = base_env(root / "data")
    env["DEADWEIGHT_API_KEYS"] = f"{TENANT}={API_KEY}"
    # A pipeline's webhook: receivers on this host, signed with this tenant's secret.
    env["DEADWEIGHT_WEBHOOK_ALLOWED_HOSTS"] = "127.0.0.1"
    env["DEADWEIGHT_WEBHOOK_SECRETS"] = f"{TENANT}={SECRET}"
    # The client's tests read no latency figures (a real worker's are checked in
    # tests/integration/test_mlflow.py): no timing of every candidate.
    env["DEADWEIGHT_MEASURE_LATENCY"] = "false"
    port = free_port()
    try:
        api = procs.start("serve", [DEADWEIGHT, "serve", "--port", str(port)], env)
        (root / "files").mkdir()
        files = write_files(root / "files")  # while the service starts
        wait_http(f"http://127.0.0.1:{port}/healthz", api, procs)
        yield Service(f"http://127.0.0.1:{port}", files, procs)
    finally:
        procs.stop_all()


@pytest.fixture
def client(service: Service) -> Iterator[Client]:
    with Client(service.url, API_KEY, retry=FAST_RETRY) as c:
        yield c


@pytest.fixture(scope="session")
def uploaded(service: Service) -> tuple[str, str]:
    """The model (inspected) and dataset IDs the tests that need no upload of their own use."""
    with Client(service.url, API_KEY) as c:
        model = c.upload_model(service.files / "model.pt2")
        data = c.upload_dataset(service.files / "data.npz")
    return model["id"], data["id"]
