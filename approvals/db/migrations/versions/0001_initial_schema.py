"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 15:59:15.188118
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import approvals.db.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "approval",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("doc_type", sa.String(length=32), nullable=False),
        sa.Column("doc_no", sa.String(length=128), nullable=False),
        sa.Column("current_revision", sa.Integer(), nullable=False),
        sa.Column("open_fold_key", sa.String(length=300), nullable=True),
        sa.Column("created_at", approvals.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", approvals.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval")),
        sa.UniqueConstraint("doc_type", "doc_no", name=op.f("uq_approval_doc_type_doc_no")),
        sa.UniqueConstraint("open_fold_key", name=op.f("uq_approval_open_fold_key")),
    )
    op.create_table(
        "audit",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("approval_id", sa.String(length=32), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=True),
        sa.Column("at", approvals.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("from_state", sa.String(length=20), nullable=True),
        sa.Column("to_state", sa.String(length=20), nullable=True),
        sa.Column("detail", approvals.db.types.JsonText(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit")),
    )
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.create_index("ix_audit_approval_id", ["approval_id", "id"], unique=False)

    op.create_table(
        "early_decision",
        sa.Column("instance_id", sa.String(length=80), nullable=False),
        sa.Column("report", approvals.db.types.JsonText(), nullable=False),
        sa.Column("received_at", approvals.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("instance_id", name=op.f("pk_early_decision")),
    )
    op.create_table(
        "erp_event",
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("approval_id", sa.String(length=32), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("occurred_at", approvals.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("received_at", approvals.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_erp_event")),
    )
    op.create_table(
        "inbox",
        sa.Column("event_key", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("received_at", approvals.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_key", name=op.f("pk_inbox")),
    )
    op.create_table(
        "job",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("approval_id", sa.String(length=32), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=True),
        sa.Column("payload", approvals.db.types.JsonText(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", approvals.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", approvals.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", approvals.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job")),
    )
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.create_index("ix_job_approval_id", ["approval_id", "revision"], unique=False)
        batch_op.create_index("ix_job_status_run_after", ["status", "run_after"], unique=False)

    op.create_table(
        "price",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("material_code", sa.String(length=128), nullable=False),
        sa.Column("supplier_code", sa.String(length=128), nullable=False),
        sa.Column("unit_price", approvals.db.types.Micros(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("quantity", approvals.db.types.Micros(), nullable=False),
        sa.Column("amount", approvals.db.types.Micros(), nullable=False),
        sa.Column("ordered_at", approvals.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("doc_no", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_price")),
        sa.UniqueConstraint("doc_no", "material_code", name=op.f("uq_price_doc_no_material_code")),
    )
    with op.batch_alter_table("price", schema=None) as batch_op:
        batch_op.create_index(
            "ix_price_context",
            ["material_code", "ordered_at", "unit_price", "quantity", "amount", "supplier_code"],
            unique=False,
        )

    op.create_table(
        "revision",
        sa.Column("approval_id", sa.String(length=32), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("document", approvals.db.types.JsonText(), nullable=False),
        sa.Column("instance_id", sa.String(length=80), nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("decided_at", approvals.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("approvers", approvals.db.types.JsonText(), nullable=True),
        sa.Column("erp_ref", sa.String(length=200), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", approvals.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", approvals.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["approval_id"], ["approval.id"], name=op.f("fk_revision_approval_id")
        ),
        sa.PrimaryKeyConstraint("approval_id", "revision", name=op.f("pk_revision")),
        sa.UniqueConstraint("instance_id", name=op.f("uq_revision_instance_id")),
    )
    with op.batch_alter_table("revision", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_revision_state"), ["state"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("revision", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_revision_state"))

    op.drop_table("revision")
    with op.batch_alter_table("price", schema=None) as batch_op:
        batch_op.drop_index("ix_price_context")

    op.drop_table("price")
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_index("ix_job_status_run_after")
        batch_op.drop_index("ix_job_approval_id")

    op.drop_table("job")
    op.drop_table("inbox")
    op.drop_table("erp_event")
    op.drop_table("early_decision")
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_approval_id")

    op.drop_table("audit")
    op.drop_table("approval")
