"""DingTalk's monthly quota spent: calls held and probed, one ERROR, admins told once each way."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from approvals.db.engine import Database
from approvals.db.tables import job
from approvals.errors import Throttled
from bot.errors import QuotaExhausted
from bot.openapi import DingTalkClient
from bot.quota import EXHAUSTED, PROBE_ANSWER_S, RESTORED, QuotaAlert, QuotaGate
from bot.sandbox import Sandbox, SandboxOptions
from bot.settings import DingTalkConfig
from cards.chat import HealthView, Reply, render_reply
from cards.renderer import Renderer
from cards.web import BudgetView, DashboardView, QueueStatus, StreamStatus, SweepStatus

QUOTA_API = "GET /v1.0/workflow/processInstances"


class Ticks:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Heard:
    """A listener that keeps what it was told."""

    def __init__(self) -> None:
        self.exhausted_at: list[dt.datetime] = []
        self.restored_with: list[tuple[int, int]] = []

    def exhausted(self, since: dt.datetime) -> None:
        self.exhausted_at.append(since)

    def restored(self, since: dt.datetime, at: dt.datetime, refused: int, held: int) -> None:
        self.restored_with.append((refused, held))


def gate(ticks: Ticks, heard: Heard) -> QuotaGate:
    quota = QuotaGate(60.0, monotonic=ticks)
    quota.listen(heard)
    return quota


def test_the_gate_holds_calls_lets_one_probe_through_and_opens_on_its_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ticks, heard = Ticks(), Heard()
    quota = gate(ticks, heard)
    assert quota.admit("a") is False  # closed: calls go, none is a probe
    with caplog.at_level(logging.INFO, "bot.quota"):
        wait = quota.refused_call(False)  # DingTalk answered 90020
        assert 59 <= wait <= 61
        assert quota.refused_call(False) <= 61  # a call already on its way: refused too
        with pytest.raises(QuotaExhausted) as held:
            quota.admit("b")
        assert isinstance(held.value, Throttled)  # a wait, not a failure
        assert held.value.retry_after is not None and 59 <= held.value.retry_after <= 61
        ticks.now += 61
        assert quota.admit("c") is True  # the probe
        with pytest.raises(QuotaExhausted) as behind:
            quota.admit("d")  # while the probe is out: back soon after its answer
        assert behind.value.retry_after is not None
        assert behind.value.retry_after <= PROBE_ANSWER_S + 1
        quota.refused_call(True)  # still spent: the next probe an interval later
        with pytest.raises(QuotaExhausted):
            quota.admit("e")
        ticks.now += 61
        assert quota.admit("f") is True
        quota.release(True)  # the probe met a 5xx: the next call probes instead
        assert quota.admit("g") is True
        quota.succeeded(False)  # a call sent before the quota ran out proves nothing
        assert quota.exhausted_since is not None
        quota.succeeded(True)
    assert quota.exhausted_since is None and quota.admit("h") is False
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "quota is spent" in errors[0].getMessage()
    assert len(heard.exhausted_at) == 1
    assert heard.restored_with == [(3, 3)]  # refused: 2 calls and 1 probe; held: b, d, e
    assert (quota.refused, quota.held) == (3, 3)


def config(base: str, probe_s: float) -> DingTalkConfig:
    return DingTalkConfig(
        api_base=base,
        oapi_base=base,
        app_key="dingquotaapp",
        app_secret=SecretStr("quota-secret"),
        robot_code="dingquotaapp",
        timeout_s=5.0,
        rate_limit_qps=200.0,
        quota_probe_s=probe_s,
    )


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(SandboxOptions(qps=None)) as sb:
        yield sb


async def test_the_client_sends_no_call_while_the_quota_is_spent_but_its_probes(
    sandbox: Sandbox,
) -> None:
    async with aiohttp.ClientSession() as session:
        client = DingTalkClient(session, config(sandbox.url, probe_s=1.0), read_waits=())
        await client.probe()
        used = (await sandbox.stats())["limits"]["usedThisMonth"]
        await sandbox.set_limits(monthly_quota=used)
        with pytest.raises(QuotaExhausted) as first:
            await client.get_instance("x")
        assert first.value.code == "Forbidden.AccessDenied.ApiCountLimitForOrg"
        assert first.value.retry_after is not None and 1 <= first.value.retry_after <= 2.1
        for _ in range(50):  # a busy bridge: all held here, none sent
            with pytest.raises(QuotaExhausted):
                await client.get_instance("x")
        assert (await sandbox.stats())["calls"]["apis"][QUOTA_API]["quota"] == 1
        await asyncio.sleep(1.1)
        with pytest.raises(QuotaExhausted):
            await client.get_instance("x")  # the probe: still refused
        await sandbox.set_limits(monthly_quota=None)  # DingTalk allows calls again
        await asyncio.sleep(1.1)
        with pytest.raises(Exception, match="processInstanceNotExist"):
            await client.get_instance("x")  # the probe, answered: calls flow again
        assert client.quota.exhausted_since is None
        calls = (await sandbox.stats())["calls"]["apis"][QUOTA_API]
        assert (calls["quota"], client.quota.refused, client.quota.held) == (2, 2, 50)


async def test_admins_are_told_once_per_change_whatever_the_replicas(db: Database) -> None:
    woken: list[int] = []
    since = dt.datetime(2026, 12, 4, 9, 30, tzinfo=dt.UTC)
    at = since + dt.timedelta(minutes=47)

    class Now:
        def now(self) -> dt.datetime:
            return at

    alerts = [
        QuotaAlert(db, Now(), probe_every_s=300, on_commit=lambda: woken.append(1))
        for _ in range(2)  # two replicas, each seeing the quota run out
    ]
    for alert in alerts:
        async with alert:
            alert.exhausted(since)
            alert.exhausted(since + dt.timedelta(minutes=3))
            alert.restored(since, at, 7, 120)
    async with db.read() as conn:
        payloads = (await conn.execute(select(job.c.kind, job.c.payload))).all()
    kinds = sorted(p["kind"] for kind, p in payloads if kind == "notify")
    assert kinds == [EXHAUSTED, RESTORED]
    texts = {p["kind"]: p["text"] for _, p in payloads}
    # In Asia/Shanghai; whichever of the two moments in that hour claimed it first.
    assert "2026-12-04 17:3" in texts[EXHAUSTED] and "every 5 min" in texts[EXHAUSTED]
    assert "47 min" in texts[RESTORED] and "7 calls refused" in texts[RESTORED]
    assert woken == [1, 1]


def test_health_and_the_dashboard_say_the_quota_is_spent() -> None:
    renderer = Renderer()
    now = dt.datetime(2026, 12, 4, 10, 0, tzinfo=dt.UTC)
    since = now - dt.timedelta(minutes=12)
    health = HealthView(now, True, None, True, 3, None, 0, 0, 9000, 10000, since, 140.0)
    _, text = render_reply(renderer, Reply("chat/health.md.j2", health), "Asia/Shanghai")
    assert "DingTalk quota spent" in text and "17:48" in text
    fine = HealthView(now, True, None, True, 3, None, 0, 0, 9000, 10000)
    assert "quota spent" not in render_reply(renderer, Reply("chat/health.md.j2", fine), "UTC")[1]
    budget = BudgetView(9000, 10000, {}, since, 140.0)
    page = DashboardView(
        now,
        "Asia/Shanghai",
        [],
        [],
        [],
        StreamStatus("stream", True),
        SweepStatus(True),
        budget,
        QueueStatus(3, 60.0),
        [],
    )
    html = renderer.render("web/dashboard.html.j2", v=page, refresh_s=30)
    assert 'id="quota"' in html and "monthly quota is spent (90020)" in html
    calm = DashboardView(
        now,
        "UTC",
        [],
        [],
        [],
        StreamStatus("stream", True),
        SweepStatus(True),
        BudgetView(9000, 10000, {}),
        QueueStatus(3, 60.0),
        [],
    )
    assert 'id="quota"' not in renderer.render("web/dashboard.html.j2", v=calm, refresh_s=30)
