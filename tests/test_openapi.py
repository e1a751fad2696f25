"""The DingTalk client against the sandbox over loopback: token, errors, throttling, metering."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from approvals.db import meter as meter_repo
from approvals.db.engine import Database
from approvals.db.meter import CallCounts
from approvals.errors import Permanent, Retryable, Throttled
from bot import openapi
from bot.errors import (
    DingTalkAuthError,
    DingTalkBadRequest,
    DingTalkThrottled,
    DingTalkUnavailable,
    Outcome,
    QuotaExhausted,
    SessionExpired,
    classify,
)
from bot.meter import CallMeter
from bot.openapi import DingTalkClient
from bot.sandbox import Sandbox, SandboxOptions
from bot.sandbox.chat import ChatSession
from bot.settings import DingTalkConfig

TOKEN_API = "POST /v1.0/oauth2/accessToken"
LIST_API = "POST /v1.0/workflow/processes/instanceIds/query"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(SandboxOptions(qps=None)) as sb:
        yield sb


def config(base: str, **overrides: Any) -> DingTalkConfig:
    values: dict[str, Any] = {
        "api_base": base,
        "oapi_base": base,
        "app_key": "dingtestapp",
        "app_secret": SecretStr("test-secret"),
        "robot_code": "dingtestapp",
        "agent_id": 4242,
        "timeout_s": 5.0,
        "rate_limit_qps": 200.0,
    }
    values.update(overrides)
    return DingTalkConfig(**values)


def client(session: aiohttp.ClientSession, sandbox: Sandbox, **kwargs: Any) -> DingTalkClient:
    meter = kwargs.pop("meter", None)
    waits = kwargs.pop("throttle_waits", (0.05, 0.1))
    read_waits = kwargs.pop("read_waits", ())
    clock = kwargs.pop("clock", time.monotonic)
    return DingTalkClient(
        session,
        config(sandbox.url, **kwargs),
        meter=meter,
        throttle_waits=waits,
        read_waits=read_waits,
        clock=clock,
    )


async def api_calls(sandbox: Sandbox, api: str) -> dict[str, int]:
    apis: dict[str, dict[str, int]] = (await sandbox.stats())["calls"]["apis"]
    return apis.get(api, {"calls": 0, "ok": 0, "errors": 0, "throttled": 0, "quota": 0})


async def list_ids(dt_client: DingTalkClient) -> list[str]:
    return (await dt_client.list_instance_ids("PROC-X", 0))[0]


async def test_many_concurrent_calls_share_one_token_fetch(
    session: aiohttp.ClientSession, sandbox: Sandbox
) -> None:
    dt_client = client(session, sandbox)
    results = await asyncio.gather(*(list_ids(dt_client) for _ in range(30)))
    assert results == [[]] * 30
    assert dt_client.token_fetches == 1
    assert (await api_calls(sandbox, TOKEN_API))["calls"] == 1
    assert (await api_calls(sandbox, LIST_API))["ok"] == 30


async def test_a_refused_token_is_fetched_again_exactly_once(
    session: aiohttp.ClientSession, sandbox: Sandbox
) -> None:
    dt_client = client(session, sandbox)
    await list_ids(dt_client)
    assert await sandbox.invalidate_tokens() == 1
    await asyncio.gather(*(list_ids(dt_client) for _ in range(10)))
    assert dt_client.token_fetches == 2
    assert (await api_calls(sandbox, TOKEN_API))["calls"] == 2
    listed = await api_calls(sandbox, LIST_API)
    assert listed["ok"] == 11
    assert 1 <= listed["errors"] <= 10  # refused with the stale token at most once each
    # The old API refuses with errcode 40014 in an HTTP 200: the same single refetch.
    await sandbox.invalidate_tokens()
    assert await dt_client.send_work_notification(None, ["u1"], _markdown()) != []
    assert dt_client.token_fetches == 3


async def test_the_token_is_refreshed_before_it_expires(
    session: aiohttp.ClientSession, sandbox: Sandbox
) -> None:
    now = [1000.0]
    dt_client = client(session, sandbox, clock=lambda: now[0])
    await list_ids(dt_client)
    now[0] += 7200 - 601  # eleven minutes before the 7200 s expire: still cached
    await list_ids(dt_client)
    assert dt_client.token_fetches == 1
    now[0] += 2  # within the last ten minutes: fetched again ahead of expiry
    await list_ids(dt_client)
    assert dt_client.token_fetches == 2


async def test_a_wrong_app_secret_is_a_permanent_auth_error(
    session: aiohttp.ClientSession,
) -> None:
    options = SandboxOptions(app_key="dingtestapp", app_secret="the-right-one")
    async with Sandbox(options) as sandbox:
        dt_client = client(session, sandbox)
        with pytest.raises(DingTalkAuthError) as caught:
            await dt_client.probe()
        assert isinstance(caught.value, Permanent)
        assert caught.value.code == "invalidClientIdOrSecret"
        assert caught.value.status == 400
        with pytest.raises(DingTalkAuthError, match="APP_SECRET"):
            await client(session, sandbox, app_secret=None).probe()


async def test_a_5xx_is_unavailable_and_retryable(
    session: aiohttp.ClientSession, sandbox: Sandbox
) -> None:
    dt_client = client(session, sandbox)
    await dt_client.probe()
    await sandbox.set_faults(error_rate=1.0, error_status=503)
    with pytest.raises(DingTalkUnavailable) as caught:
        await list_ids(dt_client)
    assert isinstance(caught.value, Retryable)
    assert caught.value.status == 503
    assert caught.value.api == openapi.LIST_IDS


async def test_a_hang_past_the_timeout_is_unavailable(
    session: aiohttp.ClientSession, sandbox: Sandbox
) -> None:
    dt_client = client(session, sandbox, timeout_s=0.3)
    await dt_client.probe()
    await sandbox.set_faults(hang_rate=1.0, hang_seconds=1.5)
    started = time.monotonic()
    with pytest.raises(DingTalkUnavailable, match=r"within 0\.3 s"):
        await list_ids(dt_client)
    assert time.monotonic() - started < 1.2
    await sandbox.set_faults(hang_rate=0.0)


async def test_reads_are_retried_in_place_and_writes_are_not(
    session: aiohttp.ClientSession, sandbox: Sandbox
) -> None:
    dt_client = client(session, sandbox, read_waits=(0.3, 0.3, 0.3), timeout_s=0.5)
    await dt_client.probe()
    await sandbox.set_faults(error_rate=1.0)
    listing = asyncio.create_task(list_ids(dt_client))
    await asyncio.sleep(0.4)
    await sandbox.set_faults(error_rate=0.0, hang_rate=1.0, hang_seconds=2.0)
    await asyncio.sleep(0.4)
    await sandbox.set_faults(hang_rate=0.0)
    # A 5xx, then a timeout, then an answer: the read succeeds, nothing left to the caller.
    assert await listing == []
    listed = await api_calls(sandbox, LIST_API)
    assert (listed["faults"], listed["ok"]) == (2, 1)
    await sandbox.set_faults(error_rate=1.0)
    with pytest.raises(DingTalkUnavailable):
        await list_ids(dt_client)  # given up after the waits: 1 + 3 calls
    assert (await api_calls(sandbox, LIST_API))["faults"] == 2 + 4
    body = {"processCode": "PROC-X", "originatorUserId": "dt-1", "formComponentValues": []}
    with pytest.raises(DingTalkUnavailable):
        await dt_client.create_instance(body)  # may have run: the caller decides, not retried
    created = await api_calls(sandbox, "POST /v1.0/workflow/processInstances")
    assert created["calls"] == 1


async def test_a_refused_connection_is_unavailable(session: aiohttp.ClientSession) -> None:
    async with Sandbox(SandboxOptions()) as gone:
        url = gone.url
    dt_client = DingTalkClient(session, config(url))
    with pytest.raises(DingTalkUnavailable, match="unreachable"):
        await dt_client.probe()


async def test_throttling_is_waited_out_inside_the_client(
    session: aiohttp.ClientSession, sandbox: Sandbox, db: Database
) -> None:
    await sandbox.set_limits(qps=1)
    async with CallMeter(db, budget=10_000, flush_every_s=60) as meter:
        dt_client = client(session, sandbox, meter=meter, throttle_waits=(0.7, 0.7, 0.7))
        await list_ids(dt_client)
        await list_ids(dt_client)  # refused at first (1 call a second), then let through
        counts = meter.month_counts()[openapi.LIST_IDS]
    assert counts.calls - counts.throttled == 2
    assert counts.throttled >= 1
    assert counts.failed == 0  # throttling is a wait, never a failure
    assert (await api_calls(sandbox, LIST_API))["throttled"] == counts.throttled


async def test_throttling_that_outlasts_the_waits_is_throttled(
    session: aiohttp.ClientSession, sandbox: Sandbox, db: Database
) -> None:
    await sandbox.set_limits(qps=1)
    async with CallMeter(db, budget=10_000, flush_every_s=60) as meter:
        dt_client = client(session, sandbox, meter=meter, throttle_waits=(0.01, 0.01))
        await list_ids(dt_client)
        with pytest.raises(DingTalkThrottled) as caught:
            await list_ids(dt_client)
        counts = meter.month_counts()[openapi.LIST_IDS]
    assert isinstance(caught.value, Throttled)
    assert caught.value.code == "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"
    assert caught.value.retry_after is not None and caught.value.retry_after > 0
    assert counts == CallCounts(calls=4, throttled=3, failed=0)


async def test_a_burst_runs_at_dingtalks_limit_without_tripping_it(
    session: aiohttp.ClientSession,
) -> None:
    async with Sandbox(SandboxOptions(qps=20)) as sandbox:
        dt_client = DingTalkClient(session, config(sandbox.url, rate_limit_qps=20.0))
        await dt_client.probe()
        started = time.monotonic()
        results = await asyncio.gather(*(list_ids(dt_client) for _ in range(60)))
        elapsed = time.monotonic() - started
        listed = await api_calls(sandbox, LIST_API)
    assert results == [[]] * 60
    assert elapsed >= 59 / 20  # never faster than the limit
    assert elapsed < 59 / 20 * 1.03 + 2.0  # and close to it (one throttle wait at worst)
    assert listed["ok"] == 60
    # Each call also waits a second past the end of the call `rate` places before it, so no
    # second of arrivals holds more than the limit, whatever the jitter: never refused.
    assert listed["throttled"] == 0


async def test_a_spent_monthly_quota_waits_until_the_next_probe(
    session: aiohttp.ClientSession, sandbox: Sandbox
) -> None:
    dt_client = client(session, sandbox)
    await sandbox.set_limits(monthly_quota=0)
    with pytest.raises(QuotaExhausted) as caught:
        await list_ids(dt_client)
    assert isinstance(caught.value, Throttled)  # a wait, not a failure
    assert not isinstance(caught.value, Permanent)
    # dingtalk.quota_probe_s (300 s by default), not 15 minutes; jittered by up to a second.
    assert caught.value.retry_after is not None and 300 <= caught.value.retry_after <= 301
    assert caught.value.code == "Forbidden.AccessDenied.ApiCountLimitForOrg"
    assert dt_client.token_fetches == 1  # token calls are not counted against the quota


async def test_a_bad_request_carries_dingtalks_code(
    session: aiohttp.ClientSession, sandbox: Sandbox
) -> None:
    dt_client = client(session, sandbox)
    with pytest.raises(DingTalkBadRequest) as caught:
        await dt_client.get_instance("no-such-instance")
    assert isinstance(caught.value, Permanent)
    assert caught.value.code == "processInstanceNotExist"
    assert caught.value.status == 400
    assert caught.value.request_id


async def test_workflow_calls(session: aiohttp.ClientSession, sandbox: Sandbox) -> None:
    dt_client = client(session, sandbox)
    body = {
        "processCode": "PROC-X",
        "originatorUserId": "dt-1",
        "deptId": -1,
        "formComponentValues": [{"name": "单据编号", "value": "PO-1"}],
    }
    instance_id = await dt_client.create_instance(body)
    detail = await dt_client.get_instance(instance_id)  # success comes as the string "true"
    assert detail["status"] == "RUNNING"
    assert detail["formComponentValues"][0]["value"] == "PO-1"
    task = detail["tasks"][0]
    await dt_client.execute_task(instance_id, task["taskId"], task["userId"], "agree", "好")
    done = await dt_client.get_instance(instance_id)
    assert (done["status"], done["result"]) == ("COMPLETED", "agree")
    ids, token = await dt_client.list_instance_ids("PROC-X", 0, ["COMPLETED"])
    assert (ids, token) == ([instance_id], None)


async def test_robot_messages_are_batched_by_20_with_in_band_failures(
    session: aiohttp.ClientSession,
) -> None:
    options = SandboxOptions(
        qps=None, invalid_staff_ids=frozenset({"u3"}), flow_controlled_staff_ids=frozenset({"u25"})
    )
    async with Sandbox(options) as sandbox:
        dt_client = client(session, sandbox)
        users = [f"u{i}" for i in range(45)]
        result = await dt_client.send_robot_oto(
            users, "sampleMarkdown", {"title": "T", "text": "x"}
        )
        assert len(result.process_query_keys) == 3
        assert result.invalid == ("u3",)
        assert result.flow_controlled == ("u25",)
        assert (await api_calls(sandbox, "POST /v1.0/robot/oToMessages/batchSend"))["ok"] == 3
        key = await dt_client.send_group("cidXYZ==", "sampleText", {"content": "你好"})
        assert key
        tasks = await dt_client.send_work_notification(None, ["u1", "u2"], _markdown())
        assert len(tasks) == 1 and tasks[0] > 0
        kinds = [m["kind"] for m in await sandbox.messages()]
        assert kinds == ["oto", "oto", "oto", "group", "work_notification"]


async def test_session_replies_check_errcode(
    session: aiohttp.ClientSession, sandbox: Sandbox
) -> None:
    dt_client = client(session, sandbox)
    far = sandbox.state.clock() + 600
    sandbox.state.chat.sessions["live"] = ChatSession("m1", "staff1", "cid1", far)
    webhook = f"{sandbox.url}/robot/sendBySession?session="
    await dt_client.reply_session(webhook + "live", "状态", "**PO-1** 待审批", ["staff1"])
    [sent] = await sandbox.messages()
    assert (sent["kind"], sent["title"], sent["text"]) == ("session", "状态", "**PO-1** 待审批")
    with pytest.raises(SessionExpired) as caught:
        await dt_client.reply_session(webhook + "gone", "t", "x")
    assert caught.value.code == "300001"
    assert dt_client.token_fetches == 0  # a session webhook needs no token


async def test_calls_are_metered_into_the_database_without_token_calls(
    session: aiohttp.ClientSession, sandbox: Sandbox, db: Database
) -> None:
    async with CallMeter(db, budget=100, flush_every_s=60) as meter:
        dt_client = client(session, sandbox, meter=meter)
        for _ in range(3):
            await list_ids(dt_client)
        with pytest.raises(DingTalkBadRequest):
            await dt_client.get_instance("missing")
        assert meter.month_used() == 4
    day = dt.datetime.now(dt.UTC)
    async with db.read() as conn:
        stored = await meter_repo.month(conn, day.strftime("%Y-%m"))
    assert stored == {
        openapi.LIST_IDS: CallCounts(3, 0, 0),
        openapi.GET: CallCounts(1, 0, 1),
    }


class FixedClock:
    def __init__(self, when: dt.datetime) -> None:
        self.when = when

    def now(self) -> dt.datetime:
        return self.when


async def test_the_meter_flushes_on_its_own_and_knows_the_month(db: Database) -> None:
    clock = FixedClock(dt.datetime(2026, 11, 30, 23, 59, tzinfo=dt.UTC))
    async with db.write() as conn:  # another replica's calls this month, and last month's
        await meter_repo.add(conn, {("get", "2026-11-02"): CallCounts(50, 10, 0)})
        await meter_repo.add(conn, {("get", "2026-10-31"): CallCounts(999)})
    fired: list[float] = []
    async with CallMeter(db, budget=100, flush_every_s=0.05, clock=clock) as meter:
        meter.on_budget(0.5, fired.append)
        assert meter.month_used() == 40
        for _ in range(10):
            meter.record("create")
        assert fired == [0.5]  # crossed once, told once
        meter.record("create", throttled=True)
        assert meter.month_used() == 50
        for _ in range(100):
            async with db.read() as conn:
                if "create" in await meter_repo.month(conn, "2026-11"):
                    break
            await asyncio.sleep(0.02)
        clock.when = dt.datetime(2026, 12, 1, 0, 1, tzinfo=dt.UTC)
        meter.record("create", failed=True)
        assert meter.month_used() == 1  # a new month starts from zero
        assert meter.used_fraction() == pytest.approx(0.01)
    assert fired == [0.5]
    async with db.read() as conn:
        november = await meter_repo.month(conn, "2026-11")
        december = await meter_repo.month(conn, "2026-12")
    assert november == {"get": CallCounts(50, 10, 0), "create": CallCounts(11, 1, 0)}
    assert december == {"create": CallCounts(1, 0, 1)}


@pytest.mark.parametrize(
    ("status", "body", "outcome", "error", "code"),
    [
        (200, {"instanceId": "x"}, Outcome.OK, None, None),
        (200, {"result": {}, "success": "true"}, Outcome.OK, None, None),
        (200, {"success": False, "code": "bizFailed"}, Outcome.FAIL, DingTalkBadRequest,
         "bizFailed"),
        (400, {"code": "InvalidAuthentication"}, Outcome.REAUTH, DingTalkAuthError, None),
        (401, {"code": "Unauthorized"}, Outcome.REAUTH, DingTalkAuthError, None),
        (400, {"code": "invalidClientIdOrSecret"}, Outcome.FAIL, DingTalkAuthError, None),
        (403, {"code": "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"}, Outcome.THROTTLE,
         DingTalkThrottled, None),
        (403, {"code": "Forbidden.AccessDenied.QpmLimitForAppkeyAndApi"}, Outcome.THROTTLE,
         DingTalkThrottled, None),
        (403, {"code": "Forbidden.AccessDenied.QpsLimitForApi"}, Outcome.THROTTLE,
         DingTalkThrottled, None),
        (429, {"code": "system.busy"}, Outcome.THROTTLE, DingTalkThrottled, None),
        (403, {"code": "Forbidden.AccessDenied.ApiCountLimitForOrg"}, Outcome.FAIL,
         QuotaExhausted, None),
        (403, {"code": "Forbidden.AccessDenied.AccessTokenPermissionDenied"}, Outcome.FAIL,
         DingTalkAuthError, None),
        (403, None, Outcome.FAIL, DingTalkThrottled, None),  # an IP ban's HTML page
        (400, {"code": "formConverterError"}, Outcome.FAIL, DingTalkBadRequest,
         "formConverterError"),
        (500, {"code": "systemError"}, Outcome.FAIL, DingTalkUnavailable, "systemError"),
        (502, None, Outcome.FAIL, DingTalkUnavailable, None),
        (200, {"errcode": 0, "task_id": 1}, Outcome.OK, None, None),
        (200, {"errcode": 40014}, Outcome.REAUTH, DingTalkAuthError, "40014"),
        (200, {"errcode": 42001}, Outcome.REAUTH, DingTalkAuthError, "42001"),
        (200, {"errcode": 90018}, Outcome.THROTTLE, DingTalkThrottled, "90018"),
        (200, {"errcode": 90002}, Outcome.THROTTLE, DingTalkThrottled, "90002"),
        (200, {"errcode": -1}, Outcome.THROTTLE, DingTalkThrottled, "-1"),
        (200, {"errcode": 90020}, Outcome.FAIL, QuotaExhausted, "90020"),
        (200, {"errcode": 88, "sub_code": ""}, Outcome.FAIL, DingTalkUnavailable, "88"),
        (200, {"errcode": 300001}, Outcome.FAIL, SessionExpired, "300001"),
        (200, {"errcode": 310000}, Outcome.FAIL, DingTalkBadRequest, "310000"),
    ],
)  # fmt: skip
def test_every_answer_maps_to_one_outcome(
    status: int,
    body: dict[str, Any] | None,
    outcome: Outcome,
    error: type[Exception] | None,
    code: str | None,
) -> None:
    got, exc = classify("api", status, body, "<html>denied</html>" if body is None else "")
    assert got is outcome
    if error is None:
        assert exc is None
    else:
        assert type(exc) is error
        assert exc is not None and exc.status == status
        if code is not None:
            assert exc.code == code
    if isinstance(exc, QuotaExhausted):
        assert exc.retry_after == 900.0


def _markdown() -> dict[str, Any]:
    return {"msgtype": "markdown", "markdown": {"title": "审批通过", "text": "#### PO-1 已通过"}}
