"""The job store on SQLite and PostgreSQL: tenancy, transitions, listing, uploads."""

from __future__ import annotations

import multiprocessing
import os
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC

import pytest

from jobs.records import JobRecord
from jobs.states import JobStatus, ModelStatus, Stage
from jobs.store import JobStore

SHA_A = "a" * 64
SHA_B = "b" * 64


def _job(store: JobStore, tenant: str = "acme", model_id: str = "m" * 32) -> JobRecord:
    return store.jobs.add(tenant, model_id, "d" * 32, None, {"criterion": "seed"})


def _running(store: JobStore, tenant: str = "acme") -> JobRecord:
    started = store.lifecycle.start(_job(store, tenant).id)
    assert started is not None
    return started


# -- uploads -----------------------------------------------------------------------


def test_model_round_trip(store: JobStore) -> None:
    model = store.models.add("acme", SHA_A, 3 * 2**30, "net.pt2")
    assert re.fullmatch(r"[0-9a-f]{32}", model.id)
    assert model.status is ModelStatus.PENDING
    assert model.created_at.tzinfo is not None
    assert model.created_at.utcoffset() == UTC.utcoffset(None)

    info = {"parameters": 10, "layers": [{"name": "fc1", "width": 4}]}
    store.models.set_inspected(model.id, ModelStatus.READY, info, None)
    again = store.models.get("acme", model.id)
    assert again is not None
    assert again.status is ModelStatus.READY
    assert again.info == info
    # Above 2**31: the size column must be 64-bit on every backend.
    assert again.bytes == 3 * 2**30
    assert again.created_at == model.created_at
    assert store.models.get_any_tenant(model.id) == again


def test_dataset_round_trip(store: JobStore) -> None:
    dataset = store.datasets.add("acme", SHA_B, 1234, "d.csv", "csv", 50, [3, 8, 8], True, "label")
    again = store.datasets.get("acme", dataset.id)
    assert again == dataset
    assert again is not None
    assert again.x_shape == [3, 8, 8]
    assert again.label_column == "label"
    assert store.datasets.get_any_tenant(dataset.id) == dataset


def test_tenants_cannot_see_each_others_rows(store: JobStore) -> None:
    model = store.models.add("acme", SHA_A, 1, "m.pt2")
    dataset = store.datasets.add("acme", SHA_B, 1, "d.npz", "npz", 1, [2], False, None)
    job = _job(store)

    assert store.models.get("evil", model.id) is None
    assert store.datasets.get("evil", dataset.id) is None
    assert store.jobs.get("evil", job.id) is None
    assert store.lifecycle.request_cancel("evil", job.id) is None
    assert store.models.delete("evil", model.id) is False
    assert store.datasets.delete("evil", dataset.id) is False
    assert store.jobs.delete("evil", job.id) is False
    assert store.jobs.list("evil", 10, 0) == ([], 0)

    # Nothing above touched the owner's rows.
    assert store.models.get("acme", model.id) is not None
    assert store.datasets.get("acme", dataset.id) is not None
    current = store.jobs.get("acme", job.id)
    assert current is not None
    assert current.status is JobStatus.QUEUED


def test_delete_uploads_and_blob_in_use(store: JobStore) -> None:
    first = store.models.add("acme", SHA_A, 1, "m.pt2")
    second = store.models.add("other", SHA_A, 1, "m.pt2")
    assert store.blob_refs.blob_in_use(SHA_A)
    assert store.models.delete("acme", first.id)
    assert store.models.delete("acme", first.id) is False
    assert store.blob_refs.blob_in_use(SHA_A), "another tenant's row still needs the blob"
    assert store.models.delete("other", second.id)
    assert not store.blob_refs.blob_in_use(SHA_A)

    dataset = store.datasets.add("acme", SHA_B, 1, "d.npz", "npz", 1, [2], False, None)
    assert store.blob_refs.blob_in_use(SHA_B)
    assert store.datasets.delete("acme", dataset.id)
    assert not store.blob_refs.blob_in_use(SHA_B)


