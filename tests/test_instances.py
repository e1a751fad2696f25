"""Raising instances and hearing decisions: no duplicates, no lost or misapplied decisions."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter
from sqlalchemy import func, select, text

from approvals.config import DatabaseConfig, IntakeConfig, PriceConfig
from approvals.db import repo
from approvals.db.engine import Database
from approvals.db.tables import audit, job, metadata, price
from approvals.decisions import DecisionOutcome, DecisionService, apply_held
from approvals.errors import Permanent, Retryable, Throttled
from approvals.intake import IntakeService
from approvals.memory import MemoryGateway
from approvals.models import ApproverAction, Decision, DecisionReport, ErpEvent
from approvals.ports import InstanceRequest, SystemClock
from approvals.states import State, Trigger
from bot.keys import DECISIONS
from tests import dbutil
from tests.harness import Bridge, bridge_settings, event, order, running_bridge


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def url(request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated empty database's URL."""
    if request.param == "sqlite":
        return dbutil.copy_sqlite(sqlite_template, tmp_path / "bridge.db")
    pg: str = request.getfixturevalue("postgres_url")
    from approvals.config import DatabaseConfig
    from approvals.db.engine import Database

    db = Database.from_config(DatabaseConfig(url=pg))
    async with db.engine.begin() as conn:
        names = ", ".join(t.name for t in metadata.sorted_tables)
        await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    await db.dispose()
    return pg


class LosesReplies(MemoryGateway):
    """Creates the instance, then loses the reply the first time (a timeout after success)."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    async def create_instance(self, request: InstanceRequest) -> str:
        instance_id = await super().create_instance(request)
        if self.lost == 0:
            self.lost += 1
            raise Retryable("read timeout after DingTalk created the instance")
        return instance_id


class Flaky(MemoryGateway):
    """Each create call fails as scripted: refused before running, lost after, or a crash-like
    bug after creating; then works."""

    def __init__(self, *script: str) -> None:
        super().__init__()
        self.script = list(script)

    async def create_instance(self, request: InstanceRequest) -> str:
        how = self.script.pop(0) if self.script else "ok"
        if how == "refused":
            raise Throttled("403 QpsLimitForAppkeyAndApi", retry_after=0.01)
        instance_id = await super().create_instance(request)
        if how == "lost":
            raise Retryable("HTTP 500 after DingTalk created the instance")
        if how == "bug":
            raise RuntimeError("the process fell over after DingTalk created the instance")
        return instance_id


async def test_a_retry_looks_only_where_an_earlier_create_may_have_raised_the_instance(
    url: str,
) -> None:
    gateway = Flaky("refused", "lost")
    async with running_bridge(bridge_settings(url), gateway=gateway) as bridge:
        approval_id = await submit(bridge, "PO-1")
        row = await bridge.wait_state(approval_id, 1, State.PENDING)
    [instance] = gateway.instances.values()
    assert row.instance_id == instance.instance_id
    # A refusal raised nothing: no lookup after it. After the lost reply, one lookup, in the
    # window of that call only (not every instance since the order came in).
    [windows] = gateway.finds
    assert windows is not None and len(windows) == 1
    start, end = windows[0]
    assert start <= instance.created_at <= end
    assert end - start < dt.timedelta(seconds=15)


async def test_a_retry_after_an_unaccounted_failure_looks_everywhere(url: str) -> None:
    gateway = Flaky("bug")
    async with running_bridge(bridge_settings(url), gateway=gateway) as bridge:
        approval_id = await submit(bridge, "PO-1")
        await bridge.wait_state(approval_id, 1, State.PENDING)
    assert len(gateway.instances) == 1
    assert gateway.finds == [None]  # as after a crash: the attempt left no note


class Gated(MemoryGateway):
    """Holds create calls until released."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def create_instance(self, request: InstanceRequest) -> str:
        self.entered.set()
        await self.release.wait()
        return await super().create_instance(request)


@pytest.fixture
async def bridge(url: str) -> AsyncIterator[Bridge]:
    async with running_bridge(bridge_settings(url)) as running:
        yield running


async def submit(
    bridge: Bridge, doc_no: str, rev: int = 1, kind: str = "submitted", price: str = "12.00"
) -> str:
    status, body = await bridge.post(
        event(f"{doc_no}-{rev}", f"purchase_order.{kind}", order(doc_no, rev, price))
    )
    assert status == 202, body
    approval_id: str = body["approval_id"]
    return approval_id


