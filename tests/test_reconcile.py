"""Reconciliation finds decisions whose events were lost, and spends few lookups doing it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from approvals.config import ApprovalsConfig, ProcessConfig
from approvals.ports import SystemClock
from approvals.reconcile import Reconciler
from approvals.states import State
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


async def test_nothing_pending_costs_nothing(sqlite_template: Path, tmp_path: Path) -> None:
    url = dbutil.copy_sqlite(sqlite_template, tmp_path / "b.db")
    async with running_bridge(bridge_settings(url)) as bridge:
        report = await reconciler(bridge).sweep()
        assert (report.pending, report.listed) == (0, 0)
        assert bridge.gateway.lookups == 0
