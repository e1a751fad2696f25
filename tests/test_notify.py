"""Notices through the DingTalk sandbox: bursts summarised, duplicates collapsed, outcomes sent."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from approvals.config import JobConfig
from approvals.db import repo
from approvals.db.engine import Database
from approvals.db.tables import job
from approvals.errors import Retryable, Throttled
from approvals.jobs import JobRunner
from approvals.notices import NOTIFY, NotifyHandler, enqueue_notice
from approvals.outcomes import enqueue_outcome
from approvals.ports import Clock, Notice, SystemClock
from approvals.states import State
from bot.meter import CallMeter
from bot.notify import BudgetAlert, DingTalkNotifier
from bot.openapi import DingTalkClient
from bot.sandbox import Sandbox, SandboxOptions
from bot.settings import DingTalkConfig
from cards.renderer import Renderer
from tests.test_reminders import FakeClock, count, local, seed

JOBS = JobConfig(
    workers=16, poll_interval_s=0.02, backoff_initial_s=0.05, backoff_max_s=0.2, lease_s=30
)


@dataclass
class Side:
    """The sandbox, a client for it, and what the bot sent."""

    sandbox: Sandbox
    http: aiohttp.ClientSession
    client: DingTalkClient

    def notifier(
        self,
        admins: list[str] | None = None,
        window_s: float = 60,
        clock: Clock | None = None,
        users: dict[str, str] | None = None,
    ) -> DingTalkNotifier:
        return DingTalkNotifier(
            self.client,
            ["dt-admin"] if admins is None else admins,
            Renderer(),
            users=users,
            window=dt.timedelta(seconds=window_s),
            clock=clock,
        )

    async def messages(self) -> list[dict[str, Any]]:
        async with self.http.get(self.sandbox.url + "/sandbox/messages") as response:
            messages: list[dict[str, Any]] = await response.json()
            return messages


@pytest.fixture
async def side() -> AsyncIterator[Side]:
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
            yield Side(sandbox, http, DingTalkClient(http, config))
    finally:
        await sandbox.stop_async()


async def run_notices(db: Database, notifier: DingTalkNotifier, wait_s: float = 20) -> None:
    """Run notify jobs through the real runner until none is left (held ones included)."""
    handlers = {NOTIFY: NotifyHandler(notifier, dt.timedelta(hours=1))}
    runner = JobRunner(db, SystemClock(), JOBS, handlers)
    async with runner.running(grace_s=1):
        deadline = time.monotonic() + wait_s
        while await count(db, job.c.status != "parked"):
            assert time.monotonic() < deadline, "notices were not all delivered"
            await asyncio.sleep(0.05)
    assert await count(db, job.c.status == "parked") == 0


def failed(i: int) -> Notice:
    text = f"Write-back of PO-{i:03d} (revision 1) failed: ERP unreachable"
    return Notice("write_back_failed", text, f"AP-{i}", f"PO-{i:03d}")


async def test_a_burst_of_500_parked_write_backs_is_two_messages(db: Database, side: Side) -> None:
    now = dt.datetime.now(dt.UTC)
    async with db.write() as conn:
        for i in range(500):
            await enqueue_notice(conn, failed(i), now)
    # The window (minutes in service) must outlast the burst itself for it to be one summary.
    await run_notices(db, side.notifier(window_s=4))
    first, summary = await side.messages()
    assert first["title"] == "回写ERP失败 / write-back failed"
    assert summary["title"] == "回写ERP失败 / write-back failed ×499"
    assert "……另有 479 条" in summary["text"] and first["userIds"] == summary["userIds"]


async def test_identical_notices_collapse_and_the_rest_wait_for_one_summary(side: Side) -> None:
    clock = FakeClock()
    notifier = side.notifier(window_s=300, clock=clock)
    await notifier.notify(failed(1))
    await notifier.notify(failed(1))  # identical, within the window: nothing more
    for i in (2, 3, 2):
        with pytest.raises(Throttled) as held:
            await notifier.notify(failed(i))
        assert held.value.retry_after == 300
    assert len(await side.messages()) == 1
    clock.at += dt.timedelta(seconds=300)
    await side.sandbox.set_faults(error_rate=1.0)
    with pytest.raises(Retryable):  # the summary fails: both stay held, nothing is lost
        await notifier.notify(failed(3))
    await side.sandbox.set_faults(error_rate=0.0)
    await notifier.notify(failed(2))  # whichever comes back first carries the summary
    await notifier.notify(failed(3))  # already in it
    sent = await side.messages()
    assert [m["title"][-2:] for m in sent] == ["ed", "×2"]
    assert "PO-002" in sent[1]["text"] and "PO-003" in sent[1]["text"]
    clock.at += dt.timedelta(seconds=600)
    await notifier.notify(failed(1))  # a new window: told again
    assert len(await side.messages()) == 3


async def test_alerts_are_titled_by_cause_and_batched_for_25_admins(side: Side) -> None:
    admins = [f"dt-admin-{i}" for i in range(25)]
    text = "Could not raise the approval for PO-1 (revision 1): DingTalkAuthError: check app_key"
    await side.notifier(admins).notify(Notice("submit_failed", text, "AP-1", "PO-1"))
    sent = await side.messages()
    assert [len(m["userIds"]) for m in sent] == [20, 5]
    assert {m["title"] for m in sent} == {"钉钉鉴权失败 / DingTalk refused the app"}


async def test_the_buyer_hears_the_outcome_once(db: Database, side: Side) -> None:
    since = local("2026-11-23 10:00")
    approved = await seed(db, "PO-A", "i-a", since, State.DONE, "approved")
    stale = await seed(db, "PO-S", "i-s", since, State.STALE, "approved")
    orphan = await seed(db, "PO-U", "i-u", since, State.DONE, "rejected", buyer="u9999")
    waiting = await seed(db, "PO-W", "i-w", since)
    async with db.write() as conn:
        for approval_id in (approved, stale, orphan, waiting, approved, stale):
            row = await repo.get_revision(conn, approval_id, 1)
            assert row is not None
            await enqueue_outcome(conn, row, dt.datetime.now(dt.UTC))
    assert await count(db, job.c.kind == NOTIFY) == 3
    users = {"u1001": "dt-buyer"}
    await run_notices(db, side.notifier(window_s=0.3, users=users))
    messages = await side.messages()
    sent = {(m["userIds"][0], m["text"].split("\n")[-1]) for m in messages}
    assert (
        "dt-buyer",
        "✅ PO-A（第1版）已审批通过，结果已写回ERP / approved, and the ERP has it",
    ) in sent
    assert any(user == "dt-buyer" and line.startswith("⚠ PO-S") for user, line in sent)
    [to_admins] = [m for m in messages if m["userIds"] == ["dt-admin"]]
    assert to_admins["title"] == "用户未映射 / ERP user without a DingTalk id"
    assert "u9999" in to_admins["text"] and "PO-U" in to_admins["text"]


async def test_outcomes_are_skipped_when_the_budget_is_nearly_spent(side: Side) -> None:
    notifier = DingTalkNotifier(
        side.client, ["dt-admin"], Renderer(), users={"u1": "dt-buyer"}, used_fraction=lambda: 0.95
    )
    details = {"outcome": "approved", "erp_user": "u1"}
    await notifier.notify(Notice("outcome", "PO-1 approved", "AP-1", "PO-1", details))
    await notifier.notify(failed(1))  # admins' alerts always go out
    assert [m["userIds"] for m in await side.messages()] == [["dt-admin"]]


async def test_budget_warning_once_a_month_across_restarts(db: Database) -> None:
    clock = FakeClock()
    for month_start in ("2026-11-23", "2026-11-23", "2026-12-01"):
        clock.at = local(f"{month_start} 10:00")
        # A new meter and alert each time: a restart; the meter fires its hook once per process.
        meter = CallMeter(db, budget=100, clock=clock)
        async with BudgetAlert(db, clock) as alert:
            alert.watch(meter)
            for _ in range(85):
                meter.record("workflow.processInstances.get")
    async with db.read() as conn:
        payloads = [row[0] for row in await conn.execute(select(job.c.payload))]
    assert [(p["kind"], p["details"]["month"]) for p in payloads] == [
        ("budget", "2026-11"),
        ("budget", "2026-12"),
    ]
    assert "80%" in payloads[0]["text"]