async def test_a_lost_create_reply_does_not_raise_a_second_instance(url: str) -> None:
    gateway = LosesReplies()
    async with running_bridge(bridge_settings(url), gateway=gateway) as bridge:
        approval_id = await submit(bridge, "PO-1")
        row = await bridge.wait_state(approval_id, 1, State.PENDING)
    assert gateway.lost == 1
    assert len(gateway.instances) == 1
    assert row.instance_id == next(iter(gateway.instances))


async def test_superseded_while_creating_the_instance_is_recorded_and_withdrawn(url: str) -> None:
    gateway = Gated()
    async with running_bridge(bridge_settings(url), gateway=gateway) as bridge:
        approval_id = await submit(bridge, "PO-1")
        await asyncio.wait_for(gateway.entered.wait(), 5)
        assert (await bridge.revision(approval_id, 1)).state is State.SUBMITTING
        await submit(bridge, "PO-1", 2, "changed")
        assert (await bridge.revision(approval_id, 1)).state is State.SUPERSEDED
        gateway.release.set()
        await bridge.wait_state(approval_id, 2, State.PENDING)
        for _ in range(200):
            old = await bridge.revision(approval_id, 1)
            if old.instance_id and gateway.instances[old.instance_id].status == "TERMINATED":
                break
            await asyncio.sleep(0.02)
    assert old.state is State.SUPERSEDED
    assert old.instance_id is not None
    assert gateway.instances[old.instance_id].status == "TERMINATED"
    assert [i.request.revision for i in gateway.instances.values() if i.status == "RUNNING"] == [2]


async def test_a_decision_heard_before_the_instance_is_recorded_is_held_then_applied(
    url: str,
) -> None:
    async with running_bridge(bridge_settings(url)) as bridge:

        class InstantApproval(MemoryGateway):
            async def create_instance(self, request: InstanceRequest) -> str:
                instance_id = await super().create_instance(request)
                result = await bridge.decide(instance_id, "approved")
                assert result.outcome is DecisionOutcome.HELD
                return instance_id

        bridge.gateway.__class__ = InstantApproval
        approval_id = await submit(bridge, "PO-1")
        row = await bridge.wait_state(approval_id, 1, State.WRITING_BACK)
        assert row.decision == "approved"


async def test_a_decision_heard_in_one_replica_while_another_records_its_instance_is_applied(
    url: str,
) -> None:
    """Replicas race: B hears the decision while A's transaction recording the instance is open.

    Whichever commits first, the decision must end applied, never held for good.
    """

    class NeverReplies(MemoryGateway):
        async def create_instance(self, request: InstanceRequest) -> str:
            await asyncio.Event().wait()  # the create job stays in flight: A records by hand
            raise AssertionError("unreachable")

    async with running_bridge(bridge_settings(url), gateway=NeverReplies()) as bridge:
        approval_id = await submit(bridge, "PO-RACE")
        await bridge.wait_state(approval_id, 1, State.SUBMITTING)
        other = Database.from_config(DatabaseConfig(url=url))  # replica B
        decisions = DecisionService(other, SystemClock(), PriceConfig())
        report = DecisionReport(
            instance_id="inst-race",
            decision=Decision.APPROVED,
            decided_at=dt.datetime.now(dt.UTC),
            event_key="evt-race",
        )
        try:
            heard: asyncio.Task[Any] | None = None
            async with bridge.db.write() as conn:  # replica A, as CreateInstanceHandler._record
                now = dt.datetime.now(dt.UTC)
                assert await repo.move(
                    conn,
                    approval_id,
                    1,
                    State.SUBMITTING,
                    Trigger.INSTANCE_CREATED,
                    now,
                    "bridge",
                    instance_id="inst-race",
                )
                pending = await repo.get_revision(conn, approval_id, 1)
                assert pending is not None
                assert await apply_held(conn, pending, now, PriceConfig()) is None
                heard = asyncio.create_task(decisions.apply(report))
                await asyncio.sleep(0.5)  # B decides while A has not committed
            result = await heard
        finally:
            await other.dispose()
        assert result.outcome is DecisionOutcome.APPLIED
        decided = await bridge.revision(approval_id, 1)
        assert decided.decision == "approved"


