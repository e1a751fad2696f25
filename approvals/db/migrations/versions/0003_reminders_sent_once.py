"""reminders sent once

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 16:54:48.270052
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import approvals.db.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reminder",
        sa.Column("subject", sa.String(length=40), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("at", approvals.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subject", "revision", "level", name=op.f("pk_reminder")),
    )


def downgrade() -> None:
    op.drop_table("reminder")