def test_uploads_in_use_by_jobs(store: JobStore) -> None:
    model_id, data_id, eval_id = "1" * 32, "2" * 32, "3" * 32
    job = store.jobs.add("acme", model_id, data_id, eval_id, {})
    for upload in (model_id, data_id, eval_id):
        assert store.deletion.uploads_in_use_by_jobs("acme", upload)
    assert not store.deletion.uploads_in_use_by_jobs("acme", "4" * 32)
    assert not store.deletion.uploads_in_use_by_jobs("other", model_id)

    assert store.lifecycle.start(job.id) is not None
    assert store.deletion.uploads_in_use_by_jobs("acme", eval_id), "a running job still reads it"
    assert store.lifecycle.finish(job.id, JobStatus.SUCCEEDED)
    assert not store.deletion.uploads_in_use_by_jobs("acme", eval_id), "a finished job does not"


# -- job transitions ---------------------------------------------------------------


def test_new_job_is_queued(store: JobStore) -> None:
    job = _job(store)
    assert re.fullmatch(r"[0-9a-f]{32}", job.id)
    assert job.status is JobStatus.QUEUED
    assert (job.stage, job.fraction, job.attempts) == ("queued", 0.0, 0)
    assert job.started_at is None and job.finished_at is None
    assert job.config == {"criterion": "seed"}
    assert store.jobs.get("acme", job.id) == job


def test_a_job_starts_once(store: JobStore) -> None:
    job = _job(store)
    started = store.lifecycle.start(job.id)
    assert started is not None
    assert started.status is JobStatus.RUNNING
    assert started.attempts == 1
    assert started.stage == Stage.LOADING
    assert started.started_at is not None and started.started_at.tzinfo is not None
    # A duplicate delivery of the same message finds the job taken.
    assert store.lifecycle.start(job.id) is None
    assert store.lifecycle.start("f" * 32) is None


def test_concurrent_starts_have_one_winner(database_url: str) -> None:
    stores = [JobStore(database_url) for _ in range(4)]
    try:
        stores[0].migrate()
        job = _job(stores[0])
        with ThreadPoolExecutor(len(stores)) as pool:
            results = list(pool.map(lambda s: s.lifecycle.start(job.id), stores))
        assert sum(r is not None for r in results) == 1
        final = stores[0].jobs.get("acme", job.id)
        assert final is not None and final.attempts == 1
    finally:
        for s in stores:
            s.dispose()


def test_only_a_running_job_finishes(store: JobStore) -> None:
    queued = _job(store)
    assert store.lifecycle.finish(queued.id, JobStatus.FAILED, "boom") is False

    job = _running(store)
    assert store.lifecycle.finish(job.id, JobStatus.FAILED, "the model has no prunable layer")
    # A late worker or a duplicate delivery cannot overwrite the outcome.
    assert store.lifecycle.finish(job.id, JobStatus.SUCCEEDED) is False
    final = store.jobs.get("acme", job.id)
    assert final is not None
    assert final.status is JobStatus.FAILED
    assert final.error == "the model has no prunable layer"
    assert final.finished_at is not None and final.finished_at.tzinfo is not None
    assert final.stage == Stage.LOADING, "a failed job keeps the stage it stopped in"


def test_finish_success_reports_done(store: JobStore) -> None:
    job = _running(store)
    assert store.lifecycle.finish(job.id, JobStatus.SUCCEEDED)
    final = store.jobs.get("acme", job.id)
    assert final is not None
    assert (final.status, final.stage, final.fraction) == (JobStatus.SUCCEEDED, "done", 1.0)
    assert final.error is None


def test_a_job_finishes_only_in_a_terminal_status(store: JobStore) -> None:
    job = _running(store)
    with pytest.raises(ValueError, match="terminal"):
        store.lifecycle.finish(job.id, JobStatus.QUEUED)


