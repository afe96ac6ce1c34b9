"""Metric series: the counters and histograms workers push for /metrics (jobs.metrics_store).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "metric_series",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("labels", sa.String(512), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        # The upsert's conflict target: one row per series.
        sa.PrimaryKeyConstraint("name", "labels", name="pk_metric_series"),
    )


def downgrade() -> None:
    op.drop_table("metric_series")
