"""Fair turns between tenants (jobs/scheduling.py), for jobs and inspections, on both backends."""

from __future__ import annotations

import secrets
import threading

from jobs.states import JobStatus, ModelStatus
from jobs.store import JobStore

SHA = "ab" * 32


def _jobs(store: JobStore, tenant: str, count: int) -> list[str]:
    return [store.jobs.add(tenant, "m", "d", None, {}).id for _ in range(count)]


def test_a_tenants_backlog_does_not_hold_up_another_tenants_first_job(store: JobStore) -> None:
    backlog = _jobs(store, "busy", 5)
    first = store.scheduling.start_fair_job(backlog[0], owner="w1")
    assert first is not None and first.id == backlog[0]
    (newcomer,) = _jobs(store, "quiet", 1)
    # The next message names one of busy's jobs, but quiet has nothing running.
    taken = store.scheduling.start_fair_job(backlog[1], owner="w2")
    assert taken is not None and taken.id == newcomer
    # Then busy's queue goes on, oldest first.
    nxt = store.scheduling.start_fair_job(backlog[3], owner="w3")
    assert nxt is not None and nxt.tenant == "busy"


def test_one_worker_running_one_job_at_a_time_takes_turns_between_tenants(
    store: JobStore,
) -> None:
    # The default deployment: nothing else runs while the worker chooses its next job.
    backlog = _jobs(store, "busy", 4)

    def run_next(hint: str) -> str:
        job = store.scheduling.start_fair_job(hint, owner="w")
        assert job is not None and store.lifecycle.finish(job.id, JobStatus.SUCCEEDED)
        return job.tenant

    assert run_next(backlog[0]) == "busy"
    (late,) = _jobs(store, "late", 1)
    # Each message names busy's next job (or late's own), but late has not been served.
    assert [run_next(hint) for hint in [*backlog[1:], late]] == ["late", "busy", "busy", "busy"]


def test_a_lost_reply_gives_the_worker_its_own_claim_back(store: JobStore) -> None:
    first, second = _jobs(store, "a", 2)
    claimed = store.scheduling.start_fair_job(first, owner="host:1")
    assert claimed is not None
    # The commit landed but the reply was lost: the retry must not start a second job.
    again = store.scheduling.start_fair_job(first, owner="host:1")
    assert again is not None and again.id == claimed.id
    other = store.jobs.get_any_tenant(second)
    assert other is not None and other.status is JobStatus.QUEUED


def test_inspections_take_turns_with_one_worker(store: JobStore) -> None:
    backlog = [store.models.add("busy", SHA, 1, f"{i}.pt2").id for i in range(3)]
    first = store.scheduling.claim_fair_inspection(backlog[0], 600)
    assert first is not None
    store.models.set_inspected(first.id, ModelStatus.READY, {}, None)
    late = store.models.add("late", SHA, 1, "l.pt2").id
    nxt = store.scheduling.claim_fair_inspection(backlog[1], 600)
    assert nxt is not None and nxt.id == late


def test_with_one_tenant_the_named_job_runs(store: JobStore) -> None:
    jobs = _jobs(store, "solo", 3)
    started = store.scheduling.start_fair_job(jobs[2], owner="w")
    assert started is not None and started.id == jobs[2]


def test_every_queued_job_is_started_once_by_as_many_messages(store: JobStore) -> None:
    jobs = _jobs(store, "a", 3) + _jobs(store, "b", 3)
    started: list[str] = []
    lock = threading.Lock()

    def consume(hint: str) -> None:
        # Each message is consumed by a worker process of its own.
        job = store.scheduling.start_fair_job(hint, owner=f"w:{secrets.token_hex(8)}")
        if job is not None:
            with lock:
                started.append(job.id)

    threads = [threading.Thread(target=consume, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(started) == sorted(jobs)
    assert store.scheduling.start_fair_job(jobs[0]) is None


def test_inspections_are_claimed_fairly_and_a_dead_claim_is_taken_again(
    store: JobStore,
) -> None:
    busy = [store.models.add("busy", SHA, 1, f"{i}.pt2").id for i in range(4)]
    claimed = store.scheduling.claim_fair_inspection(busy[0], time_limit_s=600)
    assert claimed is not None and claimed.id == busy[0]
    quiet = store.models.add("quiet", SHA, 1, "q.pt2").id
    nxt = store.scheduling.claim_fair_inspection(busy[1], time_limit_s=600)
    assert nxt is not None and nxt.id == quiet
    # Claimed models are not handed out twice while their inspection may still run...
    store.models.set_inspected(quiet, ModelStatus.READY, {}, None)
    rest = {store.scheduling.claim_fair_inspection(b, 600).id for b in busy[1:]}  # type: ignore[union-attr]
    assert rest == set(busy[1:])
    assert store.scheduling.claim_fair_inspection(busy[0], time_limit_s=600) is None
    # ...but one older than the inspection time limit belongs to a worker that died.
    again = store.scheduling.claim_fair_inspection(busy[0], time_limit_s=-1)
    assert again is not None and again.status is ModelStatus.PENDING
