"""Models, datasets and jobs.

Revision ID: 0001
Revises:
Create Date: 2026-05-10

Written out in full rather than derived from jobs.tables: a migration must describe the
schema as it was at this revision, whatever the tables module says later.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id(name: str, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(32), nullable=nullable)


def _timestamp(name: str, nullable: bool) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "models",
        _id("id"),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("info", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _timestamp("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
    )
    op.create_index("ix_models_tenant", "models", ["tenant"])
    op.create_index("ix_models_sha256", "models", ["sha256"])

    op.create_table(
        "datasets",
        _id("id"),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("samples", sa.BigInteger(), nullable=False),
        sa.Column("x_shape", sa.JSON(), nullable=False),
        sa.Column("has_labels", sa.Boolean(), nullable=False),
        sa.Column("label_column", sa.String(255), nullable=True),
        _timestamp("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
    )
    op.create_index("ix_datasets_tenant", "datasets", ["tenant"])
    op.create_index("ix_datasets_sha256", "datasets", ["sha256"])

    op.create_table(
        "jobs",
        _id("id"),
        sa.Column("tenant", sa.String(128), nullable=False),
        _id("model_id"),
        _id("dataset_id"),
        _id("eval_dataset_id", nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("fraction", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("started_at", nullable=True),
        _timestamp("finished_at", nullable=True),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        _timestamp("lease_expires_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_index("ix_jobs_tenant", "jobs", ["tenant"])
    op.create_index("ix_jobs_tenant_created_at", "jobs", ["tenant", "created_at"])
    op.create_index("ix_jobs_status", "jobs", ["status"])


def downgrade() -> None:
    op.drop_table("jobs")
    op.drop_table("datasets")
    op.drop_table("models")
