"""Queries for chat commands and the dashboard: what stands where, what waits, what failed."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.db import repo
from approvals.db.jobs import PARKED
from approvals.db.tables import approval, audit, job, revision
from approvals.models import ApproverAction, Decision, DocType
from approvals.readmodels import (
    AuditEntry,
    DayCount,
    FailedItem,
    FailureKind,
    PendingItem,
    RevisionView,
    StatsView,
    StatusView,
)
from approvals.rules import CREATE_INSTANCE
from approvals.states import OPEN_STATES, State
from approvals.writeback import WRITE_BACK

AUDIT_SHOWN = 8


async def status(conn: AsyncConnection, doc_no_or_approval_id: str) -> StatusView | None:
    """An approval by document number, approval id or DingTalk instance id; None if unknown."""
    key = doc_no_or_approval_id.strip()
    query = select(
        approval.c.id, approval.c.doc_type, approval.c.doc_no, approval.c.current_revision
    ).add_columns(approval.c.created_at)
    by_instance = select(revision.c.approval_id).where(revision.c.instance_id == key)
    found = (
        await conn.execute(
            query.where(
                or_(approval.c.id == key, approval.c.doc_no == key, approval.c.id.in_(by_instance))
            ).order_by(approval.c.updated_at.desc())
        )
    ).first()
    if found is None:
        return None
    approval_id = found[0]
    rows = [r for r in await repo.revisions_of(conn, approval_id) if r.approval_id == approval_id]
    entries = (
        await conn.execute(
            select(audit.c.at, audit.c.revision, audit.c.actor, audit.c.action)
            .add_columns(audit.c.from_state, audit.c.to_state, audit.c.detail)
            .where(audit.c.approval_id == approval_id)
            .order_by(audit.c.id.desc())
            .limit(AUDIT_SHOWN)
        )
    ).all()
    return StatusView(
        approval_id=approval_id,
        doc_type=DocType(found[1]),
        doc_no=found[2],
        current_revision=found[3],
        created_at=found[4],
        revisions=tuple(_revision_view(r) for r in rows),
        recent_audit=tuple(
            AuditEntry(e[0], e[1], e[2], e[3], _state(e[4]), _state(e[5]), e[6])
            for e in reversed(entries)
        ),
    )


async def pending(conn: AsyncConnection, now: dt.datetime) -> list[PendingItem]:
    """Approvals waiting for a decision, oldest first."""
    return await _open(conn, now, None)


async def stuck(
    conn: AsyncConnection, now: dt.datetime, older_than: dt.timedelta
) -> list[PendingItem]:
    """Approvals waiting for a decision for at least `older_than`, oldest first."""
    return await _open(conn, now, now - older_than)


async def failed(conn: AsyncConnection) -> list[FailedItem]:
    """Failed revisions, stale current revisions and parked jobs; newest first."""
    is_current = revision.c.revision == approval.c.current_revision
    rows = await conn.execute(
        select(approval.c.id, approval.c.doc_type, approval.c.doc_no, revision.c.revision)
        .add_columns(
            revision.c.state, revision.c.decision, revision.c.last_error, revision.c.updated_at
        )
        .join_from(revision, approval, revision.c.approval_id == approval.c.id)
        .where(
            or_(
                revision.c.state == State.FAILED.value,
                and_(revision.c.state == State.STALE.value, is_current),
            )
        )
    )
    parked = (
        await conn.execute(
            select(job.c.id, job.c.kind, job.c.approval_id, job.c.revision, job.c.attempts)
            .add_columns(job.c.last_error, job.c.updated_at, approval.c.doc_type, approval.c.doc_no)
            .join_from(job, approval, job.c.approval_id == approval.c.id, isouter=True)
            .where(job.c.status == PARKED)
        )
    ).all()
    # The job that failed a revision is shown once, on the revision.
    own = {
        (p.approval_id, p.revision): p for p in parked if p.kind in (WRITE_BACK, CREATE_INSTANCE)
    }
    shown: set[int] = set()
    items: list[FailedItem] = []
    for approval_id, doc_type, doc_no, rev, state, decision, error, since in rows:
        kind = FailureKind.WRITE_BACK if decision else FailureKind.SUBMIT
        if state == State.STALE.value:
            kind = FailureKind.STALE
        p = own.get((approval_id, rev))
        parked_job = () if p is None else (p.id, p.kind, p.attempts)
        shown.update(parked_job[:1])
        head = (kind, approval_id, DocType(doc_type), doc_no, rev, error, since)
        items.append(FailedItem(*head, *parked_job))
    for p in parked:
        if p.id not in shown:
            doc = None if p.doc_type is None else DocType(p.doc_type)
            where = (p.approval_id, doc, p.doc_no, p.revision, p.last_error, p.updated_at)
            items.append(FailedItem(FailureKind.JOB, *where, p.id, p.kind, p.attempts))
    return sorted(items, key=lambda i: i.since, reverse=True)


async def stats(conn: AsyncConnection, now: dt.datetime, days: int) -> StatsView:
    """Outcomes over the last `days` days, with exact decision-time percentiles."""
    since = now - dt.timedelta(days=days)
    decided = (
        await conn.execute(
            select(revision.c.decision, revision.c.decided_at, revision.c.created_at).where(
                revision.c.decided_at >= since, revision.c.decided_at <= now
            )
        )
    ).all()
    times = sorted(decided_at - created for _, decided_at, created in decided)
    reached = (
        await conn.execute(
            select(audit.c.action, audit.c.to_state, audit.c.approval_id, audit.c.revision)
            .where(audit.c.at >= since, audit.c.at <= now, audit.c.to_state.is_not(None))
            .distinct()
        )
    ).all()
    counts: dict[str, set[tuple[str, int | None]]] = {}
    for action, to_state, approval_id, rev in reached:
        counts.setdefault(f"{action}>{to_state}", set()).add((approval_id, rev))
        counts.setdefault(f">{to_state}", set()).add((approval_id, rev))
    received = await _count(conn, revision.c.created_at >= since, revision.c.created_at <= now)
    open_now = await _count(conn, revision.c.state.in_([s.value for s in OPEN_STATES]))
    return StatsView(
        since=since,
        until=now,
        received=received,
        approved=sum(d == Decision.APPROVED.value for d, _, _ in decided),
        rejected=sum(d == Decision.REJECTED.value for d, _, _ in decided),
        written_back=len(counts.get(">done", ())),
        cancelled=len(counts.get(">cancelled", ())),
        superseded=len(counts.get(">superseded", ())),
        stale=len(counts.get(">stale", ())),
        write_back_failures=len(counts.get("write_back_failed>failed", ())),
        submit_failures=len(counts.get("submit_failed>failed", ())),
        open_now=open_now,
        median_decision_time=median(times),
        p90_decision_time=percentile(times, 90),
    )


async def decisions_per_day(
    conn: AsyncConnection, now: dt.datetime, days: int, zone: str = "UTC"
) -> list[DayCount]:
    """Approved and rejected per calendar day in `zone`, the last `days` days (today included)."""
    tz = ZoneInfo(zone)
    today = now.astimezone(tz).date()
    first = today - dt.timedelta(days=days - 1)
    start = dt.datetime.combine(first, dt.time(), tz)
    rows = await conn.execute(
        select(revision.c.decision, revision.c.decided_at).where(
            revision.c.decided_at >= start, revision.c.decided_at <= now
        )
    )
    tally = {first + dt.timedelta(days=i): [0, 0] for i in range(days)}
    for decision, decided_at in rows:
        day = tally.get(decided_at.astimezone(tz).date())
        if day is not None:
            day[0 if decision == Decision.APPROVED.value else 1] += 1
    return [DayCount(day, a, r) for day, (a, r) in tally.items()]


def median(values: Sequence[dt.timedelta]) -> dt.timedelta | None:
    """The median of sorted durations; the mean of the middle two for an even count."""
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def percentile(values: Sequence[dt.timedelta], pct: int) -> dt.timedelta | None:
    """Nearest-rank percentile of sorted durations: an observed value, exact."""
    if not values:
        return None
    rank = math.ceil(pct * len(values) / 100)  # integers: no float rounding at the boundaries
    return values[max(rank, 1) - 1]


async def _count(conn: AsyncConnection, *where: Any) -> int:
    return int((await conn.execute(select(func.count()).where(*where))).scalar_one())


async def _open(
    conn: AsyncConnection, now: dt.datetime, received_before: dt.datetime | None
) -> list[PendingItem]:
    query = (
        select(approval.c.id, approval.c.doc_type, approval.c.doc_no, revision.c.revision)
        .add_columns(
            revision.c.state, revision.c.instance_id, revision.c.created_at, revision.c.document
        )
        .join_from(revision, approval, revision.c.approval_id == approval.c.id)
        .where(revision.c.state.in_([s.value for s in OPEN_STATES]))
        .order_by(revision.c.created_at, approval.c.id)
    )
    if received_before is not None:
        query = query.where(revision.c.created_at <= received_before)
    items = []
    for r in await conn.execute(query):
        kind = DocType(r.doc_type)
        head = (r.id, kind, r.doc_no, r.revision, State(r.state), r.instance_id, r.created_at)
        items.append(PendingItem(*head, now - r.created_at, *_summary(kind, r.document or {})))
    return items


def _summary(kind: DocType, doc: dict[str, Any]) -> tuple[str, str, Decimal | None, str | None]:
    """(subject, requester, amount, currency) from a stored document, tolerant of gaps."""

    def name(part: Any, *keys: str) -> str:
        if not isinstance(part, dict):
            return ""
        return next((str(part[k]) for k in keys if part.get(k)), "")

    if kind is DocType.PURCHASE_ORDER:
        buyer, total = name(doc.get("buyer"), "name", "erp_user"), _decimal(doc.get("total_amount"))
        return name(doc.get("supplier"), "name", "code"), buyer, total, doc.get("currency")
    material = str(doc.get("material_name") or doc.get("material_code") or "")
    subject = f"{material} @ {doc['warehouse']}" if doc.get("warehouse") else material
    requester = name(doc.get("requester"), "name", "erp_user")
    return subject, requester, _decimal(doc.get("reorder_qty")), None


def _decimal(value: Any) -> Decimal | None:
    try:
        return None if value is None else Decimal(str(value))
    except InvalidOperation:
        return None


def _state(value: str | None) -> State | None:
    return None if value is None else State(value)


def _revision_view(row: repo.RevisionRow) -> RevisionView:
    return RevisionView(
        revision=row.revision,
        state=row.state,
        instance_id=row.instance_id,
        decision=None if row.decision is None else Decision(row.decision),
        decided_at=row.decided_at,
        approvers=tuple(ApproverAction.model_validate(a) for a in row.approvers or ()),
        received_at=row.created_at,
        updated_at=row.updated_at,
        erp_ref=row.erp_ref,
        last_error=row.last_error,
    )
