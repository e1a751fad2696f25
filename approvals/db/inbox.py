"""Inbound approval-system events: deduplication by identity, and decisions held for later."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, insert, select
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


async def hold(
    conn: AsyncConnection, instance_id: str, report: dict[str, Any], now: dt.datetime
) -> None:
    """Keep the first decision heard for an instance we have not recorded (decided only once)."""
    values = {"instance_id": instance_id, "report": report, "received_at": now}
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    await conn.execute(dialect.insert(early_decision).values(values).on_conflict_do_nothing())


async def take_held(conn: AsyncConnection, instance_id: str) -> dict[str, Any] | None:
    """Remove and return the decision held for an instance, if any."""
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
