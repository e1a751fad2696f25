"""Inbound approval-system events: deduplication by identity, and decisions held for later."""

from __future__ import annotations

import datetime as dt
import zlib
from typing import Any

from sqlalchemy import delete, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.db.tables import early_decision, inbox


async def first_sighting(
    conn: AsyncConnection, event_key: str, source: str, now: dt.datetime
) -> bool:
    """Record an event's identity; False when it was recorded before (a redelivery)."""
    seen = await conn.execute(select(inbox.c.event_key).where(inbox.c.event_key == event_key))
    if seen.first() is not None:
        return False
    await conn.execute(insert(inbox).values(event_key=event_key, source=source, received_at=now))
    return True


_INSTANCE_LOCKS = 1
"""The advisory-lock class of instance locks (the two-key form keeps them apart from others)."""


async def lock_instance(conn: AsyncConnection, instance_id: str) -> None:
    """Serialise, until commit, the transactions that hold or take a decision for an instance.

    Without it, on PostgreSQL, a decision heard in one replica before the instance is recorded
    and the recording in another can each miss the other's uncommitted row: the decision is
    held for good. SQLite runs one writer at a time, so it needs nothing.
    """
    if conn.dialect.name == "sqlite":
        return
    key = zlib.crc32(instance_id.encode()) - 2**31  # int4
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(:c, :k)"), {"c": _INSTANCE_LOCKS, "k": key}
    )


async def hold(
    conn: AsyncConnection, instance_id: str, report: dict[str, Any], now: dt.datetime
) -> None:
    """Keep the first decision heard for an instance we have not recorded (decided only once)."""
    values = {"instance_id": instance_id, "report": report, "received_at": now}
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    await conn.execute(dialect.insert(early_decision).values(values).on_conflict_do_nothing())


async def take_held(conn: AsyncConnection, instance_id: str) -> dict[str, Any] | None:
    """Remove and return the decision held for an instance, if any."""
    await lock_instance(conn, instance_id)
    row = (
        await conn.execute(
            select(early_decision.c.report).where(early_decision.c.instance_id == instance_id)
        )
    ).first()
    if row is None:
        return None
    await conn.execute(delete(early_decision).where(early_decision.c.instance_id == instance_id))
    report: dict[str, Any] = row[0]
    return report
