"""Issue 6, storage faults: the database locked or the disk full under a real `approval-bridge run`.

While the fault lasts the webhook answers 503 `overloaded` with Retry-After within a bounded
time and stores nothing, `/healthz` stays 200, and the process stays up; the job runner, the
stream's event recording and the scheduled jobs log and retry. When the fault clears, the ERP's
retried events and the decisions DingTalk redelivers go through, and everything committed
before the fault is still there.

Faults: SQLite locked by another connection (`BEGIN EXCLUSIVE`), a full disk (the process's
RLIMIT_FSIZE lowered to 0 with prlimit: every file write fails with EFBIG, as a full disk fails
them with ENOSPC; Python ignores SIGXFSZ), and PostgreSQL tables locked by another connection
(`LOCK TABLE ... IN ACCESS EXCLUSIVE MODE`).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from approvals.config import DatabaseConfig
from approvals.db.engine import Database
from approvals.db.tables import erp_event
from bot.bench.stack import Stack
from bot.scheduler import Scheduler
from tests import dbutil
from tests.reliability.conftest import Figures, size, span
from tests.reliability.faults import (
    ADMIN,
    PG_TABLES,
    database,
    decide,
    deliver,
    get_status,
    pending,
    postgres_locked,
    revisions,
    sqlite_locked,
    stack_up,
    submit_orders,
    until,
)

LOCK_TIMEOUT_S = 1.0
"""`database.lock_timeout_s` in these tests: how long a write waits for a lock."""
ANSWER_WITHIN_S = 2 * LOCK_TIMEOUT_S + 1.0
"""A 503 comes within this: a turn to write, then the write itself, each bounded by the
timeout (an event may arrive while the batch before it is still waiting)."""

Fault = Callable[[Stack], contextlib.AbstractAsyncContextManager[None]]


@contextlib.asynccontextmanager
async def disk_full(stack: Stack) -> AsyncIterator[None]:
    """Every file write of the bridge fails (EFBIG), its log's included, until the limit rises."""
    soft, hard = resource.prlimit(stack.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(stack.pid, resource.RLIMIT_FSIZE, (0, hard))
    try:
        yield
    finally:
        resource.prlimit(stack.pid, resource.RLIMIT_FSIZE, (soft, hard))


FAULTS: dict[str, Fault] = {
    "sqlite_locked": lambda stack: sqlite_locked(stack.database_url),
    "disk_full": disk_full,
    "postgres_locked": lambda stack: postgres_locked(stack.database_url, PG_TABLES),
}


def postgres_server() -> str:
    """The PostgreSQL server's admin URL; skips outside CI when there is none, fails in CI."""
    admin, reason = dbutil.postgres_admin_dsn()
    if admin is None:
        if dbutil.in_ci():
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)
    return admin


async def stored_event_ids(db: Database) -> set[str]:
    """Every ERP event id the bridge committed."""
    async with db.read() as conn:
        return set((await conn.execute(select(erp_event.c.event_id))).scalars())


