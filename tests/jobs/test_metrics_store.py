"""The workers' metric series in the store: increments add up on SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from jobs.metrics_store import STAGE_DURATION, WEBHOOK_DELIVERIES, Tally
from jobs.store import JobStore


def test_increments_add_up_across_writers_and_jobs_are_counted(store: JobStore) -> None:
    def push(_: int) -> None:
        tally = Tally()
        tally.count(WEBHOOK_DELIVERIES, {"outcome": "delivered"})
        tally.observe(STAGE_DURATION, {"stage": "statistics"}, 0.3)
        store.metrics.add(tally)

    with ThreadPoolExecutor(4) as pool:  # concurrent upserts of the same rows lose nothing
        list(pool.map(push, range(8)))
    found = {
        (name, tuple(sorted(labels.items()))): value
        for name, labels, value in store.metrics.series()
    }
    assert found["deadweight_webhook_deliveries_total", (("outcome", "delivered"),)] == 8
    bucket = "deadweight_job_stage_duration_seconds_bucket"
    assert found[bucket, (("le", "0.5"), ("stage", "statistics"))] == 8
    assert (bucket, (("le", "0.1"), ("stage", "statistics"))) not in found  # below the value
    assert (
        abs(found["deadweight_job_stage_duration_seconds_sum", (("stage", "statistics"),)] - 2.4)
        < 1e-9
    )
    store.jobs.add("acme", "m" * 32, "d" * 32, None, {})
    assert store.metrics.job_counts() == [("queued", "acme", 1)]
