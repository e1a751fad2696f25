"""Reminder rows: what is waiting for approvers, and the claims that keep each message to one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.db.tables import approval, audit, reminder, revision
from approvals.db.types import UtcDateTime
from approvals.models import DocType
from approvals.states import State

_IN_CHUNK = 500
"""Ids per IN list: SQLite builds without a large variable limit allow 999."""

ClaimKey = tuple[str, int, str]
"""(subject, revision, level): one message that goes out once."""


@dataclass(frozen=True)
class Waiting:
    """A revision waiting for its approvers, and since when."""

    approval_id: str
    revision: int
    doc_type: DocType
    doc_no: str
    document: dict[str, Any]
    instance_id: str
    pending_since: dt.datetime


async def waiting(
    conn: AsyncConnection,
    cutoff: dt.datetime,
    unclaimed: Mapping[str, dt.datetime] | None = None,
) -> list[Waiting]:
    """Pending revisions with an instance, waiting since `cutoff` or before, oldest first.

    With `unclaimed` (level -> its own cutoff), only revisions for which some level is due and
    not yet claimed. Both filters run in SQL: a tick reads, and parses the documents of, only
    what it may send, not every pending revision (100,000 pending documents held 530 MB).
    """
    # Pending since the instance was raised (the audit's move to `pending`), not since the ERP
    # event: a revision that waited a day for DingTalk to come back has not waited for people.
    raised = (
        select(func.max(audit.c.at))
        .where(
            audit.c.approval_id == revision.c.approval_id,
            audit.c.revision == revision.c.revision,
            audit.c.to_state == State.PENDING.value,
        )
        .scalar_subquery()
    )
    since = func.coalesce(raised, revision.c.created_at, type_=UtcDateTime)
    query = (
        select(
            revision.c.approval_id,
            revision.c.revision,
            approval.c.doc_type,
            approval.c.doc_no,
            revision.c.document,
            revision.c.instance_id,
            since,
        )
        .join_from(revision, approval, revision.c.approval_id == approval.c.id)
        .where(
            revision.c.state == State.PENDING.value,
            revision.c.instance_id.is_not(None),
            # Pending since no earlier than received: this first test is the cheap one.
            revision.c.created_at <= cutoff,
            since <= cutoff,
        )
    )
    if unclaimed:
        query = query.where(
            or_(
                *(
                    and_(since <= level_cutoff, ~_claimed(level))
                    for level, level_cutoff in unclaimed.items()
                )
            )
        )
    rows = [
        Waiting(row[0], row[1], DocType(row[2]), row[3], row[4], row[5], row[6])
        for row in await conn.execute(query)
    ]
    return sorted(rows, key=lambda w: (w.pending_since, w.approval_id))


def _claimed(level: str) -> Any:
    """Whether the revision in the enclosing query has its claim for `level`."""
    return exists().where(
        reminder.c.subject == revision.c.approval_id,
        reminder.c.revision == revision.c.revision,
        reminder.c.level == level,
    )


async def claims_of(conn: AsyncConnection, approval_ids: Iterable[str]) -> set[ClaimKey]:
    """Claims already taken for these approvals."""
    ids = sorted(set(approval_ids))
    taken: set[ClaimKey] = set()
    for start in range(0, len(ids), _IN_CHUNK):
        query = select(reminder.c.subject, reminder.c.revision, reminder.c.level).where(
            reminder.c.subject.in_(ids[start : start + _IN_CHUNK])
        )
        taken |= {(row[0], row[1], row[2]) for row in await conn.execute(query)}
    return taken


async def claim(conn: AsyncConnection, key: ClaimKey, now: dt.datetime) -> bool:
    """Take a message for this transaction; False when it was taken before (by anyone)."""
    subject, rev, level = key
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    # A concurrent claimer of the same key waits for our commit, then inserts nothing.
    stmt = (
        dialect.insert(reminder)
        .values(subject=subject, revision=rev, level=level, at=now)
        .on_conflict_do_nothing()
        .returning(reminder.c.level)
    )
    return (await conn.execute(stmt)).first() is not None


async def claim_many(
    conn: AsyncConnection, keys: Iterable[ClaimKey], now: dt.datetime
) -> list[ClaimKey]:
    """Take several messages; the ones this transaction won, in key order."""
    # Sorted, so two replicas claiming overlapping sets wait on each other instead of deadlocking.
    return [key for key in sorted(set(keys)) if await claim(conn, key, now)]


async def release(conn: AsyncConnection, key: ClaimKey) -> None:
    """Give a claim back, so a later tick may send the message after all (deferral)."""
    subject, rev, level = key
    await conn.execute(
        delete(reminder).where(
            reminder.c.subject == subject, reminder.c.revision == rev, reminder.c.level == level
        )
    )


async def release_before(conn: AsyncConnection, subject: str, level: str, rev: int) -> None:
    """Forget the claims of `subject` and `level` below revision `rev` (old scheduler ticks)."""
    await conn.execute(
        delete(reminder).where(
            reminder.c.subject == subject, reminder.c.level == level, reminder.c.revision < rev
        )
    )


async def is_pending(conn: AsyncConnection, approval_id: str, rev: int) -> bool:
    """Whether a revision is still waiting for a decision."""
    query = select(revision.c.state).where(
        revision.c.approval_id == approval_id, revision.c.revision == rev
    )
    return (await conn.execute(query)).scalar() == State.PENDING.value
