"""A running job's lease and cancellation: the heartbeat, the cancel poll, and what a job
records when it is cancelled or loses its lease."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from jobs.settings import Settings
from jobs.states import JobStatus
from jobs.tables import JobRow
from tests.worker.world import TENANT, World
from worker.lease import Heartbeat, JobCancelled, LeaseLost, throttled_cancel


class _Lifecycle:
    """The `JobLifecycle` calls the lease makes, answered from fields; `down` makes them
    fail like an unreachable database."""

    def __init__(self) -> None:
        self.held = True
        self.cancel = False
        self.down = False
        self.asked = 0

    def renew_lease(self, job_id: str, attempt: int, lease_seconds: int) -> bool:
        self._outage()
        return self.held

    def is_cancel_requested(self, job_id: str, attempt: int | None = None) -> bool:
        self.asked += 1
        self._outage()
        return self.cancel

    def _outage(self) -> None:
        if self.down:
            raise OperationalError("SELECT 1", {}, Exception("the database is down"))


def test_the_heartbeat_reports_a_lost_lease_as_lease_lost() -> None:
    store = _Lifecycle()
    heartbeat = Heartbeat(store, "j", 1, lease_seconds=1)  # type: ignore[arg-type]
    heartbeat.start()
    try:
        time.sleep(0.5)
        heartbeat.check()  # renewed: nothing to say
        store.held = False
        deadline = time.monotonic() + 5
        while not heartbeat.lost:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(LeaseLost):
            heartbeat.check()
    finally:
        heartbeat.stop()


def test_the_cancel_poll_asks_once_a_second_and_rides_out_an_outage() -> None:
    store = _Lifecycle()
    check = throttled_cancel(store, "j", 1)  # type: ignore[arg-type]
    check()
    check()
    assert store.asked == 1  # the second call within the second did not ask
    store.down = True
    time.sleep(1.05)
    check()  # the store is unreachable: the last answer (go on) stands
    assert store.asked == 2
    store.down, store.cancel = False, True
    time.sleep(1.05)
    with pytest.raises(JobCancelled):
        check()


def test_a_job_cancelled_while_queued_never_starts(world: World, model_file: Path) -> None:
    job = world.job(world.model(model_file), world.npz())
    world.store.lifecycle.request_cancel(TENANT, job.id)
    after = world.run(job.id)
    assert after.status is JobStatus.CANCELLED and after.attempts == 0


def test_a_running_job_stops_when_cancelled(world: World, model_file: Path) -> None:
    job = world.job(
        world.model(model_file),
        world.npz(samples=60_000),
        thresholds=[{"fraction": f / 20} for f in range(1, 20)],
    )
    runner = threading.Thread(target=world.run, args=(job.id,))
    runner.start()
    deadline = time.monotonic() + 60
    while world.store.jobs.get(TENANT, job.id).status is JobStatus.QUEUED:  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cancelled_at = time.monotonic()
    world.store.lifecycle.request_cancel(TENANT, job.id)
    runner.join(timeout=60)
    assert not runner.is_alive()
    assert time.monotonic() - cancelled_at < 10
    final = world.store.jobs.get(TENANT, job.id)
    assert final is not None and final.status is JobStatus.CANCELLED
    assert not world.blobs.job_dir(job.id).exists()
    assert [p for p in world.blobs.jobs_dir.iterdir()] == []  # partial files removed


def test_a_job_whose_lease_is_taken_over_stops_and_records_nothing(
    world: World, model_file: Path
) -> None:
    world.settings = Settings(data_dir=world.root, batch_size=32, device="cpu", lease_seconds=5)
    job = world.job(
        world.model(model_file),
        world.npz(samples=60_000),
        thresholds=[{"fraction": f / 20} for f in range(1, 20)],
    )
    runner = threading.Thread(target=world.run, args=(job.id,))
    runner.start()
    deadline = time.monotonic() + 60
    while world.store.jobs.get(TENANT, job.id).status is JobStatus.QUEUED:  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with world.store.database.session() as session:  # another worker's attempt holds it now
        session.execute(update(JobRow).where(JobRow.id == job.id).values(attempts=2))
    taken_at = time.monotonic()
    runner.join(timeout=60)
    assert not runner.is_alive()
    assert time.monotonic() - taken_at < 10
    final = world.store.jobs.get(TENANT, job.id)
    assert final is not None and final.status is JobStatus.RUNNING and final.attempts == 2
    assert [p for p in world.blobs.jobs_dir.iterdir()] == []  # its folders removed
