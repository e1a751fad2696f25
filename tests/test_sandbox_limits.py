"""DingTalk's throttling and quota in the sandbox, call accounting, and injected faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.sandbox import FaultOptions, Sandbox
from tests.test_sandbox_support import Api, FakeClock, fast

GET = "/v1.0/workflow/processInstances"
WORK = "/topapi/message/corpconversation/asyncsend_v2"
NOTICE = {"agent_id": 1, "userid_list": "u1", "msg": {"msgtype": "text", "text": {"content": "hi"}}}
QPS_CODE = "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"
QUOTA_CODE = "Forbidden.AccessDenied.ApiCountLimitForOrg"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def control(session: aiohttp.ClientSession, url: str, body: object) -> tuple[int, object]:
    async with session.post(url + "/sandbox/faults", json=body) as resp:
        return resp.status, await resp.json()


async def test_qps_per_app_per_api(session: aiohttp.ClientSession) -> None:
    async with Sandbox(fast(qps=3)) as sandbox:
        api = Api(session, sandbox.url)
        await api.login()
        params = {"processInstanceId": "nope"}
        answers = [await api.call("GET", GET, params=params) for _ in range(5)]
        assert [a[1]["code"] for a in answers] == ["processInstanceNotExist"] * 3 + [QPS_CODE] * 2
        assert all(a[0] == 403 for a in answers[3:])
        # Another API, and another app on the same API, have their own windows.
        assert (await api.call("POST", "/v1.0/workflow/processes/instanceIds/query", {}))[0] == 400
        other = Api(session, sandbox.url)
        await other.login("another-app", "secret")
        assert (await other.call("GET", GET, params=params))[1]["code"] == "processInstanceNotExist"
        await asyncio.sleep(1.05)
        assert (await api.call("GET", GET, params=params))[1]["code"] == "processInstanceNotExist"
        calls = (await sandbox.stats())["calls"]["apis"][f"GET {GET}"]
        assert (calls["calls"], calls["throttled"], calls["errors"]) == (7, 2, 5)


async def test_default_qps_is_20(session: aiohttp.ClientSession) -> None:
    async with Sandbox(fast(qps=20)) as sandbox:
        api = Api(session, sandbox.url)
        await api.login()
        params = {"processInstanceId": "nope"}
        answers = await asyncio.gather(*(api.call("GET", GET, params=params) for _ in range(25)))
        assert sorted(a[0] for a in answers) == [400] * 20 + [403] * 5


async def test_old_api_throttling_is_errcode_90018(session: aiohttp.ClientSession) -> None:
    async with Sandbox(fast(qps=1)) as sandbox:
        api = Api(session, sandbox.url)
        await api.login()
        query = {"access_token": api.token}
        first = await api.call("POST", WORK, NOTICE, params=query, auth=False)
        second = await api.call("POST", WORK, NOTICE, params=query, auth=False)
        assert first[1]["errcode"] == 0
        assert second[0] == 200 and second[1]["errcode"] == 90018


async def test_monthly_quota_spares_token_calls(session: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with Sandbox(fast(monthly_quota=3), clock=clock) as sandbox:
        api = Api(session, sandbox.url)
        for _ in range(5):
            await api.login()  # token calls never count
        params = {"processInstanceId": "nope"}
        for _ in range(3):
            assert (await api.call("GET", GET, params=params))[0] == 400
        status, body = await api.call("GET", GET, params=params)
        assert (status, body["code"]) == (403, QUOTA_CODE)
        old = await api.call("POST", WORK, NOTICE, params={"access_token": api.token}, auth=False)
        assert old[1]["errcode"] == 90020
        assert await api.login()
        stats = await sandbox.stats()
        assert stats["limits"]["usedThisMonth"] == 3
        assert stats["calls"]["total"]["quota"] == 2
        clock.advance(32 * 86400)  # a new month, a new quota
        assert (await api.call("GET", GET, params=params))[0] == 400


async def test_limits_can_change_at_run_time(session: aiohttp.ClientSession) -> None:
    async with Sandbox(fast()) as sandbox:
        api = Api(session, sandbox.url)
        await api.login()
        assert await control(session, sandbox.url, {"qps": 1}) == (200, await sandbox.faults())
        params = {"processInstanceId": "nope"}
        await api.call("GET", GET, params=params)
        assert (await api.call("GET", GET, params=params))[1]["code"] == QPS_CODE
        await sandbox.set_limits(qps=None)
        assert (await api.call("GET", GET, params=params))[0] == 400


async def test_error_rate_answers_5xx(session: aiohttp.ClientSession) -> None:
    async with Sandbox(fast(faults=FaultOptions(error_rate=1.0))) as sandbox:
        api = Api(session, sandbox.url)
        status, body = await api.call("POST", "/v1.0/oauth2/accessToken", {}, auth=False)
        assert (status, body["code"]) == (500, "systemError")
        status, faults = await control(session, sandbox.url, {"errorRate": 1, "errorStatus": 503})
        assert status == 200 and isinstance(faults, dict) and faults["errorStatus"] == 503
        status, body = await api.call("GET", GET, params={"processInstanceId": "x"})
        assert (status, body["code"]) == (503, "ServiceUnavailable")
        await control(session, sandbox.url, {"reset": True})
        assert await api.login()
        stats = await sandbox.stats()
        assert stats["calls"]["total"]["faults"] == 2


async def test_throttle_rate_answers_as_the_qps_limit_does(session: aiohttp.ClientSession) -> None:
    async with Sandbox(fast(monthly_quota=100)) as sandbox:
        api = Api(session, sandbox.url)
        await api.login()
        status, faults = await control(session, sandbox.url, {"throttleRate": 1})
        assert status == 200 and isinstance(faults, dict) and faults["throttleRate"] == 1
        status, body = await api.call("GET", GET, params={"processInstanceId": "x"})
        assert (status, body["code"]) == (403, QPS_CODE)
        assert set(body) == {"code", "message", "requestid"}
        old = await api.call("POST", WORK, NOTICE, params={"access_token": api.token}, auth=False)
        assert old[0] == 200 and old[1]["errcode"] == 90018
        stats = await sandbox.stats()
        # Refused before it ran, like a real throttle: no quota used.
        assert stats["limits"]["usedThisMonth"] == 0
        assert stats["calls"]["total"]["throttled"] == 2
        await sandbox.set_faults(throttle_rate=0.5)
        codes = [
            (await api.call("GET", GET, params={"processInstanceId": "x"}))[1]["code"]
            for _ in range(40)
        ]
        assert 5 < codes.count(QPS_CODE) < 35
        assert codes.count("processInstanceNotExist") == 40 - codes.count(QPS_CODE)
        await control(session, sandbox.url, {"reset": True})
        assert (await sandbox.faults())["throttleRate"] == 0


async def test_latency_and_hangs(session: aiohttp.ClientSession) -> None:
    async with Sandbox(fast()) as sandbox:
        api = Api(session, sandbox.url)
        await sandbox.set_faults(latency=0.3)
        started = time.monotonic()
        await api.login()
        assert time.monotonic() - started >= 0.3
        await sandbox.set_faults(latency=0.0, hang_rate=1.0, hang_seconds=30.0)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await api.login()
        await sandbox.set_faults(hang_rate=0.0)
        assert await api.login()


async def test_token_invalidation_as_a_fault(session: aiohttp.ClientSession) -> None:
    async with Sandbox(fast()) as sandbox:
        api = Api(session, sandbox.url)
        first = await api.login()
        await control(session, sandbox.url, {"invalidateToken": True})
        status, body = await api.call("GET", GET, params={"processInstanceId": "x"})
        assert (status, body["code"]) == (400, "InvalidAuthentication")
        second = await api.login()
        assert second != first
        await sandbox.set_faults(token_invalidate_every=0.2)
        await asyncio.sleep(0.35)
        assert (await api.call("GET", GET, params={"processInstanceId": "x"}))[0] == 400
        assert (await sandbox.stats())["tokens"]["invalidations"] >= 2


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"errorRate": 2}, "error_rate"),
        ({"throttleRate": -0.1}, "throttle_rate"),
        ({"dropEvery": 0}, "drop_every"),
        ({"bogus": 1}, "unknown"),
        ({"qps": 0}, "qps"),
    ],
)
async def test_bad_fault_settings_are_refused(
    session: aiohttp.ClientSession, body: dict[str, object], fragment: str
) -> None:
    async with Sandbox(fast()) as sandbox:
        status, answer = await control(session, sandbox.url, body)
        assert status == 400 and isinstance(answer, dict)
        assert answer["error"] == "invalid" and fragment in answer["message"]
