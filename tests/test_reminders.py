"""Reminders, escalations and the digest: a real database, the DingTalk sandbox, a fake clock."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from pydantic import SecretStr
from sqlalchemy import func, insert, select

from approvals.config import DatabaseConfig, JobConfig, PriceConfig
from approvals.db import price_repo, repo
from approvals.db import reminders as reminder_repo
from approvals.db.engine import Database
from approvals.db.tables import approval, job, reminder, revision
from approvals.jobs import JobHandler, JobRunner
from approvals.models import PurchaseOrder
from approvals.reminders import PER_APPROVAL, REMIND, ReminderPolicy, ReminderService
from approvals.states import State
from approvals.workhours import WorkingHours
from bot.meter import CallMeter
from bot.openapi import DingTalkClient
from bot.reminders import ReminderSender, instance_link
from bot.sandbox import Sandbox, SandboxOptions
from bot.settings import DingTalkConfig
from cards.renderer import Renderer
from tests.harness import order

ZONE = ZoneInfo("Asia/Shanghai")
MON, TUE, WED, SAT = "2026-11-23", "2026-11-24", "2026-11-25", "2026-11-28"
POLICY = ReminderPolicy(WorkingHours.of(range(1, 6), "09:00", "18:00", "Asia/Shanghai"))
FAST_JOBS = JobConfig(poll_interval_s=0.02, backoff_initial_s=0.05, backoff_max_s=0.2, lease_s=5)


def local(text: str) -> dt.datetime:
    """A Shanghai wall-clock time, in UTC."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=ZONE).astimezone(dt.UTC)


class FakeClock:
    """A clock the test sets."""

    def __init__(self) -> None:
        self.at = local(f"{MON} 09:00")

    def now(self) -> dt.datetime:
        return self.at


@dataclass
class World:
    """A database, the sandbox with a client, a clock, and the reminder parts built on them."""

    db: Database
    sandbox: Sandbox
    http: aiohttp.ClientSession
    client: DingTalkClient
    clock: FakeClock = field(default_factory=FakeClock)
    admins: list[str] = field(default_factory=lambda: ["dt-admin"])

    def service(
        self, db: Database | None = None, used: Callable[[], float] = lambda: 0.0
    ) -> ReminderService:
        return ReminderService(db or self.db, self.clock, POLICY, used)

    def sender(
        self, conversation: str | None = None, used: Callable[[], float] = lambda: 0.0
    ) -> ReminderSender:
        return ReminderSender(
            self.db,
            self.clock,
            self.client,
            Renderer(),
            POLICY,
            admins=self.admins,
            conversation=conversation,
            prices=PriceConfig(),
            api_base=self.sandbox.url,
            used_fraction=used,
            deadline=dt.timedelta(hours=1),
        )

    async def run_jobs(self, handler: JobHandler | None = None) -> None:
        """Run every due job through the real runner, and wait until none is left."""
        runner = JobRunner(self.db, self.clock, FAST_JOBS, {REMIND: handler or self.sender()})
        async with runner.running(grace_s=1):
            runner.wake()
            deadline = time.monotonic() + 10
            while await count(self.db, job.c.status != "parked"):
                assert time.monotonic() < deadline, "jobs did not finish"
                await asyncio.sleep(0.02)
        assert await count(self.db, job.c.status == "parked") == 0

    async def messages(self) -> list[dict[str, Any]]:
        """What the bot sent, as `GET /sandbox/messages` shows it."""
        async with self.http.get(self.sandbox.url + "/sandbox/messages") as response:
            messages: list[dict[str, Any]] = await response.json()
            return messages

    async def instance(self, *nodes: Sequence[str]) -> str:
        """A running instance in the sandbox, one approval node per list of approvers."""
        return await self.client.create_instance(
            {
                "processCode": "PROC-PO",
                "originatorUserId": "dt-buyer",
                "formComponentValues": [{"name": "单据编号", "value": "PO"}],
                "approvers": [{"actionType": "OR", "userIds": list(n)} for n in nodes],
            }
        )

    async def seed(self, doc_no: str, instance_id: str, since: dt.datetime) -> str:
        """A purchase order pending in DingTalk since `since` (received three days earlier)."""
        return await seed(self.db, doc_no, instance_id, since)


