"""The schema, as SQLAlchemy Core tables (the migrations are written from these)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from approvals.db.types import JsonText, Micros, UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments INTEGER PRIMARY KEY, not BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")

approval = Table(
    "approval",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("doc_type", String(32), nullable=False),
    Column("doc_no", String(128), nullable=False),
    Column("current_revision", Integer, nullable=False),
    # The fold key while a replenishment need is open; NULL otherwise. Unique, so two replicas
    # can never open two approvals for one material and warehouse.
    Column("open_fold_key", String(300), nullable=True, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("doc_type", "doc_no"),
)

revision = Table(
    "revision",
    metadata,
    Column("approval_id", String(32), primary_key=True),
    Column("revision", Integer, primary_key=True),
    Column("state", String(20), nullable=False, index=True),
    Column("document", JsonText, nullable=False),
    Column("instance_id", String(80), nullable=True, unique=True),
    Column("decision", String(16), nullable=True),
    Column("decided_at", UtcDateTime, nullable=True),
    Column("approvers", JsonText, nullable=True),
    Column("erp_ref", String(200), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    ForeignKeyConstraint(["approval_id"], ["approval.id"]),
)

erp_event = Table(
    "erp_event",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("type", String(40), nullable=False),
    Column("approval_id", String(32), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
)

inbox = Table(
    "inbox",
    metadata,
    Column("event_key", String(200), primary_key=True),
    Column("source", String(40), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
)

# Decisions heard for an instance id before our create call's result was committed (an instance
# that finished at once, or a fast approver). Applied when the instance id is recorded.
early_decision = Table(
    "early_decision",
    metadata,
    Column("instance_id", String(80), primary_key=True),
    Column("report", JsonText, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
)

job = Table(
    "job",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("kind", String(40), nullable=False),
    Column("approval_id", String(32), nullable=True),
    Column("revision", Integer, nullable=True),
    Column("payload", JsonText, nullable=False),
    # ready -> running -> deleted on success, or back to ready (retry), or parked.
    Column("status", String(16), nullable=False),
    # Runs started; above 1 means an earlier run may have reached the outside world.
    Column("attempts", Integer, nullable=False, default=0),
    # Not before this time. For a running job it is the end of its lease: a job whose worker
    # died becomes claimable again when the lease runs out, with no separate sweeper.
    Column("run_after", UtcDateTime, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_job_status_run_after", "status", "run_after"),
    Index("ix_job_approval_id", "approval_id", "revision"),
)

audit = Table(
    "audit",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("approval_id", String(32), nullable=False),
    Column("revision", Integer, nullable=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(40), nullable=False),
    Column("from_state", String(20), nullable=True),
    Column("to_state", String(20), nullable=True),
    Column("detail", JsonText, nullable=True),
    Index("ix_audit_approval_id", "approval_id", "id"),
)

price = Table(
    "price",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("material_code", String(128), nullable=False),
    Column("supplier_code", String(128), nullable=False),
    Column("unit_price", Micros, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("quantity", Micros, nullable=False),
    # unit_price * quantity, rounded to the money scale: the weight of the average.
    Column("amount", Micros, nullable=False),
    Column("ordered_at", UtcDateTime, nullable=False),
    Column("doc_no", String(128), nullable=False),
    Column("source", String(16), nullable=False),
    UniqueConstraint("doc_no", "material_code"),
    # Covering index: the price context reads only this index, never the table.
    Index(
        "ix_price_context",
        "material_code",
        "ordered_at",
        "unit_price",
        "quantity",
        "amount",
        "supplier_code",
    ),
)

# DingTalk calls by API and day, for the monthly budget (token calls are not metered by DingTalk).
api_call = Table(
    "api_call",
    metadata,
    Column("api", String(80), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("calls", BigInteger, nullable=False, default=0),
    Column("throttled", BigInteger, nullable=False, default=0),
    Column("failed", BigInteger, nullable=False, default=0),
)

# Messages that must go out once, whatever the replicas, retries and restarts: a row is inserted
# in the transaction that enqueues its message, and the primary key refuses a second one.
# `subject` is the approval id for reminders, escalations and outcomes (with its revision), or a
# period for one-off messages: `digest:2026-11-25` (revision 0), `budget:2026-11` (revision = %).
reminder = Table(
    "reminder",
    metadata,
    Column("subject", String(40), primary_key=True),
    Column("revision", Integer, primary_key=True),
    Column("level", String(16), primary_key=True),
    Column("at", UtcDateTime, nullable=False),
)

# Where the poller of a native ERP has read up to, per feed ("orders", "prices"): the last
# modification time and document key it has handled.
erp_cursor = Table(
    "erp_cursor",
    metadata,
    Column("source", String(40), primary_key=True),
    Column("feed", String(20), primary_key=True),
    Column("at", UtcDateTime, nullable=False),
    Column("key", String(200), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# What the poller last told intake about each ERP document (or each material and warehouse's
# stock): the revision it numbered, a digest of the content, and the status it saw. A change of
# digest is a new revision; the event id is derived from both, so a poll repeated after a crash
# sends the same event again and intake answers it as a duplicate.
erp_document = Table(
    "erp_document",
    metadata,
    Column("source", String(40), primary_key=True),
    Column("key", String(300), primary_key=True),
    Column("doc_no", String(128), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    # The ERP's modification time of what was seen: an older read (a poll that overlapped a
    # write-back) is not taken for news.
    Column("modified", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
