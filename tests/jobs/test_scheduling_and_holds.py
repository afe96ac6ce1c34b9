"""Fair ordering between tenants, blob holds and per-tenant figures, on both backends."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

import pytest

from jobs.blob_refs import HoldLost
from jobs.blobs import BlobStore
from jobs.job_table import UploadGone
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


def test_a_hold_keeps_the_blob_through_another_records_release(
    store: JobStore, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path)
    hold = store.blob_refs.hold_upload("alpha", SHA, 3)
    path = blobs.path(SHA)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"abc")
    other = store.datasets.add("beta", SHA, 3, "d.npz", "npz", 1, [1], False, None)
    store.datasets.delete("beta", other.id)
    assert not store.blob_refs.release_blob(SHA, blobs.delete)
    assert path.exists()
    store.models.add("alpha", SHA, 3, "m.pt2", hold_id=hold)
    assert store.blob_refs.stale_holds(-3600) == [], "the record replaced the hold"
    assert store.blob_refs.unreferenced([SHA, "cd" * 32]) == ["cd" * 32]


def test_releasing_the_last_hold_removes_the_blob_once(store: JobStore, tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    holds = [
        store.blob_refs.hold_upload("alpha", SHA, 3),
        store.blob_refs.hold_upload("beta", SHA, 3),
    ]
    path = blobs.path(SHA)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"abc")
    store.blob_refs.release_hold(holds[0], blobs.delete)
    assert path.exists()
    store.blob_refs.release_hold(holds[1], blobs.delete)
    assert not path.exists()
    store.blob_refs.release_hold(holds[1], blobs.delete)  # twice is harmless


def test_per_tenant_figures(store: JobStore) -> None:
    store.models.add("alpha", SHA, 100, "m.pt2")
    store.datasets.add("alpha", SHA, 20, "d.npz", "npz", 1, [1], False, None)
    store.blob_refs.hold_upload("alpha", SHA, 3)
    job = store.jobs.add("alpha", "m", "d", None, {}).id
    assert store.usage.jobs_in_flight("alpha") == 1 and store.usage.jobs_in_flight("beta") == 0
    assert store.usage.pending_inspections("alpha") == 1
    assert store.usage.stored_bytes("alpha") == 123
    assert store.usage.jobs_without_output_bytes("alpha") == []
    assert store.lifecycle.start(job) is not None
    assert store.lifecycle.finish(job, JobStatus.SUCCEEDED)
    assert store.usage.jobs_without_output_bytes("alpha") == [job]
    store.usage.set_output_bytes(job, 1000)
    assert store.usage.stored_bytes("alpha") == 1123
    assert store.usage.stored_bytes("beta") == 0


def test_a_record_is_not_written_once_its_hold_was_released(
    store: JobStore, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path)
    hold = store.blob_refs.hold_upload("alpha", SHA, 3)
    store.blob_refs.release_hold(hold, blobs.delete)  # the reaper took it for a dead upload's
    with pytest.raises(HoldLost):
        store.models.add("alpha", SHA, 3, "m.pt2", hold_id=hold)
    with pytest.raises(HoldLost):
        store.datasets.add("alpha", SHA, 3, "d.npz", "npz", 1, [1], False, None, hold_id=hold)
    assert store.usage.pending_inspections("alpha") == 0 and store.usage.stored_bytes("alpha") == 0


def test_an_upload_in_use_is_not_deleted_and_a_job_never_uses_a_deleted_one(
    store: JobStore,
) -> None:
    model = store.models.add("alpha", SHA, 1, "m.pt2").id
    data = store.datasets.add("alpha", "cd" * 32, 1, "d.npz", "npz", 1, [1], False, None).id
    job = store.jobs.add("alpha", model, data, None, {}, verify_uploads=True).id
    assert store.deletion.delete_upload_unless_used("alpha", model) is False
    assert store.models.get("alpha", model) is not None, "rolled back"
    assert store.deletion.delete_upload_unless_used("beta", model) is None, "another tenant's"
    store.lifecycle.request_cancel("alpha", job)
    assert store.deletion.delete_upload_unless_used("alpha", model) is True
    with pytest.raises(UploadGone):
        store.jobs.add("alpha", model, data, None, {}, verify_uploads=True)
    assert store.usage.jobs_in_flight("alpha") == 0, "the job was not written"


def test_deletions_and_submissions_racing_never_leave_a_job_on_a_deleted_upload(
    store: JobStore,
) -> None:
    for _ in range(20):
        model = store.models.add("alpha", SHA, 1, "m.pt2").id
        data = store.datasets.add("alpha", "cd" * 32, 1, "d.npz", "npz", 1, [1], False, None).id
        outcome: list[object] = []

        def submit(model: str = model, data: str = data, outcome: list[object] = outcome) -> None:
            try:
                outcome.append(store.jobs.add("alpha", model, data, None, {}, verify_uploads=True))
            except UploadGone:
                outcome.append(None)

        thread = threading.Thread(target=submit)
        thread.start()
        deleted = store.deletion.delete_upload_unless_used("alpha", model)
        thread.join()
        job = outcome[0]
        # Either the job was refused, or it exists and the model was kept for it.
        assert (job is None) == bool(deleted), (job, deleted)
        if job is not None:
            store.lifecycle.request_cancel("alpha", job.id)  # type: ignore[attr-defined]
