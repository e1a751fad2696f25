"""erp polling: cursors and the documents seen

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 17:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import approvals.db.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erp_cursor",
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("feed", sa.String(length=20), nullable=False),
        sa.Column("at", approvals.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("updated_at", approvals.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "feed", name=op.f("pk_erp_cursor")),
    )
    op.create_table(
        "erp_document",
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("doc_no", sa.String(length=128), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("modified", approvals.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", approvals.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "key", name=op.f("pk_erp_document")),
    )


def downgrade() -> None:
    op.drop_table("erp_document")
    op.drop_table("erp_cursor")
