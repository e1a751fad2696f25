"""The outbox: durable jobs, claimed safely by several workers and processes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.db.tables import job

READY, RUNNING, PARKED = "ready", "running", "parked"


@dataclass(frozen=True)
class JobRow:
    """One claimed job."""

    id: int
    kind: str
    approval_id: str | None
    revision: int | None
    payload: dict[str, Any]
    attempts: int
    created_at: dt.datetime


JobSpec = tuple[str, str | None, int | None, dict[str, Any]]
"""(kind, approval_id, revision, payload)."""


async def enqueue(conn: AsyncConnection, specs: Sequence[JobSpec], now: dt.datetime) -> None:
    """Add jobs, ready at once; commit them with the state change that asked for them."""
    if specs:
        await conn.run_sync(enqueue_sync, specs, now)


def enqueue_sync(conn: Connection, specs: Sequence[JobSpec], now: dt.datetime) -> None:
    """`enqueue` inside a synchronous transaction (`Database.write_sync`)."""
    if not specs:
        return
    rows = [
        {
            "kind": kind,
            "approval_id": approval_id,
            "revision": rev,
            "payload": payload,
            "status": READY,
            "attempts": 0,
            "run_after": now,
            "created_at": now,
            "updated_at": now,
        }
        for kind, approval_id, rev, payload in specs
    ]
    conn.execute(insert(job), rows)


async def claim(
    conn: AsyncConnection,
    limit: int,
    now: dt.datetime,
    lease: dt.timedelta,
    skip_kinds: Sequence[str] = (),
) -> list[JobRow]:
    """Lease up to `limit` due jobs, none of `skip_kinds`; SKIP LOCKED keeps concurrent claimers
    on PostgreSQL apart."""
    due = select(job.c.id).where(job.c.status.in_((READY, RUNNING)), job.c.run_after <= now)
    if skip_kinds:
        due = due.where(job.c.kind.not_in(skip_kinds))
    due = due.order_by(job.c.run_after, job.c.id).limit(limit).with_for_update(skip_locked=True)
    stmt = (
        update(job)
        .where(job.c.id.in_(due.scalar_subquery()))
        .values(status=RUNNING, attempts=job.c.attempts + 1, run_after=now + lease, updated_at=now)
        .returning(
            job.c.id,
            job.c.kind,
            job.c.approval_id,
            job.c.revision,
            job.c.payload,
            job.c.attempts,
            job.c.created_at,
        )
    )
    rows = (await conn.execute(stmt)).all()
    return sorted((JobRow(*row) for row in rows), key=lambda r: r.id)


async def finish(conn: AsyncConnection, job_id: int) -> None:
    """Remove a job that succeeded."""
    await conn.execute(delete(job).where(job.c.id == job_id))


async def set_payload(conn: AsyncConnection, job_id: int, payload: dict[str, Any]) -> None:
    """Replace a job's payload: what its next attempt needs to know of this one."""
    await conn.execute(update(job).where(job.c.id == job_id).values(payload=payload))


async def reschedule(
    conn: AsyncConnection, job_id: int, at: dt.datetime, error: str, now: dt.datetime
) -> None:
    """Put a failed job back, to run again at `at`."""
    await conn.execute(
        update(job)
        .where(job.c.id == job_id)
        .values(status=READY, run_after=at, last_error=error[:2000], updated_at=now)
    )


async def park(conn: AsyncConnection, job_id: int, error: str, now: dt.datetime) -> None:
    """Stop retrying a job; an admin can retry what it was for."""
    await conn.execute(
        update(job)
        .where(job.c.id == job_id)
        .values(status=PARKED, last_error=error[:2000], updated_at=now)
    )


async def release(conn: AsyncConnection, job_ids: Sequence[int], now: dt.datetime) -> None:
    """Hand unfinished jobs back at once (clean shutdown)."""
    if job_ids:
        await conn.execute(
            update(job)
            .where(job.c.id.in_(job_ids), job.c.status == RUNNING)
            .values(status=READY, run_after=now)
        )


async def release_all(conn: AsyncConnection, now: dt.datetime) -> int:
    """Hand back every running job (single-process SQLite start-up: no one else can own them)."""
    result = await conn.execute(
        update(job).where(job.c.status == RUNNING).values(status=READY, run_after=now)
    )
    return result.rowcount


async def drop_parked(conn: AsyncConnection, approval_id: str, rev: int) -> None:
    """Forget parked jobs of a revision that an admin is retrying."""
    await conn.execute(
        delete(job).where(
            job.c.approval_id == approval_id, job.c.revision == rev, job.c.status == PARKED
        )
    )


async def depth(conn: AsyncConnection) -> tuple[int, dt.datetime | None]:
    """Jobs waiting or running, and the oldest one's creation time."""
    row = (
        await conn.execute(
            select(func.count(), func.min(job.c.created_at)).where(job.c.status != PARKED)
        )
    ).one()
    return int(row[0]), row[1]


async def renew(
    conn: AsyncConnection, leases: Sequence[tuple[int, int]], until: dt.datetime
) -> None:
    """Extend the leases of jobs still running here: (id, attempts) pairs, so that a job another
    claimer took over meanwhile (its attempts moved on) is left alone."""
    for job_id, attempts in leases:
        await conn.execute(
            update(job)
            .where(job.c.id == job_id, job.c.status == RUNNING, job.c.attempts == attempts)
            .values(run_after=until)
        )