async def test_the_same_decision_event_twice_is_applied_once(bridge: Bridge) -> None:
    approval_id = await submit(bridge, "PO-1")
    row = await bridge.wait_state(approval_id, 1, State.PENDING)
    assert row.instance_id is not None
    first = await bridge.decide(row.instance_id, "approved", key="evt-1")
    again = await bridge.decide(row.instance_id, "approved", key="evt-1")
    other = await bridge.decide(row.instance_id, "rejected", key="evt-2")
    assert (first.outcome, again.outcome, other.outcome) == (
        DecisionOutcome.APPLIED,
        DecisionOutcome.DUPLICATE,
        DecisionOutcome.DUPLICATE,  # a second, different decision for a decided revision is ignored
    )
    decided = await bridge.revision(approval_id, 1)
    assert decided.decision == "approved"
    async with bridge.db.read() as conn:
        jobs = await conn.execute(select(func.count()).where(job.c.kind == "write_back"))
        assert jobs.scalar_one() <= 1  # one, or none once it ran
        decided_once = await conn.execute(
            select(func.count()).where(
                audit.c.approval_id == approval_id, audit.c.action.in_(("approve", "reject"))
            )
        )
        assert decided_once.scalar_one() == 1


async def test_an_approved_order_teaches_its_prices(bridge: Bridge) -> None:
    approval_id = await submit(bridge, "PO-7", price="13.25")
    row = await bridge.wait_state(approval_id, 1, State.PENDING)
    assert row.instance_id is not None
    await bridge.decide(row.instance_id, "approved")
    async with bridge.db.read() as conn:
        learned = (
            await conn.execute(select(price.c.doc_no, price.c.unit_price, price.c.source))
        ).all()
    assert [tuple(r) for r in learned] == [("PO-7", Decimal("13.25"), "approved")]


async def test_a_refused_submission_fails_visibly_and_can_be_retried(url: str) -> None:
    class Unmapped(MemoryGateway):
        refuse = True

        async def create_instance(self, request: InstanceRequest) -> str:
            if self.refuse:
                raise Permanent(f"ERP user {request.originator} has no DingTalk user in [users]")
            return await super().create_instance(request)

    gateway = Unmapped()
    async with running_bridge(bridge_settings(url), gateway=gateway) as bridge:
        approval_id = await submit(bridge, "PO-9")
        failed = await bridge.wait_state(approval_id, 1, State.FAILED)
        assert failed.last_error is not None and "u1001" in failed.last_error
        for _ in range(100):
            if bridge.notifier.notices:
                break
            await asyncio.sleep(0.02)
        [notice] = bridge.notifier.notices
        assert notice.kind == "submit_failed"
        assert notice.doc_no == "PO-9"
        gateway.refuse = False
        await bridge.app[DECISIONS].retry("PO-9", actor="admin")
        row = await bridge.wait_state(approval_id, 1, State.PENDING)
    assert row.instance_id is not None
    assert len(gateway.instances) == 1


async def test_an_approvers_action_heard_after_the_decision_still_reaches_the_write_back(
    db: Database,
) -> None:
    clock = SystemClock()
    intake = IntakeService(db, clock, IntakeConfig())
    parsed = TypeAdapter[Any](ErpEvent).validate_python(
        event("e-late", "purchase_order.submitted", order("PO-LATE"))
    )
    async with intake.running():
        approval_id = (await intake.submit(parsed)).approval_id
    assert approval_id is not None
    async with db.write() as conn:  # what the create job does, without a job runner
        now = clock.now()
        assert await repo.move(conn, approval_id, 1, State.RECEIVED, Trigger.SUBMIT, now, "t")
        moved = await repo.move(
            conn,
            approval_id,
            1,
            State.SUBMITTING,
            Trigger.INSTANCE_CREATED,
            now,
            "t",
            instance_id="inst-late",
        )
        assert moved
    decisions = DecisionService(db, clock, PriceConfig())
    finish = DecisionReport(
        instance_id="inst-late", decision="approved", decided_at=clock.now(), event_key="fin"
    )
    assert (await decisions.apply(finish)).outcome is DecisionOutcome.APPLIED
    action = ApproverAction(user_id="dt-2001", result="agree", comment="同意")
    late = await decisions.record_action("inst-late", action, "task-after-finish")
    assert late.outcome is DecisionOutcome.APPLIED
    async with db.read() as conn:
        decided = await repo.get_revision(conn, approval_id, 1)
    assert decided is not None and decided.state is State.APPROVED
    assert decided.approvers == [action.model_dump(mode="json")]
    async with db.write() as conn:  # once the write-back started, it is too late
        await repo.move(conn, approval_id, 1, State.APPROVED, Trigger.WRITE_BACK, clock.now(), "t")
    too_late = await decisions.record_action("inst-late", action, "another-task")
    assert too_late.outcome is DecisionOutcome.IGNORED
