"""Per-tenant figures behind quotas and limits (jobs/usage.py), on SQLite and PostgreSQL."""

from __future__ import annotations

from jobs.states import JobStatus
from jobs.store import JobStore

SHA = "ab" * 32


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
