"""What the ERP and storage fault tests share: a stack's state as the outside world sees it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from approvals.config import DatabaseConfig
from approvals.db.engine import Database
from approvals.db.tables import approval, job, revision
from bot.bench.machine import Placement
from bot.bench.stack import Stack, StackOptions
from erp_adapter.reference.records import WriteBackRecord
from erp_adapter.reference.signing import signed_headers
from tests.harness import order

ADMIN = "dt-admin"
"""The admin in `bot.bench.stack.bridge_config`."""
FAST_JOBS: Mapping[str, str] = {
    "JOBS__POLL_INTERVAL_S": "0.2",
    "JOBS__LEASE_S": "5",
    "JOBS__BACKOFF_INITIAL_S": "0.2",
    "JOBS__BACKOFF_MAX_S": "2",
    "LOG__LEVEL": "INFO",
}
"""Short job timings, so that retries and recoveries fit in the test."""
PG_TABLES = "approval, revision, erp_event, inbox, early_decision, job, audit"
"""Every table intake, decisions and jobs write."""


@contextlib.asynccontextmanager
async def stack_up(
    folder: Path, env: Mapping[str, str] | None = None, server_url: str | None = None
) -> AsyncIterator[Stack]:
    """`approval-bridge run` with the sandbox (no rate limit) and the reference ERP."""
    options = StackOptions(qps=None, env={**FAST_JOBS, **(env or {})})
    async with Stack.up(folder, Placement.detect(), options, server_url) as stack:
        try:
            yield stack
        except BaseException:
            print(stack.log_tail(6000))  # shown by pytest when the test fails
            raise


async def until(
    what: str, check: Callable[[], Awaitable[bool]], wait_s: float, every_s: float = 0.1
) -> float:
    """Poll until `check()` holds; how long it took. Fails with `what` after `wait_s`."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > wait_s:
            raise AssertionError(f"timed out after {wait_s:.0f} s waiting for {what}")
        await asyncio.sleep(every_s)
    return time.monotonic() - started


@contextlib.asynccontextmanager
async def database(stack: Stack) -> AsyncIterator[Database]:
    """A second connection pool on the bridge's database, for reading what it stored."""
    db = Database.from_config(DatabaseConfig(url=stack.database_url, pool_size=2))
    try:
        yield db
    finally:
        await db.dispose()


@dataclass(frozen=True)
class Revision:
    """One stored revision, as the test needs it."""

    approval_id: str
    doc_no: str
    state: str
    instance_id: str | None
    decision: str | None
    last_error: str | None