@pytest.mark.parametrize(
    "fault",
    ["sqlite_locked", "disk_full", pytest.param("postgres_locked", marks=pytest.mark.postgres)],
)
async def test_storage_fault_is_503_keeps_the_service_up_and_resumes(
    fault: str, tmp_path: Path, figures: Figures
) -> None:
    server_url = postgres_server() if fault == "postgres_locked" else None
    before, during_count, fault_s = size(9, 90), size(5, 50), span(4, 60)
    env = {"DATABASE__LOCK_TIMEOUT_S": str(LOCK_TIMEOUT_S)}
    async with (
        stack_up(tmp_path / fault, env, server_url) as stack,
        database(stack) as db,
        aiohttp.ClientSession() as http,
    ):
        # Committed before the fault: approvals raised, a third decided and written back.
        numbers = submit_orders(stack, "PO-BEFORE", before)
        await pending(stack, db, numbers, wait_s=60)
        stored = await revisions(db)
        early, late = numbers[: before // 3], numbers[before // 3 :]
        decided_late = late[: len(late) // 2]
        for doc in early:
            await decide(stack, str(stored[doc].instance_id), True)

        async def early_done() -> bool:
            found = await revisions(db)
            return all(found[doc].state == "done" for doc in early)

        await until("the early decisions written back", early_done, 30)
        snapshot = await revisions(db)
        events_before = await stored_event_ids(db)

        answers: list[tuple[int, dict[str, Any], str | None, float]] = []
        health: list[int] = []
        probes: list[tuple[str, str]] = []
        async with FAULTS[fault](stack):
            started = time.monotonic()
            # Approvers decide in DingTalk: the events cannot be recorded, so are not acked.
            for doc in decided_late:
                await decide(stack, str(stored[doc].instance_id), True)
            # The ERP submits orders: refused with 503, it retries them.
            submitted_during = submit_orders(stack, "PO-DURING", during_count)
            while time.monotonic() - started < fault_s:
                batch = [
                    (f"evt-probe-{len(probes) + n}", f"PO-PROBE-{len(probes) + n}")
                    for n in range(3)
                ]
                probes += batch
                answers += await asyncio.gather(*(deliver(stack, http, *p) for p in batch))
                health.append(await get_status(http, f"{stack.url}/healthz"))
                await asyncio.sleep(0.3)
            alive_during = stack.process is not None and stack.process.poll() is None
            fault_lasted = time.monotonic() - started
        cleared = time.monotonic()

        # Resumes: new events are taken, the ERP's retries and DingTalk's redeliveries land.
        assert not await stored_event_ids(db) & {eid for eid, _ in probes}, "half-stored"
        retried = [await deliver(stack, http, *p) for p in probes]
        await stack.erp.wait_delivered(30 + fault_s)

        async def decisions_applied() -> bool:
            found = await revisions(db)
            return all(found[doc].state == "done" for doc in decided_late)

        try:
            await until("the redelivered decisions applied", decisions_applied, 20)
            recovered_by = "redelivery"
        except AssertionError:
            # DingTalk gives up redelivering after a while (10 tries here): reconciliation,
            # scheduled or an admin's `sync`, finds those decisions.
            await stack.sandbox.deliver_chat(ADMIN, "sync", wait=10)
            await until("the reconciled decisions applied", decisions_applied, 20)
            recovered_by = "sync"
        recovered_s = time.monotonic() - cleared
        every = [*numbers, *submitted_during, *(doc for _, doc in probes)]
        await pending(stack, db, [*submitted_during, *(doc for _, doc in probes)], wait_s=60)
        after = await revisions(db)
        events_after = await stored_event_ids(db)
        emitted = stack.erp.events
        alive_after = stack.process is not None and stack.process.poll() is None

    assert alive_during and alive_after, "the bridge died"
    assert answers, "nothing was delivered during the fault"
    statuses = {status for status, _, _, _ in answers}
    assert statuses == {503}, statuses
    for _, body, retry_after, _ in answers:
        assert body == {"error": "overloaded", "reason": "storage_unavailable"}, body
        assert retry_after is not None and int(retry_after) >= 1
    slowest = max(seconds for _, _, _, seconds in answers)
    assert slowest <= ANSWER_WITHIN_S, f"a 503 took {slowest:.2f} s"
    assert set(health) == {200}, health
    assert [status for status, _, _, _ in retried] == [202] * len(probes), retried
    assert all(body["status"] == "accepted" for _, body, _, _ in retried)
    # Everything committed before the fault survived; what was decided meanwhile went on.
    assert events_before <= events_after
    for doc, row in snapshot.items():
        assert after[doc].approval_id == row.approval_id
    assert {after[doc].state for doc in early} == {"done"}
    assert {after[doc].state for doc in decided_late} == {"done"}
    assert {after[doc].state for doc in late[len(decided_late) :]} == {"pending"}
    assert set(every) <= set(after), "an event was lost"
    assert {e.status for e in emitted} == {"delivered"}
    refused = sum(1 for e in emitted for a in e.attempts if a.status == 503)
    figures.record(
        f"storage_{fault}",
        fault=fault,
        fault_s=round(fault_lasted, 1),
        lock_timeout_s=LOCK_TIMEOUT_S,
        committed_before=len(snapshot),
        deliveries_during=len(answers),
        answered_503=sum(status == 503 for status, _, _, _ in answers),
        slowest_503_s=round(slowest, 2),
        retry_after_s=sorted({int(r) for _, _, r, _ in answers if r is not None}),
        healthz_during=sorted(set(health)),
        erp_retries_refused_503=refused,
        decisions_during=len(decided_late),
        decisions_recovered_by=recovered_by,
        recovered_s=round(recovered_s, 1),
        lost=0,
        half_stored=0,
        process_restarts=0,
    )


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_scheduled_jobs_skip_ticks_while_storage_is_locked_then_run_again(
    backend: str, sqlite_template: Path, tmp_path: Path, figures: Figures
) -> None:
    """A tick claims itself in the database; while it cannot, it is skipped, not fatal."""
    if backend == "sqlite":
        url = dbutil.copy_sqlite(sqlite_template, tmp_path / "bridge.db")
    else:
        url, name = dbutil.create_pg_database(postgres_server())
    db = Database.from_config(DatabaseConfig(url=url, lock_timeout_s=0.2))
    runs: list[float] = []

    async def job() -> None:
        runs.append(time.monotonic())

    scheduler = Scheduler(db, "Asia/Shanghai")
    scheduler.every("tick", minutes=0.005, job=job, run_now=True)  # every 0.3 s
    try:
        async with scheduler.running():

            async def ran() -> bool:
                return len(runs) >= 2

            await until("the first ticks", ran, 5, every_s=0.05)
            locked = sqlite_locked(url) if backend == "sqlite" else postgres_locked(url, "reminder")
            async with locked:
                locked_at = time.monotonic()
                await asyncio.sleep(1.5)
                during = [t for t in runs if t > locked_at + 0.3]
            released = len(runs)

            async def resumed() -> bool:
                return len(runs) >= released + 2

            await until("ticks after the lock", resumed, 5, every_s=0.05)
    finally:
        await db.dispose()
        if backend == "postgres":
            dbutil.drop_pg_database(postgres_server(), name)
    assert during == [], "a tick ran without claiming itself"
    figures.record(
        f"scheduler_{backend}_locked",
        ticks_during_lock=len(during),
        ticks_after=len(runs) - released,
    )
