"""The group-commit writer: batches, and survives what would otherwise stop it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from approvals import intake as intake_module
from approvals import rules
from approvals.config import DatabaseConfig, IntakeConfig
from approvals.db.engine import Database
from approvals.errors import Overloaded, StorageUnavailable
from approvals.intake import IntakeService
from approvals.models import ErpEvent
from approvals.ports import SystemClock
from approvals.rules import Outcome
from tests import dbutil
from tests.harness import event, order
from tests.reliability.faults import PG_TABLES, postgres_locked, sqlite_locked

EVENTS = TypeAdapter[Any](ErpEvent)


def po(doc_no: str) -> Any:
    return EVENTS.validate_python(event(f"e-{doc_no}", "purchase_order.submitted", order(doc_no)))


async def test_a_bug_fails_its_batch_but_not_the_writer(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = rules.decide

    def fragile(event: Any, view: Any, new_id: Any) -> Any:
        if event.data.doc_no == "PO-BUG":
            raise RuntimeError("a bug in the rules")
        return real(event, view, new_id)

    monkeypatch.setattr(intake_module, "decide", fragile)
    service = IntakeService(db, SystemClock(), IntakeConfig())
    async with service.running():
        with pytest.raises(StorageUnavailable):
            await service.submit(po("PO-BUG"))
        after = await asyncio.wait_for(service.submit(po("PO-OK")), 5)
    assert after.outcome is Outcome.ACCEPTED


async def test_a_stopped_intake_refuses_instead_of_hanging(db: Database) -> None:
    service = IntakeService(db, SystemClock(), IntakeConfig())
    async with service.running():
        assert (await service.submit(po("PO-1"))).outcome is Outcome.ACCEPTED
    with pytest.raises(Overloaded):
        await service.submit(po("PO-2"))


async def test_a_locked_database_is_refused_within_the_lock_timeout(db: Database) -> None:
    """Another connection holds the lock (SQLite's write lock, PostgreSQL table locks): the
    event is refused after `database.lock_timeout_s`, not held for as long as the lock, and
    taken once it is released."""
    url = db.engine.url.render_as_string(hide_password=False)
    quick = Database.from_config(DatabaseConfig(url=url, lock_timeout_s=0.3))
    locked = sqlite_locked(url) if db.is_sqlite else postgres_locked(url, PG_TABLES)
    service = IntakeService(quick, SystemClock(), IntakeConfig())
    try:
        async with service.running():
            async with locked:
                started = time.monotonic()
                with pytest.raises(StorageUnavailable):
                    await asyncio.wait_for(service.submit(po("PO-LOCKED")), 10)
                took = time.monotonic() - started
            after = await asyncio.wait_for(service.submit(po("PO-LOCKED")), 5)
    finally:
        await quick.dispose()
    assert took < 1.5, f"refused after {took:.2f} s"
    assert after.outcome is Outcome.ACCEPTED, "something of the refused event was kept"


async def test_intake_does_not_queue_behind_every_other_sqlite_writer(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """While SQLite is locked each writer of the process waits out its busy timeout in turn;
    an event gives up after one lock timeout waiting for its turn, not after all of theirs."""
    url = dbutil.copy_sqlite(sqlite_template, tmp_path / "bridge.db")
    quick = Database.from_config(DatabaseConfig(url=url, lock_timeout_s=0.3))
    service = IntakeService(quick, SystemClock(), IntakeConfig())
    held = asyncio.Event()

    async def slow_writer() -> None:
        async with quick.write():
            held.set()
            await asyncio.sleep(3)

    try:
        async with service.running():
            writer = asyncio.create_task(slow_writer())
            await held.wait()
            started = time.monotonic()
            with pytest.raises(StorageUnavailable):
                await asyncio.wait_for(service.submit(po("PO-WAITING")), 10)
            took = time.monotonic() - started
            await writer
            after = await asyncio.wait_for(service.submit(po("PO-WAITING")), 5)
    finally:
        await quick.dispose()
    assert took < 1.0, f"refused after {took:.2f} s"
    assert after.outcome is Outcome.ACCEPTED
