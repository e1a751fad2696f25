"""Reconciliation finds decisions whose events were lost, and spends few lookups doing it."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web
from sqlalchemy import update

from approvals.config import ApprovalsConfig, ProcessConfig
from approvals.db.tables import revision
from approvals.errors import Retryable, Throttled
from approvals.ports import InstanceSnapshot, SystemClock
from approvals.reconcile import MAX_ONE_BY_ONE, Reconciler, cheapest_cutoff
from approvals.states import State
from bot.app import _reconcile_tick
from bot.keys import DECISIONS
from tests import dbutil
from tests.harness import Bridge, bridge_settings, event, order, running_bridge

PROCESSES = ApprovalsConfig(
    purchase_order=ProcessConfig(process_code="PROC-PO"),
    replenishment=ProcessConfig(process_code="PROC-RPL"),
)


def reconciler(bridge: Bridge, sweep_every: dt.timedelta = dt.timedelta(hours=1)) -> Reconciler:
    return Reconciler(
        bridge.db, SystemClock(), bridge.gateway, bridge.app[DECISIONS], PROCESSES, sweep_every
    )


async def pending(bridge: Bridge, doc_no: str) -> tuple[str, str]:
    status, body = await bridge.post(
        event(f"e-{doc_no}", "purchase_order.submitted", order(doc_no))
    )
    assert status == 202, body
    row = await bridge.wait_state(body["approval_id"], 1, State.PENDING)
    assert row.instance_id is not None
    return body["approval_id"], row.instance_id


async def test_lost_decisions_are_found_and_applied_once(
    sqlite_template: Path, tmp_path: Path
) -> None:
    url = dbutil.copy_sqlite(sqlite_template, tmp_path / "b.db")
    async with running_bridge(bridge_settings(url)) as bridge:
        approved = await pending(bridge, "PO-1")
        refused = await pending(bridge, "PO-2")
        withdrawn = await pending(bridge, "PO-3")
        waiting = await pending(bridge, "PO-4")
        # Decided in DingTalk, but no event ever reaches the bridge.
        bridge.gateway.finish(approved[1], "agree")
        bridge.gateway.finish(refused[1], "refuse")
        await bridge.gateway.terminate_instance(withdrawn[1], "revoked by the originator")
        rec = reconciler(bridge)
        report = await rec.sweep()
        assert (report.pending, report.listed, report.fetched, report.applied) == (4, 3, 3, 3)
        assert (await bridge.revision(approved[0], 1)).decision == "approved"
        assert (await bridge.revision(refused[0], 1)).decision == "rejected"
        assert (await bridge.revision(withdrawn[0], 1)).state is State.CANCELLED
        assert (await bridge.revision(waiting[0], 1)).state is State.PENDING
        # The late event for an instance reconciliation already applied changes nothing.
        late = await bridge.decide(approved[1], "approved", key="the-real-event")
        assert late.outcome.value == "duplicate"
        again = await rec.sweep()
        assert (again.pending, again.applied) == (1, 0)


async def test_ticks_sweep_only_after_a_gap_or_the_safety_interval(
    sqlite_template: Path, tmp_path: Path
) -> None:
    url = dbutil.copy_sqlite(sqlite_template, tmp_path / "b.db")
    async with running_bridge(bridge_settings(url)) as bridge:
        await pending(bridge, "PO-1")
        rec = reconciler(bridge)
        assert await rec.tick() is not None  # first tick after start: events may have been missed
        before = bridge.gateway.lookups
        assert await rec.tick() is None  # stream healthy, interval not passed: no calls at all
        assert bridge.gateway.lookups == before
        rec.events_may_be_missing()
        assert await rec.tick() is not None
        eager = reconciler(bridge, sweep_every=dt.timedelta(0))
        assert await eager.tick() is not None
        assert await eager.tick() is not None


class _Failing:
    """A directory that fails its next `fails` listings, as DingTalk does in an outage."""

    def __init__(self, inner: Any, fails: int) -> None:
        self.inner, self.fails = inner, fails

    async def finished_ids(self, process_code: str, started_since: dt.datetime) -> list[str]:
        if self.fails:
            self.fails -= 1
            raise Retryable("DingTalk answered 500")
        ids: list[str] = await self.inner.finished_ids(process_code, started_since)
        return ids

    async def snapshot(self, instance_id: str) -> InstanceSnapshot:
        found: InstanceSnapshot = await self.inner.snapshot(instance_id)
        return found


async def test_a_failed_sweep_leaves_the_gap_for_the_next_tick(
    sqlite_template: Path, tmp_path: Path
) -> None:
    url = dbutil.copy_sqlite(sqlite_template, tmp_path / "b.db")
    async with running_bridge(bridge_settings(url)) as bridge:
        approval_id, instance_id = await pending(bridge, "PO-1")
        directory = _Failing(bridge.gateway, fails=0)
        rec = Reconciler(
            bridge.db,
            SystemClock(),
            directory,
            bridge.app[DECISIONS],
            PROCESSES,
            dt.timedelta(hours=1),
        )
        assert await rec.tick() is not None  # swept at start: nothing decided yet
        bridge.gateway.finish(instance_id, "agree")
        rec.events_may_be_missing()  # the stream reconnected: its event may be lost
        directory.fails = 1
        with pytest.raises(Retryable):
            await rec.tick()  # the sweep that follows, and DingTalk fails it
        # The next tick sweeps again at once, not an hour later.
        report = await rec.tick()
        assert report is not None and report.applied == 1
        assert (await bridge.revision(approval_id, 1)).decision == "approved"
        assert await rec.tick() is None


async def test_a_tick_that_dingtalk_asks_to_wait_is_skipped_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Waiting:
        def events_may_be_missing(self) -> None: ...

        async def tick(self) -> None:
            raise Throttled("monthly call quota is spent", retry_after=300)

    tick = _reconcile_tick(web.Application(), cast(Reconciler, Waiting()))
    with caplog.at_level(logging.INFO):
        assert await tick() is None  # not an exception with a traceback every tick
    [record] = [r for r in caplog.records if "not swept" in r.getMessage()]
    assert record.levelno == logging.INFO


async def test_nothing_pending_costs_nothing(sqlite_template: Path, tmp_path: Path) -> None:
    url = dbutil.copy_sqlite(sqlite_template, tmp_path / "b.db")
    async with running_bridge(bridge_settings(url)) as bridge:
        report = await reconciler(bridge).sweep()
        assert (report.pending, report.listed) == (0, 0)
        assert bridge.gateway.lookups == 0


def test_cheapest_cutoff_fetches_a_few_old_ones_rather_than_relist_a_week() -> None:
    now = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)
    week_ago = now - dt.timedelta(days=7)
    # 1,000 instances raised over the week, one forgotten pending since its start.
    instances = [week_ago + dt.timedelta(minutes=10 * n) for n in range(1000)]
    recent = [now - dt.timedelta(minutes=m) for m in (30, 20, 10)]

    assert cheapest_cutoff([week_ago, *recent], instances) == 1  # 1 fetch + 1 page, not 50 pages
    assert cheapest_cutoff(recent, instances) == 0  # all recent: one listing is cheapest
    assert cheapest_cutoff([week_ago], instances) == 1  # alone: one fetch, no listing at all
    many_old = [week_ago + dt.timedelta(seconds=n) for n in range(200)]
    # Never more than MAX_ONE_BY_ONE fetched one by one, however many are old.
    assert cheapest_cutoff(many_old, instances) <= MAX_ONE_BY_ONE


async def test_a_forgotten_old_approval_is_fetched_alone_not_relisted_with_a_week(
    sqlite_template: Path, tmp_path: Path
) -> None:
    url = dbutil.copy_sqlite(sqlite_template, tmp_path / "b.db")
    async with running_bridge(bridge_settings(url)) as bridge:
        old = await pending(bridge, "PO-OLD")
        for n in range(45):  # a busy week: decided, their events delivered
            _, instance_id = await pending(bridge, f"PO-{n}")
            await bridge.decide(instance_id, "approved")
        waiting = await pending(bridge, "PO-NEW")
        week_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=7)
        # PO-OLD was raised a week ago (in our records and in DingTalk's), and approved there
        # without its event reaching us.
        async with bridge.db.write() as conn:
            await conn.execute(
                update(revision).where(revision.c.approval_id == old[0]).values(created_at=week_ago)
            )
        bridge.gateway.instances[old[1]].created_at = week_ago
        bridge.gateway.finish(old[1], "agree")
        before = bridge.gateway.lookups

        report = await reconciler(bridge).sweep()

        # Listing since PO-OLD would take three pages (47 instances). Both pending ones fetched
        # one by one cost two calls (a listing since PO-NEW would still hold the 45 decided
        # ones, raised within the two-minute margin).
        assert bridge.gateway.lookups - before == 2
        assert (report.pending, report.listed, report.fetched, report.applied) == (2, 0, 2, 1)
        assert (await bridge.revision(old[0], 1)).decision == "approved"
        assert (await bridge.revision(waiting[0], 1)).state is State.PENDING
