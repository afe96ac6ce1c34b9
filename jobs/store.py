"""The SQL job store: models, datasets and jobs, one row each, every row owned by a tenant.

All lookups take the tenant: a row of another tenant is invisible (returns None / False),
exactly like a row that does not exist. Methods named `*_any_tenant`, and the job
transitions that take only an ID, are for the worker, which acts on IDs from the queue.

Every state change is one conditional `UPDATE ... WHERE status = ...` checked by its row
count: a duplicate Celery delivery, a late worker or a cancel racing a finish can then
never overwrite a state another process already wrote.
"""

from __future__ import annotations

from jobs.blob_refs import BlobReferences
from jobs.database import Database
from jobs.dataset_table import DatasetTable
from jobs.deletion import Deletion
from jobs.idempotency import IdempotencyKeys
from jobs.job_table import JobTable
from jobs.lifecycle import JobLifecycle
from jobs.metrics_store import MetricsStore
from jobs.model_table import ModelTable
from jobs.reaping import Reaping
from jobs.scheduling import Scheduling
from jobs.usage import TenantUsage
from jobs.webhook_outbox import WebhookOutbox


class JobStore:
    """Uploads and jobs of every tenant, in one database; each part in a file of its own:

    - `models`: `ModelTable` (jobs/model_table.py): add, get, get_any_tenant,
      set_inspected, delete, withdraw, stale_pending.
    - `datasets`: `DatasetTable` (jobs/dataset_table.py): add, get, get_any_tenant, delete.
    - `jobs`: `JobTable` (jobs/job_table.py): add, get, get_any_tenant, list, delete,
      withdraw.
    - `lifecycle`: `JobLifecycle` (jobs/lifecycle.py), a job's transitions fenced by its
      attempt and lease: start, renew_lease, set_progress, finish, request_cancel,
      is_cancel_requested.
    - `scheduling`: `Scheduling` (jobs/scheduling.py), fair turns between tenants:
      start_fair_job, claim_fair_inspection.
    - `reaping`: `Reaping` (jobs/reaping.py), what the reaper asks: reap_expired,
      stale_queued, attempts_of.
    - `blob_refs`: `BlobReferences` (jobs/blob_refs.py), who still needs a blob:
      hold_upload, release_hold, release_blob, blob_in_use, unreferenced, stale_holds.
    - `usage`: `TenantUsage` (jobs/usage.py), the figures behind quotas and limits.
    - `deletion`: `Deletion` (jobs/deletion.py), deleting uploads safely, and retention.
    - `idempotency`: `IdempotencyKeys` (jobs/idempotency.py): claim, get, release;
      the tables complete a claim in the transaction that writes its resource.
    - `webhooks`: `WebhookOutbox` (jobs/webhook_outbox.py), webhook deliveries: claim_due,
      record_attempt, for_job, expire.
    - `metrics`: `MetricsStore` (jobs/metrics_store.py), /metrics: the series workers
      push (add, series) and jobs by state and tenant (job_counts).
    - `database`: `Database` (jobs/database.py), the engine and transactions they share;
      `migrate`, `ping` and `dispose` are on the store itself.
    """

    def __init__(self, database_url: str) -> None:
        """Connect (SQLite file or PostgreSQL URL); does not create tables."""
        self.database = Database(database_url)
        self.models = ModelTable(self.database)
        self.datasets = DatasetTable(self.database)
        self.jobs = JobTable(self.database)
        self.lifecycle = JobLifecycle(self.database)
        self.scheduling = Scheduling(self.database, self.lifecycle)
        self.reaping = Reaping(self.database)
        self.blob_refs = BlobReferences(self.database)
        self.usage = TenantUsage(self.database)
        self.deletion = Deletion(self.database)
        self.webhooks = WebhookOutbox(self.database)
        self.idempotency = IdempotencyKeys(self.database)
        self.metrics = MetricsStore(self.database)

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent, safe at every start)."""
        self.database.migrate()

    def ping(self) -> None:
        """Raise if the database cannot be reached (used by /readyz)."""
        self.database.ping()

    def dispose(self) -> None:
        """Close the pooled connections (at shutdown, or in tests between databases)."""
        self.database.dispose()
