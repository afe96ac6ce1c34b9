"""The worker's Prometheus figures, kept in the job store so that any API replica serves them.

Workers run on other machines than the API and their pool processes live for one job each
(`worker_max_tasks_per_child=1`), so an in-process registry would lose its counts with every
child, and the client's multiprocess mode needs one shared folder per machine. Instead a
worker adds its increments to `metric_series` rows (one row per sample series, as the text
exposition names it: `..._total`, `..._bucket` with `le`, `..._sum`), each with an atomic
`UPDATE value = value + x` upsert; the API's collector (`service.store_metrics`) reads the
rows at scrape time. Counters only ever grow, so rates and increases work as usual.

This module also reads the live figures of the jobs table (jobs by state and tenant), which
are gauges and need no pushing.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Float, String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from jobs.database import Database
from jobs.tables import Base, JobRow, ModelRow


class FamilyKind(StrEnum):
    COUNTER = "counter"
    HISTOGRAM = "histogram"


@dataclass(frozen=True)
class WorkerFamily:
    """A metric the workers push: its name (without a sample suffix), kind and labels."""

    name: str
    kind: FamilyKind
    doc: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()  # upper bounds of a histogram, +Inf added


# Jobs run for seconds to hours; stages from milliseconds (ranking) to hours (candidates).
_JOB_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0)
_STAGE_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 10800.0)

JOBS_FINISHED = WorkerFamily(
    "deadweight_jobs_finished",
    FamilyKind.COUNTER,
    "Jobs a worker ran to an end state, by that state and tenant.",
    ("state", "tenant"),
)
JOB_DURATION = WorkerFamily(
    "deadweight_job_duration_seconds",
    FamilyKind.HISTOGRAM,
    "Wall time of a job's attempt, from its start by a worker to its end state.",
    ("state",),
    _JOB_BUCKETS,
)
STAGE_DURATION = WorkerFamily(
    "deadweight_job_stage_duration_seconds",
    FamilyKind.HISTOGRAM,
    "Wall time of one stage of a job's engine run (loading, statistics, candidates, ...).",
    ("stage",),
    _STAGE_BUCKETS,
)
CANDIDATES_EVALUATED = WorkerFamily(
    "deadweight_candidates_evaluated",
    FamilyKind.COUNTER,
    "Candidates of succeeded jobs (each evaluated on the evaluation data).",
)
WEBHOOK_DELIVERIES = WorkerFamily(
    "deadweight_webhook_deliveries",
    FamilyKind.COUNTER,
    "Webhook delivery attempts by outcome: delivered, retrying (a failed attempt that will "
    "be retried), failed (given up).",
    ("outcome",),
)
WORKER_FAMILIES = (
    JOBS_FINISHED,
    JOB_DURATION,
    STAGE_DURATION,
    CANDIDATES_EVALUATED,
    WEBHOOK_DELIVERIES,
)


class MetricSeriesRow(Base):
    """One sample series: its exposition name, its labels (JSON pairs, sorted) and value."""

    __tablename__ = "metric_series"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    labels: Mapped[str] = mapped_column(String(512), primary_key=True)
    value: Mapped[float] = mapped_column(Float)


def label_key(labels: Mapping[str, str]) -> str:
    """The stored form of a label set: one spelling per set, whatever the order given."""
    return json.dumps(sorted(labels.items()), separators=(",", ":"))


def parse_labels(key: str) -> dict[str, str]:
    return {str(name): str(value) for name, value in json.loads(key)}


def bucket_label(bound: float) -> str:
    """`le` as the text exposition writes it (`1.0`, `+Inf`)."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


class Tally:
    """Increments gathered in memory, written by one `MetricsStore.add`."""

    def __init__(self) -> None:
        self.increments: dict[tuple[str, str], float] = defaultdict(float)

    def count(self, family: WorkerFamily, labels: Mapping[str, str], amount: float = 1) -> None:
        self.increments[(f"{family.name}_total", label_key(labels))] += amount

    def observe(self, family: WorkerFamily, labels: Mapping[str, str], value: float) -> None:
        # Buckets are cumulative: an observation counts in every bucket at or above it.
        for bound in (*family.buckets, math.inf):
            if value <= bound:
                key = label_key({**labels, "le": bucket_label(bound)})
                self.increments[(f"{family.name}_bucket", key)] += 1
        self.increments[(f"{family.name}_sum", label_key(labels))] += value


class MetricsStore:
    """The store's side of /metrics: pushed series, and job counts read live."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def add(self, tally: Tally) -> None:
        """Add every increment in one transaction (an upsert per series)."""
        if not tally.increments:
            return
        # The dialects' own INSERT ... ON CONFLICT, imported here: the API process, which
        # never writes series, need not load the PostgreSQL dialect for an SQLite store.
        from sqlalchemy.dialects import postgresql, sqlite

        with self._database.session() as session:
            dialect = session.get_bind().dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            for (name, labels), amount in sorted(tally.increments.items()):
                statement = insert(MetricSeriesRow).values(name=name, labels=labels, value=amount)
                session.execute(
                    statement.on_conflict_do_update(
                        index_elements=["name", "labels"],
                        set_={"value": MetricSeriesRow.value + statement.excluded.value},
                    )
                )

    def series(self) -> list[tuple[str, dict[str, str], float]]:
        """Every pushed series: (sample name, labels, value)."""
        query = select(MetricSeriesRow.name, MetricSeriesRow.labels, MetricSeriesRow.value)
        with self._database.read() as connection:
            rows = connection.execute(query).all()
        return [(name, parse_labels(labels), float(value)) for name, labels, value in rows]

    def job_counts(self) -> list[tuple[str, str, int]]:
        """Jobs in the store by (state, tenant, count)."""
        query = select(JobRow.status, JobRow.tenant, func.count()).group_by(
            JobRow.status, JobRow.tenant
        )
        with self._database.read() as connection:
            rows = connection.execute(query).all()
        return [(str(status), str(tenant), int(count)) for status, tenant, count in rows]

    def model_counts(self) -> list[tuple[str, int]]:
        """Models in the store by (inspection status, count): `pending` ones wait for an
        inspection worker."""
        query = select(ModelRow.status, func.count()).group_by(ModelRow.status)
        with self._database.read() as connection:
            rows = connection.execute(query).all()
        return [(str(status), int(count)) for status, count in rows]
