"""Metered calls to the approval system, by API and day, for the monthly budget."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.db.tables import api_call


@dataclass(frozen=True)
class CallCounts:
    """Calls made, of which throttled and failed."""

    calls: int = 0
    throttled: int = 0
    failed: int = 0

    def __add__(self, other: CallCounts) -> CallCounts:
        return CallCounts(
            self.calls + other.calls, self.throttled + other.throttled, self.failed + other.failed
        )


async def add(conn: AsyncConnection, counts: Mapping[tuple[str, str], CallCounts]) -> None:
    """Add counts keyed by (api, day as YYYY-MM-DD) to what is stored."""
    if not counts:
        return
    rows = [
        {"api": api, "day": day, "calls": c.calls, "throttled": c.throttled, "failed": c.failed}
        for (api, day), c in sorted(counts.items())
    ]
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = dialect.insert(api_call)
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[api_call.c.api, api_call.c.day],
            set_={
                "calls": api_call.c.calls + stmt.excluded.calls,
                "throttled": api_call.c.throttled + stmt.excluded.throttled,
                "failed": api_call.c.failed + stmt.excluded.failed,
            },
        ),
        rows,
    )


async def month(conn: AsyncConnection, month: str) -> dict[str, CallCounts]:
    """Counts per API for a month given as YYYY-MM."""
    query = (
        select(
            api_call.c.api,
            func.sum(api_call.c.calls),
            func.sum(api_call.c.throttled),
            func.sum(api_call.c.failed),
        )
        .where(api_call.c.day.like(f"{month}-%"))
        .group_by(api_call.c.api)
    )
    return {
        row[0]: CallCounts(int(row[1]), int(row[2]), int(row[3]))
        for row in await conn.execute(query)
    }
