"""`Database.write_sync`: one synchronous transaction, on SQLite's writer thread or via run_sync."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, insert, select

from approvals.config import DatabaseConfig
from approvals.db.engine import Database
from approvals.db.tables import erp_event
from tests import dbutil


def _row(event_id: str) -> dict[str, object]:
    now = dt.datetime.now(dt.UTC)
    return {
        "event_id": event_id,
        "type": "purchase_order.submitted",
        "approval_id": "a-1",
        "revision": 1,
        "occurred_at": now,
        "received_at": now,
    }


async def _count(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(erp_event))).scalar_one())


async def test_commits_on_return_and_reports_the_result(db: Database) -> None:
    def write(conn: Connection) -> str:
        conn.execute(insert(erp_event), [_row("e-1"), _row("e-2")])
        return threading.current_thread().name

    thread = await db.write_sync(write)

    assert await _count(db) == 2
    # On a SQLite file the transaction ran on the writer thread, not the event loop's.
    assert thread.startswith("sqlite-writer") == db.is_sqlite


async def test_rolls_back_when_the_function_raises(db: Database) -> None:
    def write(conn: Connection) -> None:
        conn.execute(insert(erp_event), [_row("e-1")])
        raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        await db.write_sync(write)

    assert await _count(db) == 0


async def test_sqlite_writes_are_serialized_with_the_async_writers(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """Both writers take the same lock: interleaved, every row lands and none is lost."""
    url = dbutil.copy_sqlite(sqlite_template, tmp_path / "bridge.db")
    db = Database.from_config(DatabaseConfig(url=url))

    async def async_write(n: int) -> None:
        async with db.write() as conn:
            await conn.execute(insert(erp_event), [_row(f"async-{n}")])

    async def sync_write(n: int) -> None:
        await db.write_sync(lambda conn: conn.execute(insert(erp_event), [_row(f"sync-{n}")]))

    try:
        await asyncio.gather(*(f(n) for n in range(20) for f in (async_write, sync_write)))
        assert await _count(db) == 40
    finally:
        await db.dispose()


async def test_sqlite_gives_up_waiting_for_its_turn_after_lock_wait_s(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """`lock_wait_s` bounds the wait behind the process's other writers; nothing is written."""
    url = dbutil.copy_sqlite(sqlite_template, tmp_path / "bridge.db")
    db = Database.from_config(DatabaseConfig(url=url))
    held, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with db.write():
            held.set()
            await release.wait()

    try:
        task = asyncio.create_task(holder())
        await held.wait()
        with pytest.raises(TimeoutError, match="no turn to write"):
            await db.write_sync(
                lambda conn: conn.execute(insert(erp_event), [_row("late")]), lock_wait_s=0.1
            )
        release.set()
        await task
        # The turn was not taken by the one that gave up: the next writer gets it at once.
        await db.write_sync(lambda conn: conn.execute(insert(erp_event), [_row("next")]), 0.1)
        assert await _count(db) == 1
    finally:
        await db.dispose()