async def revisions(db: Database) -> dict[str, Revision]:
    """Every revision 1 by document number."""
    query = (
        select(
            revision.c.approval_id,
            approval.c.doc_no,
            revision.c.state,
            revision.c.instance_id,
            revision.c.decision,
            revision.c.last_error,
        )
        .join(approval, approval.c.id == revision.c.approval_id)
        .where(revision.c.revision == 1)
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return {row[1]: Revision(*row) for row in rows}


async def states(db: Database) -> Counter[str]:
    """How many revisions are in each state."""
    async with db.read() as conn:
        rows = await conn.execute(select(revision.c.state, func.count()).group_by(revision.c.state))
        return Counter({state: int(count) for state, count in rows.all()})


async def jobs(db: Database, kind: str) -> list[tuple[str | None, str, int]]:
    """(approval_id, status, attempts) of the jobs of one kind still held."""
    query = select(job.c.approval_id, job.c.status, job.c.attempts).where(job.c.kind == kind)
    async with db.read() as conn:
        return [(a, s, int(n)) for a, s, n in (await conn.execute(query)).all()]


def submit_orders(stack: Stack, prefix: str, count: int) -> list[str]:
    """The ERP submits `count` purchase orders; their numbers."""
    numbers = [f"{prefix}-{n:04d}" for n in range(count)]
    for doc_no in numbers:
        stack.erp.submit_order(order(doc_no))
    return numbers


async def pending(stack: Stack, db: Database, numbers: list[str], wait_s: float) -> None:
    """Until every one of `numbers` has its DingTalk instance and waits for a decision."""
    wanted = set(numbers)

    async def all_pending() -> bool:
        found = await revisions(db)
        return all(n in found and found[n].state == "pending" for n in wanted)

    await stack.erp.wait_delivered(wait_s)
    await until(f"{len(numbers)} approvals pending", all_pending, wait_s)


async def decide(stack: Stack, instance_id: str, approve: bool) -> None:
    """An approver agrees or refuses in DingTalk (the sandbox)."""
    if approve:
        await stack.sandbox.approve(instance_id, remark="同意")
    else:
        await stack.sandbox.refuse(instance_id, remark="价格偏高")


async def admin_messages(stack: Stack) -> list[dict[str, Any]]:
    """What the bot sent to the admin unasked: alerts, not replies to chat commands."""
    sent = await stack.sandbox.messages()
    return [m for m in sent if ADMIN in m["userIds"] and m["kind"] != "session"]


def mentioning(messages: list[dict[str, Any]], doc_no: str) -> list[dict[str, Any]]:
    """The messages that name a document."""
    return [m for m in messages if doc_no in m["text"]]


def by_key(records: list[WriteBackRecord]) -> dict[str | None, list[WriteBackRecord]]:
    """The ERP's write-back requests grouped by Idempotency-Key."""
    grouped: dict[str | None, list[WriteBackRecord]] = {}
    for record in records:
        grouped.setdefault(record.idempotency_key, []).append(record)
    return grouped


def assert_written_back_once(
    records: list[WriteBackRecord], expected: Mapping[str, str], approval_ids: Mapping[str, str]
) -> None:
    """Each decision reached the ERP under its own key, applied once, never a second decision.

    `expected` maps document number to decision, `approval_ids` to its approval id. The ERP may
    have seen repeats of a key (faults, timeouts), always with the same decision.
    """
    grouped = by_key(records)
    keys = {f"{approval_ids[doc]}:1": doc for doc in expected}
    assert set(grouped) == set(keys), "a write-back under an unexpected key"
    for key, doc_no in keys.items():
        sent = grouped[key]
        assert {r.body["decision"] for r in sent} == {expected[doc_no]}, (doc_no, sent)
        assert {r.body["doc_no"] for r in sent} == {doc_no}
        assert [r.outcome for r in sent].count("applied") == 1, (doc_no, sent)
        assert all(r.outcome in ("applied", "replay", "fault") for r in sent), (doc_no, sent)


async def deliver(
    stack: Stack, http: aiohttp.ClientSession, event_id: str, doc_no: str
) -> tuple[int, dict[str, Any], str | None, float]:
    """POST one signed `purchase_order.submitted` as the ERP would: status, body, Retry-After
    and how long the answer took."""
    body = json.dumps(
        {
            "event_id": event_id,
            "type": "purchase_order.submitted",
            "occurred_at": "2026-11-25T10:00:00+08:00",
            "data": order(doc_no),
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        **signed_headers(stack.secret, int(time.time()), body),
    }
    started = time.monotonic()
    async with http.post(f"{stack.url}/erp/events", data=body, headers=headers) as response:
        answer = await response.json()
        return (
            response.status,
            answer,
            response.headers.get("Retry-After"),
            (time.monotonic() - started),
        )


async def get_status(http: aiohttp.ClientSession, url: str) -> int:
    """The HTTP status of a GET."""
    async with http.get(url) as response:
        return response.status


def _lock_sqlite(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


def _unlock_sqlite(conn: sqlite3.Connection) -> None:
    conn.execute("ROLLBACK")
    conn.close()


@contextlib.asynccontextmanager
async def sqlite_locked(url: str) -> AsyncIterator[None]:
    """Another connection holds the SQLite file's write lock."""
    path = make_url(url).database
    assert path is not None
    conn = await asyncio.to_thread(_lock_sqlite, path)
    try:
        yield
    finally:
        await asyncio.to_thread(_unlock_sqlite, conn)


@contextlib.asynccontextmanager
async def postgres_locked(url: str, tables: str) -> AsyncIterator[None]:
    """Another connection holds ACCESS EXCLUSIVE locks on tables the bridge writes."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            await transaction.rollback()
    finally:
        await conn.close()