async def seed(
    db: Database,
    doc_no: str,
    instance_id: str,
    since: dt.datetime,
    state: State = State.PENDING,
    decision: str | None = None,
    buyer: str = "u1001",
) -> str:
    """Rows as the life cycle leaves them: approval, revision, and the audited move to pending."""
    approval_id = f"AP-{doc_no}"
    received = since - dt.timedelta(days=3)
    async with db.write() as conn:
        await conn.execute(
            insert(approval).values(
                id=approval_id,
                doc_type="purchase_order",
                doc_no=doc_no,
                current_revision=1,
                created_at=received,
                updated_at=received,
            )
        )
        await conn.execute(
            insert(revision).values(
                approval_id=approval_id,
                revision=1,
                state=state.value,
                document=order(doc_no, buyer=buyer),
                instance_id=instance_id,
                decision=decision,
                decided_at=None if decision is None else since,
                created_at=received,
                updated_at=since,
            )
        )
        pending = repo.audit_row(
            approval_id, 1, since, "bridge", "instance_created", State.SUBMITTING, State.PENDING
        )
        await repo.append_audit(conn, [pending])
    return approval_id


async def count(db: Database, *where: Any, table: Any = job) -> int:
    async with db.read() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one()
        )


@pytest.fixture
async def world(db: Database) -> AsyncIterator[World]:
    sandbox = Sandbox(SandboxOptions(qps=None)).start_in_thread()
    config = DingTalkConfig(
        api_base=sandbox.url,
        oapi_base=sandbox.url,
        app_key="dingtestapp",
        app_secret=SecretStr("test-secret"),
        robot_code="dingtestapp",
        rate_limit_qps=500.0,
    )
    try:
        async with aiohttp.ClientSession() as http:
            yield World(db, sandbox, http, DingTalkClient(http, config))
    finally:
        await sandbox.stop_async()


async def test_reminder_after_four_working_hours_not_before(world: World) -> None:
    cheaper = PurchaseOrder.model_validate(order("PO-OLD", price="10.00"))
    async with world.db.write() as conn:
        await price_repo.upsert(conn, price_repo.rows_from_order(cheaper, local(f"{MON} 08:00")))
    instance = await world.instance(["dt-boss-1"], ["dt-boss-2"])
    await world.seed("PO-1", instance, local(f"{MON} 10:00"))
    service = world.service()
    world.clock.at = local(f"{MON} 13:59")
    assert (await service.tick()).reminded == 0
    await world.sandbox.approve(instance, "dt-boss-1")  # the first node is done; dt-boss-2 waits
    world.clock.at = local(f"{MON} 14:00")
    assert (await service.tick()).reminded == 1
    await world.run_jobs()
    [message] = await world.messages()
    assert (message["kind"], message["userIds"], message["msgType"]) == (
        "oto",
        ["dt-boss-2"],
        "sampleMarkdown",
    )
    assert "PO-1" in message["title"]
    text = message["text"]
    assert "价格参考" in text and "⚠ 高于历史最高价（10.00）" in text and "均价 10.00" in text
    assert f"({world.sandbox.url}/sandbox/#{instance})" in text
    world.clock.at = local(f"{MON} 17:00")
    assert (await service.tick()).reminded == 0
    await world.run_jobs()
    assert len(await world.messages()) == 1


async def test_no_reminder_at_night_or_on_sunday(world: World) -> None:
    tuesday = await world.seed("PO-TUE", await world.instance(["dt-boss"]), local(f"{TUE} 10:00"))
    friday = await world.seed(
        "PO-FRI", await world.instance(["dt-boss"]), local("2026-11-27 16:00")
    )
    service = world.service()
    reminded = []
    for moment in (
        f"{TUE} 21:00",  # PO-TUE has waited 8 working hours, but it is night
        f"{WED} 03:00",
        f"{WED} 09:00",  # the first working moment: PO-TUE
        "2026-11-27 23:00",  # PO-FRI has 2 h by Friday night
        "2026-11-29 15:00",  # Sunday
        "2026-11-30 10:59",  # Monday: 2 h on Friday, 1.98 h today
        "2026-11-30 11:00",
    ):
        world.clock.at = local(moment)
        report = await service.tick()
        reminded.append(report.reminded if not report.skipped else report.skipped)
    night = "outside working hours"
    assert reminded == [night, night, 1, night, night, 0, 1]
    await world.run_jobs()
    sent = sorted(m["title"] for m in await world.messages() if "waiting for" in m["title"])
    assert len(sent) == 2 and "PO-FRI" in sent[0] and "PO-TUE" in sent[1]
    claims = reminder.c.subject.in_([friday, tuesday]), reminder.c.level == "remind"
    assert await count(world.db, *claims, table=reminder) == 2


