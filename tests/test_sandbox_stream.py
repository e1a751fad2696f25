"""The stream gateway on the wire: tickets, frames, ACKs and redelivery, pings, disconnects."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from urllib.parse import quote_plus

import aiohttp
import pytest

from bot.sandbox import FaultOptions, Sandbox
from tests.test_sandbox_support import APP_KEY, APP_SECRET, Api, FakeClock, RawStream, fast

EVENTS = [{"type": "EVENT", "topic": "*"}]
OPEN = "/v1.0/gateway/connections/open"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def open_ticket(session: aiohttp.ClientSession, url: str) -> dict[str, str]:
    body = {"clientId": APP_KEY, "clientSecret": APP_SECRET, "subscriptions": EVENTS}
    async with session.post(url + OPEN, json=body) as resp:
        assert resp.status == 200
        answer: dict[str, str] = await resp.json()
        return answer


async def test_ticket_is_single_use_and_expires(session: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with Sandbox(fast(), clock=clock) as sandbox:
        opened = await open_ticket(session, sandbox.url)
        assert set(opened) == {"endpoint", "ticket"}
        assert opened["endpoint"] == sandbox.url.replace("http://", "ws://") + "/connect"
        url = f"{opened['endpoint']}?ticket={quote_plus(opened['ticket'])}"
        ws = await session.ws_connect(url)
        with pytest.raises(aiohttp.WSServerHandshakeError) as reused:
            await session.ws_connect(url)
        assert reused.value.status == 401
        await ws.close()
        stale = await open_ticket(session, sandbox.url)
        clock.advance(91)
        with pytest.raises(aiohttp.WSServerHandshakeError) as expired:
            await session.ws_connect(f"{stale['endpoint']}?ticket={quote_plus(stale['ticket'])}")
        assert expired.value.status == 401


async def test_event_frames_are_shaped_as_dingtalk_sends_them(
    session: aiohttp.ClientSession,
) -> None:
    async with Sandbox(fast()) as sandbox, RawStream(session, sandbox.url, EVENTS) as stream:
        api = Api(session, sandbox.url)
        await api.login()
        instance_id = await api.create()
        frame = await stream.frame("EVENT")
        assert frame["specVersion"] == "1.0"
        headers = frame["headers"]
        assert headers["topic"] == "*"
        assert headers["contentType"] == "application/json"
        assert headers["eventType"] == "bpms_instance_change"
        assert headers["eventCorpId"] == sandbox.options.corp_id
        assert headers["eventUnifiedAppId"] == sandbox.options.unified_app_id
        assert headers["eventBornTime"].isdigit() and headers["time"].isdigit()
        assert headers["eventId"] and headers["messageId"]
        assert isinstance(frame["data"], str)  # data is always a JSON string
        data = json.loads(frame["data"])
        assert (data["processInstanceId"], data["type"], data["staffId"]) == (
            instance_id,
            "start",
            "u1001",
        )
        assert "result" not in data
        await stream.ack(frame)
        task_frame = await stream.frame("EVENT")
        assert task_frame["headers"]["eventType"] == "bpms_task_change"
        task = json.loads(task_frame["data"])
        assert (task["type"], task["staffId"], type(task["taskId"])) == ("start", "manager1", int)
        await stream.ack(task_frame)
        events = await sandbox.wait_events_settled(5)
        assert [e["status"] for e in events] == ["delivered", "delivered"]


async def test_later_or_missing_ack_means_redelivery(session: aiohttp.ClientSession) -> None:
    async with Sandbox(fast(ack_timeout=0.3)) as sandbox:
        async with RawStream(session, sandbox.url, EVENTS) as stream:
            api = Api(session, sandbox.url)
            await api.login()
            await api.create()
            frames = [await stream.frame("EVENT"), await stream.frame("EVENT")]
            by_type = {f["headers"]["eventType"]: f for f in frames}
            refused, ignored = by_type["bpms_instance_change"], by_type["bpms_task_change"]
            started = time.monotonic()
            await stream.ack(refused, code=500, status="LATER")
            # The refused one comes back after the short redelivery delay, with a new messageId.
            again = await stream.frame("EVENT")
            assert again["headers"]["eventId"] == refused["headers"]["eventId"]
            assert again["headers"]["messageId"] != refused["headers"]["messageId"]
            await stream.ack(again)
            # The unacknowledged one comes back once the ACK timeout has passed.
            repeat = await stream.frame("EVENT")
            assert repeat["headers"]["eventId"] == ignored["headers"]["eventId"]
            assert time.monotonic() - started >= 0.25
            await stream.ack(repeat)
            events = await sandbox.wait_events_settled(5)
        assert [e["deliveries"] for e in events] == [2, 2]
        stats = (await sandbox.stats())["events"]
        assert (stats["redelivered"], stats["delivered"]) == (2, 2)


async def test_events_wait_for_a_connection(session: aiohttp.ClientSession) -> None:
    async with Sandbox(fast()) as sandbox:
        api = Api(session, sandbox.url)
        await api.login()
        instance_id = await api.create()
        await asyncio.sleep(0.1)
        assert [e["status"] for e in await sandbox.events()] == ["pending", "pending"]
        async with RawStream(session, sandbox.url, EVENTS) as stream:
            frames = [await stream.frame("EVENT"), await stream.frame("EVENT")]
            for frame in frames:
                await stream.ack(frame)
            assert {json.loads(f["data"])["processInstanceId"] for f in frames} == {instance_id}
            await sandbox.wait_events_settled(5)


async def test_server_pings_and_counts_the_echo(session: aiohttp.ClientSession) -> None:
    async with (
        Sandbox(fast(ping_interval=0.1)) as sandbox,
        RawStream(session, sandbox.url, EVENTS) as stream,
    ):
        ping = await stream.frame("SYSTEM")
        assert ping["headers"]["topic"] == "ping"
        assert "opaque" in json.loads(ping["data"])
        assert stream.ws is not None
        echo = {"code": 200, "headers": ping["headers"], "message": "OK", "data": ping["data"]}
        await stream.ws.send_str(json.dumps(echo))
        await asyncio.sleep(0.05)
        [conn] = (await sandbox.stats())["stream"]["connections"]
        assert conn["pongs"] == 1


async def test_disconnect_then_close_after_the_delay(session: aiohttp.ClientSession) -> None:
    async with (
        Sandbox(fast(disconnect_close_delay=0.4)) as sandbox,
        RawStream(session, sandbox.url, EVENTS) as stream,
    ):
        assert await sandbox.disconnect_all() == 1
        started = time.monotonic()
        frame = await stream.frame("SYSTEM")
        assert frame["headers"]["topic"] == "disconnect"
        assert json.loads(frame["data"]) == {"reason": "connection is expired"}
        assert stream.ws is not None
        msg = await stream.ws.receive(timeout=3)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert time.monotonic() - started >= 0.35  # never closed at once


async def test_periodic_disconnects(session: aiohttp.ClientSession) -> None:
    options = fast(faults=FaultOptions(disconnect_every=0.2), disconnect_close_delay=5)
    async with Sandbox(options) as sandbox, RawStream(session, sandbox.url, EVENTS) as stream:
        frame = await stream.frame("SYSTEM", timeout=2)
        assert frame["headers"]["topic"] == "disconnect"
        assert (await sandbox.stats())["stream"]["disconnects"] == 1


async def test_a_cut_connection_redelivers_its_unacked_events(
    session: aiohttp.ClientSession,
) -> None:
    async with Sandbox(fast(ack_timeout=30)) as sandbox:
        api = Api(session, sandbox.url)
        await api.login()
        async with RawStream(session, sandbox.url, EVENTS) as stream:
            await api.create()
            unacked = [await stream.frame("EVENT"), await stream.frame("EVENT")]
            async with session.post(f"{sandbox.url}/sandbox/connections/drop") as resp:
                assert await resp.json() == {"dropped": 1}
            assert stream.ws is not None
            msg = await stream.ws.receive(timeout=3)
            # No disconnect frame, no close handshake: the socket is just gone.
            assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR), msg
        started = time.monotonic()
        async with RawStream(session, sandbox.url, EVENTS) as again:
            frames = [await again.frame("EVENT"), await again.frame("EVENT")]
            for frame in frames:
                await again.ack(frame)
            events = await sandbox.wait_events_settled(5)
        # Redelivered when the cut was noticed, not after the 30-s ACK timeout.
        assert time.monotonic() - started < 5
        ids = {f["headers"]["eventId"] for f in unacked}
        assert {f["headers"]["eventId"] for f in frames} == ids
        assert [e["deliveries"] for e in events] == [2, 2]
        stats = await sandbox.stats()
        assert stats["stream"]["drops"] == 1 and stats["stream"]["disconnects"] == 0


async def test_periodic_drops(session: aiohttp.ClientSession) -> None:
    options = fast(faults=FaultOptions(drop_every=0.2))
    async with Sandbox(options) as sandbox, RawStream(session, sandbox.url, EVENTS) as stream:
        assert stream.ws is not None
        msg = await stream.ws.receive(timeout=3)
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        assert (await sandbox.stats())["stream"]["drops"] == 1
        await sandbox.set_faults(drop_every=None)


async def test_a_periodic_cut_waits_for_an_event_in_flight(
    session: aiohttp.ClientSession,
) -> None:
    async with Sandbox(fast(ack_timeout=30)) as sandbox:
        api = Api(session, sandbox.url)
        await api.login()
        async with RawStream(session, sandbox.url, EVENTS) as stream:
            cut = asyncio.create_task(sandbox.state.gateway.drop_in_flight(5.0))
            await asyncio.sleep(0.2)
            assert not cut.done()  # nothing in flight yet: it waits
            started = time.monotonic()
            await api.create()
            assert await cut == 1
            assert time.monotonic() - started < 1.0  # cut as the push went out
            assert stream.ws is not None
            while (await stream.ws.receive(timeout=3)).type == aiohttp.WSMsgType.TEXT:
                pass  # a frame may have left before the cut; it is never acknowledged
        events = await sandbox.events()
        assert [e["status"] for e in events] == ["pending", "pending"]
        assert (await sandbox.stats())["stream"]["drops"] == 1


async def test_dropped_events_are_never_delivered(session: aiohttp.ClientSession) -> None:
    options = fast(faults=FaultOptions(event_drop_rate=1.0))
    async with Sandbox(options) as sandbox, RawStream(session, sandbox.url, EVENTS) as stream:
        api = Api(session, sandbox.url)
        await api.login()
        await api.create()
        with pytest.raises(TimeoutError):
            await stream.frame("EVENT", timeout=0.3)
        assert [e["status"] for e in await sandbox.events()] == ["dropped", "dropped"]
        assert (await sandbox.stats())["events"]["dropped"] == 2


async def test_duplicates_on_demand(session: aiohttp.ClientSession) -> None:
    async with Sandbox(fast()) as sandbox, RawStream(session, sandbox.url, EVENTS) as stream:
        api = Api(session, sandbox.url)
        await api.login()
        await api.create()
        first = await stream.frame("EVENT")
        await stream.ack(first)
        await stream.ack(await stream.frame("EVENT"))
        event_id = first["headers"]["eventId"]
        async with session.post(f"{sandbox.url}/sandbox/events/{event_id}/redeliver") as resp:
            assert resp.status == 200
        duplicate = await stream.frame("EVENT")
        assert duplicate["headers"]["eventId"] == event_id
        await stream.ack(duplicate)


async def test_each_event_goes_to_one_connection(session: aiohttp.ClientSession) -> None:
    async with (
        Sandbox(fast(seed=7)) as sandbox,
        RawStream(session, sandbox.url, EVENTS) as one,
        RawStream(session, sandbox.url, EVENTS) as two,
    ):
        api = Api(session, sandbox.url)
        await api.login()
        for _ in range(8):
            await api.create()
        seen: dict[str, list[str]] = {"one": [], "two": []}

        async def drain(name: str, stream: RawStream) -> None:
            while True:
                try:
                    frame = await stream.frame("EVENT", timeout=0.5)
                except TimeoutError:
                    return
                seen[name].append(frame["headers"]["eventId"])
                await stream.ack(frame)

        await asyncio.gather(drain("one", one), drain("two", two))
        assert seen["one"] and seen["two"]
        assert not set(seen["one"]) & set(seen["two"])
        assert sorted(seen["one"] + seen["two"]) == sorted(
            e["eventId"] for e in await sandbox.events()
        )
