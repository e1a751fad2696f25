"""dingtalk call metering

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 16:10:14.999867
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_call",
        sa.Column("api", sa.String(length=80), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("throttled", sa.BigInteger(), nullable=False),
        sa.Column("failed", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("api", "day", name=op.f("pk_api_call")),
    )


def downgrade() -> None:
    op.drop_table("api_call")
