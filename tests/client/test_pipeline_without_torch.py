"""The client as a pipeline uses it: installed alone (`pip install ./client`) in a fresh
virtual environment without torch, driving a real service from upload to download, told of
the job's end by a signed webhook to a real receiver process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.client.conftest import Service
from tests.integration.conftest import free_port
from tests.integration.webhook_helpers import SECRET, received, receiver, verify

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with `deadweight-client` and its dependencies (httpx) from the configured
    package index, and nothing else; built once per test session."""
    root = tmp_path_factory.mktemp("bare-venv")
    # A copy: pip's build writes into the source tree, and two test processes may build.
    source = root / "client"
    shutil.copytree(ROOT / "client", source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=120)
    python = root / "venv" / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return python


def test_the_client_installs_without_torch(bare_python: Path) -> None:
    no_torch = subprocess.run([str(bare_python), "-c", "import torch"], capture_output=True)
    assert no_torch.returncode != 0
    freeze = subprocess.run(
        [str(bare_python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True
    ).stdout.lower()
    assert "deadweight-client" in freeze or "deadweight_client" in freeze
    assert not {"torch", "numpy", "fastapi"} & {line.split("==")[0] for line in freeze.split()}


def test_a_pipeline_uploads_submits_waits_and_downloads(
    bare_python: Path, service: Service, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEADWEIGHT_")}
    env.update(service.env())  # Client() reads them
    env.pop("PYTHONPATH", None)
    port, log = free_port(), tmp_path / "hooks.jsonl"
    with receiver(port, log):
        done = subprocess.run(
            [
                str(bare_python),
                str(Path(__file__).with_name("pipeline_script.py")),
                str(service.files / "model.pt2"),
                str(service.files / "data.npz"),
                str(tmp_path),
                f"http://127.0.0.1:{port}/deadweight",
            ],
            env=env,
            cwd=tmp_path,  # not the repository: nothing of it is importable
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"{done.stderr[-3000:]}\n{service.procs.dump_logs()}"
        report = json.loads(done.stdout)
        deadline = time.monotonic() + 30  # the workers' sender polls about every second
        while not received(log) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # a duplicate would come now
    (request,) = received(log)  # one terminal event, once
    assert request["path"] == "/deadweight"
    event = verify(request, SECRET)  # the documented Standard Webhooks signature
    assert event["type"] == "job.succeeded"
    assert event["data"]["id"] == report["job"]["id"]
    assert event["data"]["status"] == "succeeded"

    assert report["model"]["status"] == "ready"  # upload_model waited for the inspection
    assert report["job"]["status"] == "succeeded"
    statuses = [status for status, _, _ in report["progress"]]
    assert statuses[-1] == "succeeded" and len(report["progress"]) >= 2
    assert len(set(map(tuple, report["progress"]))) == len(report["progress"])  # changes only

    results = report["results"]
    downloaded = Path(report["downloaded"])
    if report["recommended"]:
        import torch  # this test's Python has it; the pipeline's did not need it

        chosen = results["candidates"][results["recommended"]]
        program = torch.export.load(downloaded)  # trusted: the service wrote it
        assert sum(p.numel() for p in program.parameters()) == chosen["parameters"]
    else:
        assert json.loads(downloaded.read_text()) == results
    assert not list(tmp_path.glob(".*.part"))  # no partial file left behind
