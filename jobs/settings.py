"""Settings shared by the API and the workers, read from `DEADWEIGHT_*` environment variables.

`get_settings()` builds them once per process, on first use rather than at import, so tests
can change the environment and call `get_settings.cache_clear()`.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Self

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobs.blob_url import S3Location, parse_blob_url, s3_problems
from jobs.job_config import DEFAULT_BATCH_SIZE
from jobs.logging_setup import LOG_FORMATS
from jobs.mlflow_config import tracking_uri_problems
from jobs.webhook_config import webhook_problems

GIB = 1024**3

# torch device strings the worker accepts; anything else would fail only when a job runs.
_DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEADWEIGHT_", extra="ignore")

    data_dir: Path = Path("./deadweight-data")
    broker_url: str | None = None
    database_url: str | None = None
    # Comma-separated `tenant=key` pairs; unset means the API runs without authentication.
    api_keys: str | None = None
    max_upload_bytes: int = 2 * GIB
    lease_seconds: int = 60
    max_attempts: int = 3
    retention_days: int = 30
    # Address space of the process that runs a job or an inspection (0: no limit).
    job_memory_bytes: int = 16 * GIB
    job_soft_time_limit: int = 6 * 3600
    job_time_limit: int = 6 * 3600 + 300
    batch_size: int = DEFAULT_BATCH_SIZE
    device: str = "auto"
    # Time the baseline and every distinct candidate on `device` (pruning/latency.py): the
    # `latency_ms` figures and the `max_latency_ms` budget; off saves their time.
    measure_latency: bool = True
    max_thresholds: int = 64
    # Checked at upload (datasets) and at inspection and job start (models).
    max_samples: int = 10_000_000
    max_features: int = 16_777_216  # values per sample: 3 x 2048 x 2048 images fit
    max_parameters: int = 2_000_000_000

    # -- Limits against exhaustion (issue 10); each documented in the README's Security section.
    # Uploads are validated in a child process of the API with these limits, never in the API.
    validation_memory_bytes: int = 1 * GIB  # address space of one validation process
    validation_seconds: int = 300  # wall time of one validation (a 2 GiB CSV takes ~1 min)
    validation_concurrency: int = 2  # validations at once per API process; others wait
    # The model inspection (worker side) gets a short time limit of its own.
    inspection_time_limit: int = 600
    # Added to the engine's niceness: on a machine it shares with the API (the embedded
    # workers of `deadweight serve`), requests are answered first while a job computes.
    engine_nice: int = 10
    # Work in flight per tenant: uploads being received (per API process), models waiting
    # for or in inspection, jobs queued or running. Beyond them: 429 with Retry-After.
    tenant_uploads_in_flight: int = 4
    tenant_pending_inspections: int = 8
    tenant_jobs_in_flight: int = 16
    # Bytes of uploads and published artifacts one tenant may keep (0: no quota) -> 507.
    tenant_storage_bytes: int = 200 * GIB
    # Bytes one job may publish (its candidates, plots, tables); 0: no cap.
    job_output_bytes: int = 64 * GIB
    # Free space the data directory keeps: uploads and job outputs that would leave less fail
    # early with a clear message (507 / a job error) instead of filling the disk.
    min_free_disk_bytes: int = 1 * GIB
    # Slow or stalled clients: seconds to send the request headers, and between two body
    # chunks; connections served at once (beyond them uvicorn answers 503).
    header_timeout_seconds: float = 15.0
    body_timeout_seconds: float = 60.0
    max_connections: int = 512
    # How long an Idempotency-Key names what its first request created (jobs.idempotency).
    idempotency_ttl_seconds: int = 24 * 3600
    # -- Webhooks (jobs.webhook_config, jobs.webhook_dispatch; the README's Webhooks section).
    # `tenant=whsec_<base64>` pairs, `*=...` for every tenant (and the open mode).
    webhook_secrets: str | None = None
    # `host` or `host:port` entries jobs may call; unset: no job may carry a webhook.
    webhook_allowed_hosts: str | None = None
    # Seconds between failed attempts (the last repeats), and the window after the event.
    webhook_retry_seconds: str = "5,30,120,600,3600"
    webhook_give_up_seconds: float = 24 * 3600
    webhook_timeout_seconds: float = 10.0  # to connect, and again to read the answer
    webhook_poll_seconds: float = 1.0  # how often each worker looks for due deliveries
    # -- Operating (the README's Operating section).
    # A Bearer token GET /metrics requires; unset: /metrics answers without one.
    metrics_token: str | None = None
    # `text` (for a terminal) or `json` (one object per line; schema in jobs.logging_setup).
    log_format: str = "text"
    # -- MLflow tracking (jobs.mlflow_config, worker.mlflow_tracking; the README's MLflow
    # section). The tracking server jobs with `mlflow` log to; unset: such jobs get a 422.
    mlflow_tracking_uri: str | None = None
    # A job's whole logging (run, metrics, plots, model): past it the logging is stopped and
    # the job publishes its results with a note, so a slow tracking server delays a job by
    # at most this much.
    mlflow_timeout_seconds: float = 300.0
    # -- Storage (jobs.blob_url, jobs.s3_blobs; the README's Operating section). Unset: blobs
    # and published files live in the data directory. `s3://bucket/prefix`: in that bucket,
    # through boto3 (region and credentials from the standard AWS_* variables); the data
    # directory is then each process's working area only (upload spool, job staging).
    blob_url: str | None = None
    s3_endpoint_url: str | None = None  # MinIO, Ceph, R2, ...: path-style addressing
    # Artifact downloads: streamed through the API (false), or a 307 to a presigned GET URL.
    s3_presigned_downloads: bool = False
    s3_presign_seconds: int = 300

    @model_validator(mode="after")
    def _check(self) -> Self:
        # Collect every problem so one start-up error lists them all.
        problems = [p for p in self._problems() if p]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _problems(self) -> list[str]:
        at_least = {
            "max_upload_bytes": 1,
            "lease_seconds": 5,
            "max_attempts": 1,
            "retention_days": 1,
            "job_soft_time_limit": 1,
            "job_time_limit": 1,
            "batch_size": 1,
            "max_thresholds": 1,
            "max_samples": 1,
            "max_features": 1,
            "max_parameters": 1,
            "validation_seconds": 1,
            "validation_concurrency": 1,
            "inspection_time_limit": 1,
            "engine_nice": 0,
            "tenant_uploads_in_flight": 1,
            "tenant_pending_inspections": 1,
            "tenant_jobs_in_flight": 1,
            "tenant_storage_bytes": 0,
            "job_output_bytes": 0,
            "min_free_disk_bytes": 0,
            "header_timeout_seconds": 1,
            "body_timeout_seconds": 1,
            "max_connections": 8,
            "idempotency_ttl_seconds": 60,
            "mlflow_timeout_seconds": 1,
        }
        problems = [
            f"DEADWEIGHT_{name.upper()} must be at least {low}, got {getattr(self, name)}"
            for name, low in at_least.items()
            if getattr(self, name) < low
        ]
        if self.job_memory_bytes and self.job_memory_bytes < GIB:
            # The engine's own imports (torch) take most of a GiB of address space.
            problems.append(
                "DEADWEIGHT_JOB_MEMORY_BYTES must be 0 (no limit) or at least 1 GiB, "
                f"got {self.job_memory_bytes}"
            )
        if self.validation_memory_bytes and self.validation_memory_bytes < 256 * 1024**2:
            # NumPy's import alone maps most of 100 MiB of address space.
            problems.append(
                "DEADWEIGHT_VALIDATION_MEMORY_BYTES must be 0 (no limit) or at least 256 MiB, "
                f"got {self.validation_memory_bytes}"
            )
        if self.engine_nice > 19:
            problems.append(f"DEADWEIGHT_ENGINE_NICE must be at most 19, got {self.engine_nice}")
        if self.job_time_limit <= self.job_soft_time_limit:
            # The soft limit lets a job stop cleanly; a hard limit below it would kill it first.
            problems.append(
                "DEADWEIGHT_JOB_TIME_LIMIT must exceed DEADWEIGHT_JOB_SOFT_TIME_LIMIT "
                f"({self.job_time_limit} <= {self.job_soft_time_limit})"
            )
        if self.log_format not in LOG_FORMATS:
            problems.append(f"DEADWEIGHT_LOG_FORMAT must be json or text, got {self.log_format!r}")
        if not _DEVICE_RE.fullmatch(self.device):
            problems.append(
                f"DEADWEIGHT_DEVICE must be auto, cpu, mps, cuda or cuda:<n>, got {self.device!r}"
            )
        problems += s3_problems(self.blob_url, self.s3_endpoint_url, self.s3_presign_seconds)
        try:
            self.api_key_tenants()
        except ValueError as exc:
            problems.append(str(exc))
        problems += tracking_uri_problems(self.mlflow_tracking_uri)
        problems += webhook_problems(
            self.webhook_secrets,
            self.webhook_retry_seconds,
            {
                "webhook_give_up_seconds": self.webhook_give_up_seconds,
                "webhook_timeout_seconds": self.webhook_timeout_seconds,
                "webhook_poll_seconds": self.webhook_poll_seconds,
            },
        )
        return problems

    def s3_location(self) -> S3Location | None:
        """The bucket and prefix of `blob_url`; None: blobs live in the data directory."""
        return parse_blob_url(self.blob_url) if self.blob_url else None

    def resolved_data_dir(self) -> Path:
        """The data directory as an absolute path (the worker may run from another directory)."""
        return self.data_dir.expanduser().resolve()

    def leftover_seconds(self) -> float:
        """Age after which an upload hold or an inspection folder belongs to a process that
        died: a hold lives through one wait for a validation slot and one validation (each
        at most `validation_seconds`), an inspection at most `inspection_time_limit`."""
        return max(2 * self.validation_seconds + 60, self.inspection_claim_seconds())

    def inspection_claim_seconds(self) -> float:
        """How long a worker's claim on a model's inspection stands: past the inspection's
        own time limit, only a worker that died still holds it."""
        return self.inspection_time_limit + 60

    def resolved_database_url(self) -> str:
        """The job store URL; by default an SQLite file inside the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir() / 'deadweight.db'}"

    def resolved_broker_url(self) -> str:
        """The Celery broker URL; by default Celery's filesystem transport (nothing to run)."""
        return self.broker_url or "filesystem://"

    def broker_transport_options(self) -> dict[str, Any]:
        """Transport options for the broker in use; creates the filesystem broker's folders."""
        scheme = self.resolved_broker_url().split("://", 1)[0].lower()
        if scheme == "filesystem":
            # API and worker must agree on one folder: in = out makes it a shared queue.
            queue = self.resolved_data_dir() / "broker" / "queue"
            processed = self.resolved_data_dir() / "broker" / "processed"
            # The exchange table; kombu's default is `control/` in the current directory,
            # which would litter wherever the service was started from.
            control = self.resolved_data_dir() / "broker" / "control"
            for folder in (queue, processed, control):
                folder.mkdir(parents=True, exist_ok=True)
            return {
                "data_folder_in": str(queue),
                "data_folder_out": str(queue),
                "processed_folder": str(processed),
                "control_folder": str(control),
                "store_processed": False,
            }
        if scheme in {"redis", "rediss", "sentinel"}:
            # Redis redelivers an unacknowledged message once the visibility timeout passes.
            # With acks_late a job is acked only when it ends, so the timeout must exceed the
            # hard time limit, or a long job would be handed to a second worker and run twice.
            return {"visibility_timeout": self.job_time_limit + 600}
        return {}

    def ensure_dirs(self) -> None:
        """Create the blob and job-file folders under the data directory."""
        root = self.resolved_data_dir()
        for sub in ("blobs", "jobs"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def api_key_tenants(self) -> dict[str, str]:
        """API key -> tenant, parsed from `api_keys`; empty when authentication is off.

        Raises:
            ValueError: a pair is not `tenant=key`, or a key is given twice.
        """
        result: dict[str, str] = {}
        for raw in (self.api_keys or "").split(","):
            pair = raw.strip()
            if not pair:
                continue
            tenant, sep, key = (part.strip() for part in pair.partition("="))
            if not sep or not tenant or not key:
                raise ValueError("DEADWEIGHT_API_KEYS must be comma-separated tenant=key pairs")
            if key in result:
                # One key for two tenants would make the tenant ambiguous.
                raise ValueError("DEADWEIGHT_API_KEYS gives the same key twice")
            result[key] = tenant
        return result


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()
