"""Outages with real processes: a private PostgreSQL (tests.pg_instance) stopped the hard way
while a `deadweight worker` runs a job, for longer than the job's lease.

The worker keeps its engine running, retries the store with backoff, and renews its lease
when the database is back; no reaper (its own included) takes the lease in the meantime,
so the job succeeds with its first attempt.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Processes
from tests.integration.test_crashes import (
    LONG,
    TERMINAL,
    Cluster,
    _engine_parent,
    _processes,
    start_cluster,
)
from tests.pg_instance import PgInstance, pg_instance_fixture  # noqa: F401  (the fixture)

pytestmark = pytest.mark.integration

OUTAGE_S = 7.0  # longer than the lease (5 s): the lease runs out while the database is down


@pytest.fixture
def outage_cluster(
    processes: Processes, pg_instance: PgInstance, tmp_path: Path
) -> Iterator[Cluster]:
    # The filesystem broker: the only server in this test is the database under test.
    yield from start_cluster(processes, "filesystem://", pg_instance.url, tmp_path)


def _job(cluster: Cluster, job_id: str) -> dict[str, Any] | None:
    """The job, or None while the API cannot answer (it has its own database to reach)."""
    try:
        response = cluster.client.get(f"/v1/jobs/{job_id}")
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def _wait(cluster: Cluster, job_id: str, done: set[str], timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = _job(cluster, job_id)
        if record is not None and record["status"] in done:
            return record
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} not {done}\n{cluster.procs.dump_logs()}")


def _submit_slow(cluster: Cluster) -> str:
    """A job that outlasts the outage on any machine: each of its 19 candidates is
    fine-tuned for a second (5 epochs, cut short at one second)."""
    body = {"model_id": cluster.model_id, "dataset_id": cluster.dataset_id,
            "criterion": "variance", "thresholds": LONG,
            "recovery": {"epochs": 5, "max_seconds": 1}}  # fmt: skip
    return cluster.post_job(body)


def test_a_database_restart_mid_job_costs_no_attempt(
    outage_cluster: Cluster, pg_instance: PgInstance
) -> None:
    cluster = outage_cluster
    cluster.worker()
    job_id = _submit_slow(cluster)
    _wait(cluster, job_id, {"running"} | TERMINAL)
    engine_parent = _engine_parent(job_id)  # the engine is at work

    pg_instance.stop(mode="immediate")  # as if the server crashed
    # By now the cancel poll (every second) and the lease renewal have met the dead server;
    # the worker did not give its attempt up: its engine still runs, under the same parent.
    time.sleep(3.0)
    engines = [
        pid
        for pid, (ppid, cmdline) in _processes().items()
        if ppid == engine_parent and "worker.engine_process" in cmdline
    ]
    assert engines, f"the engine was stopped\n{cluster.procs.dump_logs()}"
    time.sleep(OUTAGE_S - 3.0)
    assert os.path.exists(f"/proc/{engine_parent}"), cluster.procs.dump_logs()
    pg_instance.start()

    final = _wait(cluster, job_id, TERMINAL)
    assert final["status"] == "succeeded", (final, cluster.procs.dump_logs())
    assert final["attempts"] == 1 and final["error"] is None
    cluster.assert_complete(job_id, candidates=len(LONG))
    logs = [p.read_text(errors="replace") for p in cluster.procs.logs.iterdir()]
    assert any("the job store is unreachable" in t or "cannot renew" in t for t in logs)
