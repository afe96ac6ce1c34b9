"""Blob locks and upload holds (a blob is never removed under an upload being validated),
each finished job's published bytes (storage quotas), and when a model's inspection was
claimed (fair ordering between tenants).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blob_locks",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("touched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_blob_locks"),
    )
    op.create_table(
        "upload_holds",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_upload_holds"),
    )
    op.create_index("ix_upload_holds_tenant", "upload_holds", ["tenant"])
    op.create_index("ix_upload_holds_sha256", "upload_holds", ["sha256"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("output_bytes", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("models") as batch:
        batch.add_column(
            sa.Column("inspection_started_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("inspection_started_at")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("output_bytes")
    op.drop_table("upload_holds")
    op.drop_table("blob_locks")
