"""Approval, revision, event and audit rows: reads, bulk writes and compare-and-set moves."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.db.tables import approval, audit, erp_event, revision
from approvals.models import DocType
from approvals.rules import DocView
from approvals.states import OPEN_STATES, State, transition

# One line per state transition (with approval id and document number), for operators.
transitions = logging.getLogger("approvals.transitions")


@dataclass(frozen=True)
class RevisionRow:
    """One revision with its approval's identity."""

    approval_id: str
    doc_type: DocType
    doc_no: str
    revision: int
    state: State
    document: dict[str, Any]
    instance_id: str | None
    decision: str | None
    decided_at: dt.datetime | None
    approvers: list[dict[str, Any]] | None
    erp_ref: str | None
    last_error: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


_REVISION_COLUMNS = (
    approval.c.id,
    approval.c.doc_type,
    approval.c.doc_no,
    revision.c.revision,
    revision.c.state,
    revision.c.document,
    revision.c.instance_id,
    revision.c.decision,
    revision.c.decided_at,
    revision.c.approvers,
    revision.c.erp_ref,
    revision.c.last_error,
    revision.c.created_at,
    revision.c.updated_at,
)


def _revision_row(row: Any) -> RevisionRow:
    return RevisionRow(row[0], DocType(row[1]), row[2], row[3], State(row[4]), *row[5:])


def revision_query() -> Any:
    """SELECT of `RevisionRow` columns; add WHERE clauses."""
    return select(*_REVISION_COLUMNS).join_from(
        revision, approval, revision.c.approval_id == approval.c.id
    )


async def get_revision(conn: AsyncConnection, approval_id: str, rev: int) -> RevisionRow | None:
    """One revision, or None."""
    query = revision_query().where(
        revision.c.approval_id == approval_id, revision.c.revision == rev
    )
    row = (await conn.execute(query)).first()
    return None if row is None else _revision_row(row)


async def find_by_instance(conn: AsyncConnection, instance_id: str) -> RevisionRow | None:
    """The revision an approval instance was raised for, or None."""
    row = (
        await conn.execute(revision_query().where(revision.c.instance_id == instance_id))
    ).first()
    return None if row is None else _revision_row(row)


async def revisions_of(conn: AsyncConnection, approval_id_or_doc_no: str) -> list[RevisionRow]:
    """Every revision of the approval named by id or document number, newest first."""
    query = revision_query().where(
        or_(approval.c.id == approval_id_or_doc_no, approval.c.doc_no == approval_id_or_doc_no)
    )
    rows = (await conn.execute(query.order_by(revision.c.revision.desc()))).all()
    return [_revision_row(row) for row in rows]


def load_views(
    conn: Connection, doc_nos: Sequence[str], fold_keys: Sequence[str], lock: bool
) -> tuple[dict[str, DocView], dict[str, DocView]]:
    """Current views of purchase orders by doc_no and of open replenishment needs by fold key."""
    if not doc_nos and not fold_keys:
        return {}, {}
    query = (
        select(
            approval.c.id,
            approval.c.doc_type,
            approval.c.doc_no,
            approval.c.current_revision,
            revision.c.state,
            approval.c.open_fold_key,
        )
        .join_from(
            approval,
            revision,
            and_(
                revision.c.approval_id == approval.c.id,
                revision.c.revision == approval.c.current_revision,
            ),
        )
        .where(
            or_(
                and_(
                    approval.c.doc_type == DocType.PURCHASE_ORDER.value,
                    approval.c.doc_no.in_(doc_nos),
                ),
                approval.c.open_fold_key.in_(fold_keys),
            )
        )
    )
    if lock:
        # Replicas on PostgreSQL: the second writer for a document waits for the first.
        query = query.with_for_update(of=approval)
    by_doc: dict[str, DocView] = {}
    by_fold: dict[str, DocView] = {}
    for row in conn.execute(query):
        view = DocView(row[0], DocType(row[1]), row[2], row[3], State(row[4]), row[5])
        if view.open_fold_key is not None:
            by_fold[view.open_fold_key] = view
        else:
            by_doc[view.doc_no] = view
    return by_doc, by_fold