async def test_no_reminder_for_an_instance_already_decided_in_dingtalk(world: World) -> None:
    instance = await world.instance(["dt-boss"])
    await world.seed("PO-1", instance, local(f"{MON} 09:00"))
    await world.sandbox.approve(instance)  # its event is lost: the bridge still holds it pending
    world.clock.at = local(f"{MON} 14:00")
    assert (await world.service().tick()).reminded == 1
    await world.run_jobs()
    assert await world.messages() == []


async def test_escalation_after_24_working_hours_batched_for_admins(world: World) -> None:
    world.admins = [f"dt-admin-{i}" for i in range(25)]
    for doc_no in ("PO-1", "PO-2"):
        await world.seed(doc_no, await world.instance(["dt-boss"]), local(f"{MON} 09:00"))
    service = world.service()
    world.clock.at = local(f"{WED} 14:59")  # 23.98 working hours: reminders only
    assert (await service.tick()).escalated == 0
    world.clock.at = local(f"{WED} 15:00")
    assert (await service.tick()).escalated == 2
    await world.run_jobs()
    escalations = [m for m in await world.messages() if "overdue" in m["title"]]
    # One message for both approvals; batchSend takes 20 users a call: 20 + 5.
    assert [len(m["userIds"]) for m in escalations] == [20, 5]
    assert all("PO-1" in m["text"] and "PO-2" in m["text"] for m in escalations)
    assert (await service.tick()).escalated == 0
    await world.seed("PO-3", await world.instance(["dt-boss"]), local(f"{MON} 10:00"))
    world.clock.at = local(f"{WED} 16:00")
    assert (await service.tick()).escalated == 1
    await world.run_jobs(world.sender(conversation="cidESCALATE=="))
    [group] = [m for m in await world.messages() if m["kind"] == "group"]
    assert group["conversationId"] == "cidESCALATE==" and "PO-3" in group["text"]


async def test_digest_once_a_working_day(world: World) -> None:
    instance = await world.instance(["dt-boss"])
    await world.seed("PO-1", instance, local(f"{MON} 09:00"))
    sent: list[int | None] = []
    for moment in (f"{TUE} 08:59", f"{TUE} 09:00", f"{TUE} 09:05", f"{WED} 09:00", f"{SAT} 09:00"):
        world.clock.at = local(moment)
        # A new service each time: as after a restart, only the database remembers.
        sent.append(await world.service().digest())
    assert sent == [None, 1, None, 1, None]
    await world.run_jobs()
    digests = [m for m in await world.messages() if "overdue approvals 2026" in m["title"]]
    assert [m["userIds"] for m in digests] == [["dt-admin"], ["dt-admin"]]
    assert "PO-1" in digests[1]["text"] and "18.0" in digests[1]["text"]
    assert instance_link(world.sandbox.url, instance) in digests[1]["text"]


async def test_nothing_sent_twice_across_a_restart(world: World, db: Database) -> None:
    await world.seed("PO-1", await world.instance(["dt-boss"]), local(f"{MON} 09:00"))
    world.clock.at = local(f"{MON} 13:00")
    assert (await world.service().tick()).reminded == 1
    # The process dies after the commit, before the job ran: new objects on the same database.
    url = db.engine.url.render_as_string(hide_password=False)
    await db.dispose()
    world.db = Database.from_config(DatabaseConfig(url=url))
    try:
        for moment in (f"{MON} 13:00", f"{MON} 16:00", f"{TUE} 10:00"):
            world.clock.at = local(moment)
            assert (await world.service().tick()).reminded == 0
        await world.run_jobs()
        await world.run_jobs()
        assert len(await world.messages()) == 1
    finally:
        await world.db.dispose()


