"""Read models on SQLite and PostgreSQL from rows with known times; percentiles by brute force."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert

from approvals import queries
from approvals.db import jobs as job_repo
from approvals.db import repo
from approvals.db.engine import Database
from approvals.db.tables import approval, revision
from approvals.models import DocType
from approvals.readmodels import FailureKind, WriteBackStatus
from approvals.states import State
from tests.harness import order, stock

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)


async def add(
    db: Database,
    doc_no: str,
    *states: State,
    received: dt.datetime = NOW - H,
    doc_type: DocType = DocType.PURCHASE_ORDER,
    **fields: Any,
) -> str:
    """An approval whose revisions 1..n are in `states`; `fields` go on the last revision."""
    approval_id = f"A-{doc_no}"
    document = order(doc_no) if doc_type is DocType.PURCHASE_ORDER else stock()
    rows = [
        {
            "approval_id": approval_id,
            "revision": n,
            "state": state.value,
            "document": document,
            "created_at": received,
            "updated_at": received,
        }
        for n, state in enumerate(states, 1)
    ]
    rows[-1].update(fields)
    async with db.write() as conn:  # one insert per row: executemany takes the first row's keys
        await conn.execute(
            insert(approval).values(
                id=approval_id,
                doc_type=doc_type.value,
                doc_no=doc_no,
                current_revision=len(states),
                created_at=received,
                updated_at=received,
            )
        )
        for row in rows:
            await conn.execute(insert(revision).values(**row))
    return approval_id


async def audit(db: Database, approval_id: str, at: dt.datetime, action: str, to: State) -> None:
    async with db.write() as conn:
        await repo.append_audit(conn, [repo.audit_row(approval_id, 1, at, "t", action, None, to)])


async def test_status_by_doc_no_id_or_instance_with_revisions_and_recent_audit(
    db: Database,
) -> None:
    approvers = [{"user_id": "dt-1", "name": "王五", "result": "agree", "at": NOW.isoformat()}]
    approval_id = await add(
        db,
        "PO-1",
        State.SUPERSEDED,
        State.DONE,
        instance_id="inst-2",
        decision="approved",
        decided_at=NOW - H / 2,
        approvers=approvers,
        erp_ref="ERP-9",
    )
    for i in range(10):
        await audit(db, approval_id, NOW - H + i * dt.timedelta(minutes=1), f"a{i}", State.DONE)
    async with db.read() as conn:
        by_doc = await queries.status(conn, "PO-1")
        assert by_doc == await queries.status(conn, approval_id)
        assert by_doc == await queries.status(conn, "inst-2")
        assert await queries.status(conn, "PO-404") is None
    assert by_doc is not None
    assert (by_doc.doc_no, by_doc.doc_type, by_doc.current_revision) == (
        "PO-1",
        "purchase_order",
        2,
    )
    assert [r.revision for r in by_doc.revisions] == [2, 1]
    current = by_doc.current
    assert (current.state, current.write_back, current.erp_ref) == (
        State.DONE,
        WriteBackStatus.DONE,
        "ERP-9",
    )
    assert current.time_to_decision == H / 2
    assert [(a.name, a.result, a.at) for a in current.approvers] == [("王五", "agree", NOW)]
    assert by_doc.revisions[1].write_back is WriteBackStatus.NONE
    assert [e.action for e in by_doc.recent_audit] == [f"a{i}" for i in range(2, 10)]


async def test_pending_oldest_first_and_stuck_past_a_threshold(db: Database) -> None:
    await add(db, "PO-NEW", State.PENDING, received=NOW - H, instance_id="i-new")
    await add(db, "PO-OLD", State.SUPERSEDED, State.PENDING, received=NOW - 5 * H)
    await add(db, "PO-RAISING", State.SUBMITTING, received=NOW - 3 * H)
    await add(db, "RPL-1", State.RECEIVED, received=NOW - 4 * H, doc_type=DocType.REPLENISHMENT)
    await add(db, "PO-DONE", State.DONE, received=NOW - 9 * H)
    async with db.read() as conn:
        waiting = await queries.pending(conn, NOW)
        old = await queries.stuck(conn, NOW, 3 * H)
    assert [(i.doc_no, i.revision, i.state, i.waited) for i in waiting] == [
        ("PO-OLD", 2, State.PENDING, 5 * H),
        ("RPL-1", 1, State.RECEIVED, 4 * H),
        ("PO-RAISING", 1, State.SUBMITTING, 3 * H),
        ("PO-NEW", 1, State.PENDING, H),
    ]
    assert [i.doc_no for i in old] == ["PO-OLD", "RPL-1", "PO-RAISING"]
    po, rpl = waiting[0], waiting[1]
    assert (po.subject, po.requester, po.amount, po.currency) == (
        "杭州某某五金有限公司",
        "张三",
        Decimal("12000.00"),
        "CNY",
    )
    assert (rpl.subject, rpl.requester, rpl.amount, rpl.currency) == (
        "硬质合金刀片 @ WH1",
        "李四",
        Decimal("1000"),
        None,
    )


async def test_failed_lists_each_failure_once_newest_first(db: Database) -> None:
    wb = await add(
        db, "PO-WB", State.FAILED, decision="approved", last_error="ERP said 422", updated_at=NOW
    )
    await add(db, "PO-SUB", State.FAILED, last_error="unmapped user", updated_at=NOW - H)
    await add(db, "PO-STALE", State.STALE, last_error="409", updated_at=NOW - 2 * H)
    # A stale revision that a newer one replaced needs no one any more.
    await add(db, "PO-OVER", State.STALE, State.PENDING, updated_at=NOW - 2 * H)
    async with db.write() as conn:
        jobs = [("write_back", wb, 1, {}), ("notify", wb, None, {"kind": "x"})]
        await job_repo.enqueue(conn, jobs, NOW - 3 * H)
        for job_id in (1, 2):
            await job_repo.park(conn, job_id, f"gave up {job_id}", NOW - 3 * H)
        await job_repo.enqueue(conn, [("write_back", "A-PO-OVER", 2, {})], NOW)  # not parked
    async with db.read() as conn:
        items = await queries.failed(conn)
    assert [(i.kind, i.doc_no, i.revision, i.error) for i in items] == [
        (FailureKind.WRITE_BACK, "PO-WB", 1, "ERP said 422"),
        (FailureKind.SUBMIT, "PO-SUB", 1, "unmapped user"),
        (FailureKind.STALE, "PO-STALE", 1, "409"),
        (FailureKind.JOB, "PO-WB", None, "gave up 2"),
    ]
    assert (items[0].job_kind, items[0].attempts, items[0].retryable) == ("write_back", 0, True)
    assert (items[3].job_kind, items[2].retryable) == ("notify", False)


async def test_stats_counts_the_window_and_decision_times_match_brute_force(db: Database) -> None:
    rng = random.Random(5)
    inside: list[dt.timedelta] = []
    received: list[dt.datetime] = []
    for i in range(37):
        took = dt.timedelta(seconds=rng.randrange(1, 3 * 86400), microseconds=rng.randrange(10**6))
        decided = NOW - dt.timedelta(hours=rng.randrange(0, 7 * 24 - 1))
        decision = "approved" if i % 3 else "rejected"
        await add(
            db,
            f"PO-{i}",
            State.DONE,
            received=decided - took,
            decision=decision,
            decided_at=decided,
        )
        inside.append(took)
        received.append(decided - took)
    await add(db, "PO-OLD", State.DONE, decision="approved", decided_at=NOW - 8 * 24 * H)
    await add(db, "PO-OPEN", State.PENDING, received=NOW - 9 * 24 * H)
    await audit(db, "A-PO-1", NOW - H, "acknowledged", State.DONE)
    await audit(db, "A-PO-1", NOW - H, "acknowledged", State.DONE)  # one revision, counted once
    await audit(db, "A-PO-2", NOW - H, "write_back_failed", State.FAILED)
    await audit(db, "A-PO-3", NOW - H, "submit_failed", State.FAILED)
    await audit(db, "A-PO-4", NOW - H, "terminated", State.CANCELLED)
    await audit(db, "A-PO-5", NOW - 8 * 24 * H, "write_back_failed", State.FAILED)  # before
    async with db.read() as conn:
        s = await queries.stats(conn, NOW, 7)
    assert (s.approved, s.rejected, s.decided) == (24, 13, 37)
    assert (s.written_back, s.write_back_failures, s.submit_failures, s.cancelled) == (1, 1, 1, 1)
    assert s.open_now == 1
    # PO-OLD was received an hour ago, PO-OPEN nine days ago.
    assert s.received == sum(r >= NOW - 7 * 24 * H for r in received) + 1
    assert s.median_decision_time == brute_median(inside)
    assert s.p90_decision_time == brute_p90(inside)
    async with db.read() as conn:
        empty = await queries.stats(conn, NOW - 30 * 24 * H, 1)
    assert (empty.decided, empty.median_decision_time, empty.p90_decision_time) == (0, None, None)


def brute_median(values: list[dt.timedelta]) -> dt.timedelta:
    """The midpoint of the observed values that minimise the total absolute deviation."""
    cost = {v: sum((abs(w - v) for w in values), dt.timedelta()) for v in values}
    best = [v for v, c in cost.items() if c == min(cost.values())]
    return (min(best) + max(best)) / 2


def brute_p90(values: list[dt.timedelta]) -> dt.timedelta:
    """The smallest observed value with at least 90% of all values at or below it."""
    return min(v for v in values if 10 * sum(w <= v for w in values) >= 9 * len(values))


@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=40))
def test_percentiles_match_their_definitions(micros: list[int]) -> None:
    values = sorted(dt.timedelta(microseconds=m) for m in micros)
    assert queries.median(values) == brute_median(values)
    assert queries.percentile(values, 90) == brute_p90(values)


async def test_decisions_per_day_in_the_local_zone_with_empty_days(db: Database) -> None:
    # 2026-11-25 12:00 UTC is 20:00 in Shanghai; 16:30 UTC the day before is 00:30 local.
    times = {
        "A": (NOW - H, "approved"),
        "B": (dt.datetime(2026, 11, 24, 16, 30, tzinfo=dt.UTC), "rejected"),
        "C": (dt.datetime(2026, 11, 24, 15, 30, tzinfo=dt.UTC), "approved"),
        "D": (dt.datetime(2026, 11, 20, 0, 0, tzinfo=dt.UTC), "approved"),  # before the window
    }
    for doc, (at, decision) in times.items():
        await add(db, doc, State.DONE, decision=decision, decided_at=at)
    async with db.read() as conn:
        local = await queries.decisions_per_day(conn, NOW, 3, "Asia/Shanghai")
        utc = await queries.decisions_per_day(conn, NOW, 3)
    day = dt.date(2026, 11, 25)
    assert local == [(day - 2 * dt.timedelta(1), 0, 0), (day - dt.timedelta(1), 1, 0), (day, 1, 1)]
    assert utc == [(day - 2 * dt.timedelta(1), 0, 0), (day - dt.timedelta(1), 1, 1), (day, 1, 0)]
    assert local[2].day == day and local[2].approved == 1
