"""Metered calls add up per API and month, on both databases."""

from __future__ import annotations

from approvals.db import meter
from approvals.db.engine import Database
from approvals.db.meter import CallCounts


async def test_counts_accumulate_by_api_and_month(db: Database) -> None:
    async with db.write() as conn:
        await meter.add(conn, {("create", "2026-11-01"): CallCounts(3, 1, 0)})
        await meter.add(
            conn,
            {("create", "2026-11-01"): CallCounts(2, 0, 1), ("get", "2026-11-30"): CallCounts(5)},
        )
        await meter.add(conn, {("create", "2026-12-01"): CallCounts(7)})
    async with db.read() as conn:
        november = await meter.month(conn, "2026-11")
        december = await meter.month(conn, "2026-12")
    assert november == {"create": CallCounts(5, 1, 1), "get": CallCounts(5, 0, 0)}
    assert december == {"create": CallCounts(7, 0, 0)}
    assert CallCounts(1, 2, 3) + CallCounts(1, 1, 1) == CallCounts(2, 3, 4)