def test_progress_only_while_running(store: JobStore) -> None:
    job = _job(store)
    store.lifecycle.set_progress(job.id, "statistics", 0.5)
    queued = store.jobs.get("acme", job.id)
    assert queued is not None and (queued.stage, queued.fraction) == ("queued", 0.0)

    assert store.lifecycle.start(job.id) is not None
    store.lifecycle.set_progress(job.id, "statistics", 0.4)
    running = store.jobs.get("acme", job.id)
    assert running is not None and (running.stage, running.fraction) == ("statistics", 0.4)
    store.lifecycle.set_progress(job.id, "candidates", 7.0)
    clamped = store.jobs.get("acme", job.id)
    assert clamped is not None and clamped.fraction == 1.0
    with pytest.raises(ValueError, match="finite"):
        store.lifecycle.set_progress(job.id, "candidates", float("nan"))

    assert store.lifecycle.finish(job.id, JobStatus.CANCELLED)
    store.lifecycle.set_progress(job.id, "candidates", 0.1)
    ended = store.jobs.get("acme", job.id)
    assert ended is not None and ended.fraction == 1.0


def test_cancel_queued_job_ends_it_at_once(store: JobStore) -> None:
    job = _job(store)
    cancelled = store.lifecycle.request_cancel("acme", job.id)
    assert cancelled is not None
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.finished_at is not None
    assert not cancelled.cancel_requested
    # The message still in the broker must not start it.
    assert store.lifecycle.start(job.id) is None
    assert store.lifecycle.is_cancel_requested(job.id)


def test_cancel_running_job_sets_the_flag(store: JobStore) -> None:
    job = _running(store)
    assert not store.lifecycle.is_cancel_requested(job.id)
    flagged = store.lifecycle.request_cancel("acme", job.id)
    assert flagged is not None
    assert flagged.status is JobStatus.RUNNING
    assert flagged.cancel_requested
    assert store.lifecycle.is_cancel_requested(job.id)
    # The worker notices and ends the job itself.
    assert store.lifecycle.finish(job.id, JobStatus.CANCELLED)
    final = store.jobs.get("acme", job.id)
    assert final is not None and final.status is JobStatus.CANCELLED


def test_cancel_finished_job_changes_nothing(store: JobStore) -> None:
    job = _running(store)
    assert store.lifecycle.finish(job.id, JobStatus.SUCCEEDED)
    before = store.jobs.get("acme", job.id)
    assert store.lifecycle.request_cancel("acme", job.id) == before


def test_worker_stops_when_its_job_is_gone(store: JobStore) -> None:
    job = _running(store)
    assert store.jobs.delete("acme", job.id), "any job can be deleted; the service decides"
    assert store.lifecycle.is_cancel_requested(job.id)
    assert store.lifecycle.finish(job.id, JobStatus.SUCCEEDED) is False
    assert store.jobs.get_any_tenant(job.id) is None


# -- listing -----------------------------------------------------------------------


def test_jobs_are_listed_newest_first_with_a_count(store: JobStore) -> None:
    created = [_job(store).id for _ in range(7)]
    _job(store, tenant="other")
    newest_first = list(reversed(created))

    page, total = store.jobs.list("acme", 3, 0)
    assert total == 7
    assert [j.id for j in page] == newest_first[:3]
    page, total = store.jobs.list("acme", 3, 3)
    assert [j.id for j in page] == newest_first[3:6]
    page, total = store.jobs.list("acme", 3, 6)
    assert [j.id for j in page] == newest_first[6:]
    page, total = store.jobs.list("acme", 3, 9)
    assert (page, total) == ([], 7)
    with pytest.raises(ValueError):
        store.jobs.list("acme", -1, 0)


# -- processes ---------------------------------------------------------------------


def _start_in_child(store: JobStore, job_id: str) -> None:
    os._exit(0 if store.lifecycle.start(job_id) is not None else 1)


def test_store_keeps_working_across_a_fork(store: JobStore) -> None:
    # A Celery worker forks a child per job after its parent has used the store: the
    # child must open connections of its own instead of sharing the parent's socket.
    job = _job(store)
    assert store.jobs.get("acme", job.id) is not None  # the pool now holds a connection
    child = multiprocessing.get_context("fork").Process(
        target=_start_in_child, args=(store, job.id)
    )
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    after = store.jobs.get("acme", job.id)
    assert after is not None and after.status is JobStatus.RUNNING
