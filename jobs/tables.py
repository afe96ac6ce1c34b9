"""ORM tables of the job store. Only `jobs.store` touches rows; callers get `jobs.records`.

Every row carries its tenant; IDs are random 128-bit hex strings, so an ID seen in one
tenant's URL says nothing about another tenant's.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jobs.records import DatasetRecord, JobRecord, ModelRecord
from jobs.states import JobStatus, ModelStatus

ID_LENGTH = 32


def new_id() -> str:
    """An unguessable ID (128 random bits as lowercase hex)."""
    return secrets.token_hex(ID_LENGTH // 2)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    SQLite has no timezone type and hands back naive datetimes; without this, records read
    from SQLite and PostgreSQL would differ and naive/aware comparisons would raise.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the job store; use an aware UTC time")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    # Fixed constraint names keep migrations identical on SQLite and PostgreSQL.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    # Indexed: deleting an upload asks whether any other row still needs its blob.
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    # BigInteger: uploads can exceed 2 GiB, the limit of a 32-bit INTEGER.
    size: Mapped[int] = mapped_column("bytes", BigInteger)
    filename: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    info: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When a worker took this pending model for inspection (jobs.scheduling); a claim older
    # than the inspection time limit belongs to a worker that died.
    inspection_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    def to_record(self) -> ModelRecord:
        return ModelRecord(
            id=self.id,
            tenant=self.tenant,
            sha256=self.sha256,
            bytes=self.size,
            filename=self.filename,
            status=ModelStatus(self.status),
            created_at=self.created_at,
            info=self.info,
            error=self.error,
        )


class DatasetRow(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column("bytes", BigInteger)
    filename: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(16))
    samples: Mapped[int] = mapped_column(BigInteger)
    x_shape: Mapped[list[int]] = mapped_column(JSON)
    has_labels: Mapped[bool] = mapped_column(Boolean)
    label_column: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def to_record(self) -> DatasetRecord:
        return DatasetRecord(
            id=self.id,
            tenant=self.tenant,
            sha256=self.sha256,
            bytes=self.size,
            filename=self.filename,
            format=self.format,
            samples=self.samples,
            x_shape=list(self.x_shape),
            has_labels=self.has_labels,
            created_at=self.created_at,
            label_column=self.label_column,
        )


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # Listing a tenant's jobs newest first reads this index in order.
        Index("ix_jobs_tenant_created_at", "tenant", "created_at"),
        # The reaper (lost workers) and "is this upload in use" look jobs up by status.
        Index("ix_jobs_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    # No foreign keys: a finished job keeps naming the uploads it ran on after they are
    # deleted; whether an upload may go is the service's decision (uploads_in_use_by_jobs).
    model_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    dataset_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    eval_dataset_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), nullable=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    stage: Mapped[str] = mapped_column(String(32))
    fraction: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The lease of a running job (jobs.lifecycle): who runs it, until when.
    lease_owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When a queued job was last sent to the queue: the reaper re-sends lost messages.
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, default=utcnow)
    # Bytes of the published artifacts, counted once the job has ended (storage quotas).
    output_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    def to_record(self) -> JobRecord:
        return JobRecord(
            id=self.id,
            tenant=self.tenant,
            model_id=self.model_id,
            dataset_id=self.dataset_id,
            eval_dataset_id=self.eval_dataset_id,
            config=self.config,
            status=JobStatus(self.status),
            created_at=self.created_at,
            stage=self.stage,
            fraction=self.fraction,
            error=self.error,
            attempts=self.attempts,
            cancel_requested=self.cancel_requested,
            started_at=self.started_at,
            finished_at=self.finished_at,
        )


class BlobLockRow(Base):
    """One row per blob being held or released: writing it first serialises "does anything
    still refer to this blob?" with the unlink that follows (a row lock on PostgreSQL, the
    write lock on SQLite), so a blob is never removed under an upload that just arrived."""

    __tablename__ = "blob_locks"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    touched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UploadHoldRow(Base):
    """An upload received and being validated: it keeps its blob until a record replaces it.

    Holds older than the validation time limit belong to an API that died; the reaper
    releases them."""

    __tablename__ = "upload_holds"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column("bytes", BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyKeyRow(Base):
    """A tenant's `Idempotency-Key`, claimed by the request that carried it first.

    The primary key (tenant, key) is what makes two racing requests create one resource:
    the second INSERT fails instead of both passing a check. While `status_code` is null the
    first request is still in flight (`claim_token` fences its completion); once set, the
    row names what it created until `expires_at` (jobs.idempotency)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        # Expired keys are purged by time.
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    claim_token: Mapped[str] = mapped_column(String(ID_LENGTH))
    # sha256 of the request (route, body; for uploads the file's sha256 and form fields);
    # null until an upload's file has arrived.
    fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    resource_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    resource_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
