"""Deleting uploads and jobs (jobs/deletion.py), on SQLite and PostgreSQL: at a user's request,
never an upload a job uses, and after the retention period."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from jobs.job_table import UploadGone
from jobs.states import JobStatus
from jobs.store import JobStore
from jobs.tables import DatasetRow, JobRow, ModelRow, utcnow

SHA = "ab" * 32


def _age(store: JobStore, table: type, row_id: str, **columns_days_ago: int) -> None:
    values = {k: utcnow() - timedelta(days=d) for k, d in columns_days_ago.items()}
    with store.database.session() as session:
        session.execute(update(table).where(table.id == row_id).values(**values))


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


def test_retention_removes_old_finished_jobs_and_unused_uploads(store: JobStore) -> None:
    old_model = store.models.add("acme", "a" * 64, 1, "a.pt2").id
    used_model = store.models.add("acme", "b" * 64, 1, "b.pt2").id
    new_model = store.models.add("acme", "c" * 64, 1, "c.pt2").id
    dataset = store.datasets.add("acme", "d" * 64, 1, "d.npz", "npz", 1, [1], False, None).id
    old_job = store.jobs.add("acme", used_model, dataset, None, {}).id
    active = store.jobs.add("acme", used_model, dataset, None, {}).id
    store.lifecycle.start(old_job)
    store.lifecycle.finish(old_job, JobStatus.SUCCEEDED)
    for model in (old_model, used_model):
        _age(store, ModelRow, model, created_at=40)
    _age(store, DatasetRow, dataset, created_at=40)
    _age(store, JobRow, old_job, finished_at=31)
    _age(store, JobRow, active, created_at=40)

    assert store.deletion.expired_jobs(30) == [old_job]
    assert store.deletion.delete_job_any_tenant(old_job)
    assert not store.deletion.delete_job_any_tenant(active)  # never an active job
    # The active job still uses used_model and dataset; old_model is free, new_model young.
    assert store.deletion.expire_unused_uploads(30) == ["a" * 64]
    assert store.models.get("acme", old_model) is None
    assert store.models.get("acme", new_model) is not None
    assert store.models.get("acme", used_model) is not None
