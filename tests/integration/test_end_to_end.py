"""The whole product path with real processes: upload, submit, poll, results, download."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest
import torch

from tests.integration.conftest import DEADWEIGHT, Processes, base_env, free_port, wait_http

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`deadweight example --out DIR`, as the README runs it."""
    out = tmp_path_factory.mktemp("example")
    subprocess.run([DEADWEIGHT, "example", "--out", str(out)], check=True, timeout=300)
    return out


def _upload(client: httpx.Client, route: str, path: Path) -> dict:  # type: ignore[type-arg]
    with path.open("rb") as fh:
        response = client.post(route, files={"file": (path.name, fh, "application/octet-stream")})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def _poll(client: httpx.Client, url: str, done: set[str], timeout: float) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = client.get(url).json()
        if record["status"] in done:
            return record  # type: ignore[no-any-return]
        time.sleep(0.5)
    raise AssertionError(f"{url} still {record['status']} after {timeout}s: {record}")


def walkthrough(base_url: str, example: Path, procs: Processes, tmp_path: Path) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        model = _upload(client, "/v1/models", example / "model.pt2")
        data = _upload(client, "/v1/datasets", example / "data.npz")
        evaluation = _upload(client, "/v1/datasets", example / "eval.npz")
        assert data["has_labels"] and data["x_shape"] == [64]

        inspected = _poll(client, f"/v1/models/{model['id']}", {"ready", "invalid"}, 120)
        assert inspected["status"] == "ready", procs.dump_logs()
        assert [layer["name"] for layer in inspected["layers"]] == ["fc1", "fc2"]

        response = client.post(
            "/v1/jobs",
            json={
                "model_id": model["id"],
                "dataset_id": data["id"],
                "eval_dataset_id": evaluation["id"],
                "criterion": "seed",
                "compensate": True,
                "thresholds": [{"mean": 0.1, "std": 0.1}, {"fraction": 0.3}, {"fraction": 0.5}],
            },
        )
        assert response.status_code == 202, response.text
        job = response.json()
        assert job["status"] == "queued"

        final = _poll(client, f"/v1/jobs/{job['id']}", {"succeeded", "failed", "cancelled"}, 240)
        assert final["status"] == "succeeded", f"{final}\n{procs.dump_logs()}"
        assert final["started_at"] and final["finished_at"]

        results = client.get(f"/v1/jobs/{job['id']}/results").json()
        assert [c["index"] for c in results["candidates"]] == [0, 1, 2]
        assert results["baseline"]["metric"] > 0.9
        stats = client.get(f"/v1/jobs/{job['id']}/stats").json()
        assert [layer["name"] for layer in stats["layers"]] == ["fc1", "fc2"]
        names = {a["name"] for a in client.get(f"/v1/jobs/{job['id']}/artifacts").json()}
        assert {
            "results.json",
            "results.csv",
            "stats.json",
            "stats.csv",
            "stats.png",
            "tradeoff.png",
            "pruned-0.pt2",
        } <= names

        chosen = results["candidates"][1]
        download = client.get(f"/v1/jobs/{job['id']}/artifacts/{chosen['artifact']}")
        assert download.status_code == 200
        local = tmp_path / "downloaded.pt2"
        local.write_bytes(download.content)
        program = torch.export.load(local)  # trusted: the service wrote this file
        assert sum(p.numel() for p in program.parameters()) == chosen["parameters"]
        assert chosen["parameters"] < results["baseline"]["parameters"]


def test_api_and_separate_worker_with_redis_and_postgres(
    example: Path, processes: Processes, redis_url: str, postgres_url: str, tmp_path: Path
) -> None:
    env = base_env(tmp_path / "data")
    env["DEADWEIGHT_BROKER_URL"] = redis_url
    env["DEADWEIGHT_DATABASE_URL"] = postgres_url
    port = free_port()
    api = processes.start("api", [DEADWEIGHT, "serve", "--no-worker", "--port", str(port)], env)
    wait_http(f"http://127.0.0.1:{port}/readyz", api, processes)
    processes.start("worker", [DEADWEIGHT, "worker"], env)
    walkthrough(f"http://127.0.0.1:{port}", example, processes, tmp_path)


def test_serve_with_embedded_defaults(example: Path, processes: Processes, tmp_path: Path) -> None:
    env = base_env(tmp_path / "data")
    port = free_port()
    api = processes.start("serve", [DEADWEIGHT, "serve", "--port", str(port)], env)
    wait_http(f"http://127.0.0.1:{port}/readyz", api, processes)
    walkthrough(f"http://127.0.0.1:{port}", example, processes, tmp_path)
    assert (tmp_path / "data" / "deadweight.db").exists()  # SQLite job store
