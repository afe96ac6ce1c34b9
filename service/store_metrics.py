"""The job store's figures on /metrics, read at scrape time, so every API replica answers
the same: jobs by state and tenant, the queue's depth, models by inspection status, and the
series workers pushed
(`jobs.metrics_store`: jobs finished, durations, stages, candidates, webhook deliveries).

A scrape while the store is unreachable still answers, with `deadweight_store_up 0` and
the API's own figures, so an outage shows on the dashboards instead of a failed scrape.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from jobs.metrics_store import (
    WORKER_FAMILIES,
    FamilyKind,
    WorkerFamily,
    bucket_label,
    label_key,
)
from jobs.states import JobStatus, ModelStatus
from jobs.store import JobStore

log = logging.getLogger("deadweight.api")

# (sample name, labels, value) as `MetricsStore.series` reads them.
Series = list[tuple[str, dict[str, str], float]]


class StoreCollector(Collector):
    """Collects from the job store on every scrape (two short queries)."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("deadweight_store_up", "1 when the job store answered this scrape.")
        try:
            counts = self._store.metrics.job_counts()
            models = self._store.metrics.model_counts()
            series = self._store.metrics.series()
        except Exception as exc:
            log.warning("/metrics: the job store did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily(
            "deadweight_jobs", "Jobs in the store by state and tenant.", labels=["state", "tenant"]
        )
        for state, tenant, count in counts:
            jobs.add_metric([state, tenant], count)
        yield jobs
        queued = sum(count for state, _, count in counts if state == JobStatus.QUEUED.value)
        yield GaugeMetricFamily(
            "deadweight_queue_depth", "Jobs queued in the store, waiting for a worker.", queued
        )
        by_status = GaugeMetricFamily(
            "deadweight_models",
            "Uploaded models by inspection status (pending: waiting for an inspection worker).",
            labels=["status"],
        )
        for status in ModelStatus:  # every status, 0 included: alerts need the series
            by_status.add_metric([status.value], dict(models).get(status.value, 0))
        yield by_status
        for family in WORKER_FAMILIES:
            yield _family(family, series)


def _family(family: WorkerFamily, series: Series) -> Metric:
    if family.kind is FamilyKind.COUNTER:
        counter = CounterMetricFamily(family.name, family.doc, labels=list(family.labels))
        for name, labels, value in series:
            if name == f"{family.name}_total":
                counter.add_metric([labels.get(label, "") for label in family.labels], value)
        return counter
    histogram = HistogramMetricFamily(family.name, family.doc, labels=list(family.labels))
    bucket_name, sum_name = f"{family.name}_bucket", f"{family.name}_sum"
    buckets: dict[str, dict[str, float]] = defaultdict(dict)
    sums: dict[str, float] = {}
    label_sets: dict[str, list[str]] = {}
    for name, labels, value in series:
        if name not in (bucket_name, sum_name):
            continue
        rest = {label: text for label, text in labels.items() if label != "le"}
        key = label_key(rest)
        label_sets[key] = [rest.get(label, "") for label in family.labels]
        if name == sum_name:
            sums[key] = value
        elif "le" in labels:
            buckets[key][labels["le"]] = value
    bounds = [bucket_label(bound) for bound in (*family.buckets, math.inf)]
    for key, found in buckets.items():
        # A bucket without a row never had an observation at or below its bound.
        counts = [(le, found.get(le, 0.0)) for le in bounds]
        histogram.add_metric(label_sets[key], counts, sums.get(key, 0.0))
    return histogram