def seen_events(conn: Connection, event_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
    """ERP event ids already recorded, with the approval and revision they led to."""
    query = select(erp_event.c.event_id, erp_event.c.approval_id, erp_event.c.revision).where(
        erp_event.c.event_id.in_(event_ids)
    )
    return {row[0]: (row[1], row[2]) for row in conn.execute(query)}


def record_events(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Remember ERP events by id (their idempotency key)."""
    if rows:
        conn.execute(insert(erp_event), list(rows))


def audit_row(
    approval_id: str,
    rev: int | None,
    now: dt.datetime,
    actor: str,
    action: str,
    from_state: State | None = None,
    to_state: State | None = None,
    detail: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One append-only audit entry."""
    return {
        "approval_id": approval_id,
        "revision": rev,
        "at": now,
        "actor": actor,
        "action": action,
        "from_state": None if from_state is None else from_state.value,
        "to_state": None if to_state is None else to_state.value,
        "detail": dict(detail) if detail else None,
    }


async def append_audit(conn: AsyncConnection, rows: Iterable[Mapping[str, Any]]) -> None:
    """Append audit entries."""
    batch = list(rows)
    if batch:
        await conn.run_sync(append_audit_sync, batch)


def append_audit_sync(conn: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
    """`append_audit` inside a synchronous transaction (`Database.write_sync`)."""
    batch = list(rows)
    if batch:
        conn.execute(insert(audit), batch)


async def move(
    conn: AsyncConnection,
    approval_id: str,
    rev: int,
    from_state: State,
    trigger: Any,
    now: dt.datetime,
    actor: str,
    detail: Mapping[str, Any] | None = None,
    **fields: Any,
) -> bool:
    """Compare-and-set a revision's state by a trigger; False when it was no longer `from_state`."""
    return await conn.run_sync(
        move_sync, approval_id, rev, from_state, trigger, now, actor, detail, **fields
    )


def move_sync(
    conn: Connection,
    /,
    approval_id: str,
    rev: int,
    from_state: State,
    trigger: Any,
    now: dt.datetime,
    actor: str,
    detail: Mapping[str, Any] | None = None,
    **fields: Any,
) -> bool:
    """`move` inside a synchronous transaction (`Database.write_sync`)."""
    to_state = transition(from_state, trigger)
    # RETURNING the document number (a primary-key lookup) names it in the transition log line
    # without a second round trip; no row back means the compare-and-set lost.
    doc_no = select(approval.c.doc_no).where(approval.c.id == approval_id).scalar_subquery()
    moved = conn.execute(
        update(revision)
        .where(
            revision.c.approval_id == approval_id,
            revision.c.revision == rev,
            revision.c.state == from_state.value,
        )
        .values(state=to_state.value, updated_at=now, **fields)
        .returning(doc_no)
    ).first()
    if moved is None:
        return False
    if from_state in OPEN_STATES and to_state not in OPEN_STATES:
        # The need is no longer open: a later below-safety event raises a new approval.
        conn.execute(
            update(approval)
            .where(approval.c.id == approval_id, approval.c.open_fold_key.is_not(None))
            .values(open_fold_key=None, updated_at=now)
        )
    action = trigger.value
    append_audit_sync(
        conn, [audit_row(approval_id, rev, now, actor, action, from_state, to_state, detail)]
    )
    _log_transition(approval_id, moved[0], rev, from_state, to_state, action, actor)
    return True


_LINE = (
    "%(doc_no)s r%(revision)d (approval %(approval_id)s): "
    "%(from_state)s -> %(to_state)s [%(trigger)s by %(actor)s]"
)


def _log_transition(
    approval_id: str,
    doc_no: str | None,
    rev: int,
    from_state: str,
    to_state: str,
    action: str,
    actor: str,
) -> None:
    """The transition's log line, written inside its transaction (the audit row is the record)."""
    if transitions.isEnabledFor(logging.INFO):
        fields = {
            "approval_id": approval_id,
            "doc_no": doc_no,
            "revision": rev,
            "from_state": from_state,
            "to_state": to_state,
            "trigger": action,
            "actor": actor,
        }
        transitions.info(_LINE, fields, extra=fields)


async def set_instance(
    conn: AsyncConnection, approval_id: str, rev: int, instance_id: str, now: dt.datetime
) -> None:
    """Record an instance id on a revision, whatever its state."""
    await conn.execute(
        update(revision)
        .where(revision.c.approval_id == approval_id, revision.c.revision == rev)
        .values(instance_id=instance_id, updated_at=now)
    )


async def set_approvers(
    conn: AsyncConnection,
    approval_id: str,
    rev: int,
    approvers: list[dict[str, Any]],
    now: dt.datetime,
) -> None:
    """Replace the approvers' actions recorded on a revision."""
    await conn.execute(
        update(revision)
        .where(revision.c.approval_id == approval_id, revision.c.revision == rev)
        .values(approvers=approvers, updated_at=now)
    )


async def instance_times(
    conn: AsyncConnection, doc_type: DocType, since: dt.datetime
) -> list[dt.datetime]:
    """When each revision of a document type that has an instance was received, since a time."""
    query = (
        select(revision.c.created_at)
        .join_from(revision, approval, revision.c.approval_id == approval.c.id)
        .where(
            approval.c.doc_type == doc_type.value,
            revision.c.instance_id.is_not(None),
            revision.c.created_at >= since,
        )
        .order_by(revision.c.created_at)
    )
    return list((await conn.execute(query)).scalars())


async def pending_instances(conn: AsyncConnection) -> list[tuple[str, DocType, dt.datetime]]:
    """(instance id, document type, received at) of every revision waiting for a decision."""
    query = (
        select(revision.c.instance_id, approval.c.doc_type, revision.c.created_at)
        .join_from(revision, approval, revision.c.approval_id == approval.c.id)
        .where(revision.c.state == State.PENDING.value, revision.c.instance_id.is_not(None))
    )
    return [(row[0], DocType(row[1]), row[2]) for row in await conn.execute(query)]