async def test_two_replicas_ticking_at_once_claim_each_message_once(
    world: World, db: Database
) -> None:
    if db.is_sqlite:
        pytest.skip("several replicas need PostgreSQL; SQLite serves one process")
    for i in range(20):
        await world.seed(f"PO-{i:02d}", f"inst-{i}", local(f"{MON} 09:00"))
    url = db.engine.url.render_as_string(hide_password=False)
    other = Database.from_config(DatabaseConfig(url=url, pool_size=5))
    try:
        replicas = [world.service(), world.service(other)]
        world.clock.at = local(f"{WED} 15:00")
        for round_ in range(3):
            reports = await asyncio.gather(*(r.tick() for r in replicas))
            digests = await asyncio.gather(*(r.digest() for r in replicas))
            if round_ == 0:
                assert sum(r.reminded for r in reports) == 20
                assert sum(r.escalated for r in reports) == 20
                assert sorted(digests, key=str) == [20, None]
            else:
                assert sum(r.reminded + r.escalated for r in reports) == 0
                assert digests == [None, None]
    finally:
        await other.dispose()
    assert await count(db, table=reminder) == 41
    assert await count(db, job.c.revision.is_not(None)) == 20


async def test_reminders_wait_while_the_budget_is_nearly_spent(world: World) -> None:
    await world.seed("PO-1", await world.instance(["dt-boss"]), local(f"{MON} 09:00"))
    spent = CallMeter(world.db, budget=100)
    for _ in range(95):
        spent.record("workflow.processInstances.get")
    world.clock.at = local(f"{TUE} 09:30")
    assert (await world.service(used=spent.used_fraction).tick()).skipped == "budget"
    assert await world.service(used=spent.used_fraction).digest() is None
    assert await count(world.db, table=reminder) == 0
    # Queued before the budget ran low, a reminder waits too: its claim is handed back.
    assert (await world.service().tick()).reminded == 1
    await world.run_jobs(world.sender(used=spent.used_fraction))
    assert await world.messages() == []
    assert await count(world.db, table=reminder) == 0
    # Next month the budget is fresh: the reminder goes out, once.
    world.clock.at = local(f"{TUE} 10:00")
    assert (await world.service().tick()).reminded == 1
    await world.run_jobs()
    assert len(await world.messages()) == 1


async def test_a_tick_reads_only_what_may_be_due(db: Database) -> None:
    """Young revisions, and ones with every due message claimed, stay unread in the database."""
    now = local("2026-11-25 15:00")
    old = await seed(db, "PO-OLD", "inst-old", now - dt.timedelta(hours=30))
    young = await seed(db, "PO-YOUNG", "inst-young", now - dt.timedelta(minutes=30))
    done = await seed(db, "PO-DONE", "inst-done", now - dt.timedelta(hours=30))
    half = await seed(db, "PO-HALF", "inst-half", now - dt.timedelta(hours=30))
    reminded = await seed(db, "PO-REMINDED", "inst-reminded", now - dt.timedelta(hours=6))
    remind, escalate = (level.value for level in PER_APPROVAL)
    async with db.write() as conn:
        for key in [(done, 1, remind), (done, 1, escalate), (half, 1, remind)]:
            assert await reminder_repo.claim(conn, key, now)
        # Reminded, and not yet old enough to escalate: nothing is due for it.
        assert await reminder_repo.claim(conn, (reminded, 1, remind), now)

    cutoff = now - dt.timedelta(hours=4)
    levels = {remind: cutoff, escalate: now - dt.timedelta(hours=24)}
    async with db.read() as conn:
        due = await reminder_repo.waiting(conn, cutoff, levels)
        overdue = await reminder_repo.waiting(conn, cutoff)
        taken = await reminder_repo.claims_of(conn, [w.approval_id for w in due])

    assert {w.approval_id for w in due} == {old, half}
    assert {w.approval_id for w in overdue} == {old, half, done, reminded}
    assert young not in {w.approval_id for w in overdue}
    assert taken == {(half, 1, remind)}
