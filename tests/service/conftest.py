"""The HTTP API against its real collaborators: SQLite and the filesystem broker in tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from jobs.settings import Settings
from service.main import create_app
from tests.service.api_helpers import ClientFactory


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    # Every field the service reads is given, so DEADWEIGHT_* in the environment cannot leak in.
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "broker_url": None,
        "database_url": None,
        "api_keys": None,
        "max_upload_bytes": 8 * 1024 * 1024,
        "max_thresholds": 64,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[ClientFactory]:
    """Start apps with settings overrides; each gets its own data directory."""
    started: list[TestClient] = []

    def start(raise_server_exceptions: bool = True, **overrides: Any) -> TestClient:
        data_dir = tmp_path / f"data{len(started)}"
        app = create_app(make_settings(data_dir, **overrides))
        client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
        client.__enter__()  # runs the lifespan: stores, migrations, queue
        started.append(client)
        return client

    yield start
    for client in reversed(started):
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()


@pytest.fixture(scope="session")
def model_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real torch.export program: Linear(4, 8) -> ReLU -> Linear(8, 3), dynamic batch."""
    import torch  # the test process may; the service never does

    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    batch = torch.export.Dim("batch")
    program = torch.export.export(model.eval(), (torch.randn(2, 4),), dynamic_shapes=({0: batch},))
    path = tmp_path_factory.mktemp("model") / "mlp.pt2"
    torch.export.save(program, path)
    return path.read_bytes()
