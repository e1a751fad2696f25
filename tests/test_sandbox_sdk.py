"""The official dingtalk-stream SDK against the sandbox: events, ACKs, redelivery, robot chat."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import dingtalk_stream
import pytest
import websockets.exceptions  # noqa: F401  # the SDK's except clause needs it loaded (spec §5.8)
from dingtalk_stream import AckMessage, ChatbotMessage, DingTalkStreamClient

from bot.sandbox import Sandbox
from tests.test_sandbox_support import APP_KEY, APP_SECRET, Api, fast

SDK_TASKS = {"DingTalkStreamClient.keepalive", "DingTalkStreamClient.background_task"}


class Recorder(dingtalk_stream.EventHandler):  # type: ignore[misc]
    """Keeps every event; refuses (code 500) or raises (no ACK) on first sight if told to."""

    def __init__(self, mode: str = "ok") -> None:
        super().__init__()
        self.mode = mode
        self.seen: list[tuple[str, str, int, dict[str, Any]]] = []

    async def process(self, event: Any) -> tuple[int, str]:
        headers = event.headers
        first = all(s[1] != headers.event_id for s in self.seen)
        self.seen.append(
            (headers.event_type, headers.event_id, headers.event_born_time, event.data)
        )
        if first and self.mode == "refuse":
            return AckMessage.STATUS_SYSTEM_EXCEPTION, "try later"
        if first and self.mode == "raise":
            raise RuntimeError("handler failed: the SDK sends no ACK")
        return AckMessage.STATUS_OK, "OK"


class EchoBot(dingtalk_stream.ChatbotHandler):  # type: ignore[misc]
    """Answers every message through the sessionWebhook, as the SDK's README shows."""

    async def process(self, callback: Any) -> tuple[int, str]:
        incoming = ChatbotMessage.from_dict(callback.data)
        self.reply_markdown("echo", f"you said **{incoming.text.content.strip()}**", incoming)
        return AckMessage.STATUS_OK, "OK"


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """The sandbox in its own thread: the SDK blocks the test's loop on every HTTP call."""
    sandbox = Sandbox(fast(ack_timeout=0.5, ping_interval=0.2, seed=3)).start_in_thread()
    monkeypatch.setattr(DingTalkStreamClient, "OPEN_CONNECTION_API", sandbox.open_connection_url)
    try:
        yield sandbox
    finally:
        sandbox.stop()


@contextlib.asynccontextmanager
async def sdk(sandbox: Sandbox, events: Recorder | None, bot: bool = False) -> AsyncIterator[None]:
    """One SDK client running in this loop until the block ends."""
    client = DingTalkStreamClient(dingtalk_stream.Credential(APP_KEY, APP_SECRET))
    if events is not None:
        client.register_all_event_handler(events)
    if bot:
        client.register_callback_handler(ChatbotMessage.TOPIC, EchoBot())
    before = (await sandbox.stats())["stream"]["connectionsOpened"]
    task = asyncio.create_task(client.start())
    try:
        await until(lambda s: s["stream"]["connectionsOpened"] > before, sandbox)
        yield
    finally:
        await stop(task)


async def stop(task: asyncio.Task[None]) -> None:
    """Stop the SDK: it swallows the first cancel (spec §5.8) and leaves tasks behind."""
    for _ in range(100):
        if task.done():
            break
        task.cancel()
        await asyncio.wait({task}, timeout=0.05)
    assert task.done()
    leftovers = [
        t
        for t in asyncio.all_tasks()
        if t.get_coro().__qualname__ in SDK_TASKS  # type: ignore[union-attr]
    ]
    for leftover in leftovers:
        leftover.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)


async def until(check: Any, sandbox: Sandbox, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
    """Poll the stats until `check(stats)` holds."""
    async with asyncio.timeout(timeout):
        # The state lives on the sandbox's thread, so poll it rather than wait on an Event.
        while not check(stats := await sandbox.stats()):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    return stats


async def approve_one(sandbox: Sandbox) -> str:
    """Create an instance over HTTP and approve it from the control API."""
    async with aiohttp.ClientSession() as session:
        api = Api(session, sandbox.url)
        await api.login()
        instance_id = await api.create()
    await sandbox.approve(instance_id, remark="同意")
    return instance_id


async def test_sdk_receives_and_acks_an_approvals_events(sandbox: Sandbox) -> None:
    recorder = Recorder()
    async with sdk(sandbox, recorder):
        instance_id = await approve_one(sandbox)
        events = await sandbox.wait_events_settled(10)
        stats = await sandbox.stats()
    assert [(e["status"], e["deliveries"]) for e in events] == [("delivered", 1)] * 4
    # Each frame is handled in its own task by the SDK, so compare without order.
    flow = sorted((t, d["type"], d.get("result") or "") for t, _, _, d in recorder.seen)
    assert flow == [
        ("bpms_instance_change", "finish", "agree"),
        ("bpms_instance_change", "start", ""),
        ("bpms_task_change", "finish", "agree"),
        ("bpms_task_change", "start", ""),
    ]
    assert {d["processInstanceId"] for *_, d in recorder.seen} == {instance_id}
    assert sorted(s[1] for s in recorder.seen) == sorted(e["eventId"] for e in events)
    assert all(isinstance(s[2], int) for s in recorder.seen)  # eventBornTime parsed as a number
    assert stats["stream"]["acksOk"] == 4
    [conn] = stats["stream"]["connections"]
    assert conn["clientId"] == APP_KEY
    assert conn["subscriptions"] == [{"type": "EVENT", "topic": "*"}]


@pytest.mark.parametrize("mode", ["refuse", "raise"])
async def test_unacked_events_are_redelivered(sandbox: Sandbox, mode: str) -> None:
    recorder = Recorder(mode)
    async with sdk(sandbox, recorder):
        await approve_one(sandbox)
        events = await sandbox.wait_events_settled(10)
    assert [(e["status"], e["deliveries"]) for e in events] == [("delivered", 2)] * 4
    ids = [s[1] for s in recorder.seen]
    assert sorted(ids) == sorted(e["eventId"] for e in events for _ in range(2))
    stream = (await sandbox.stats())["stream"]
    if mode == "refuse":
        assert stream["acksFailed"] == 4
    else:
        assert stream["ackTimeouts"] == 4


async def test_two_sdk_connections_share_the_events(sandbox: Sandbox) -> None:
    one, two = Recorder(), Recorder()
    async with sdk(sandbox, one), sdk(sandbox, two):
        for _ in range(4):
            await approve_one(sandbox)
        events = await sandbox.wait_events_settled(10)
    first, second = [s[1] for s in one.seen], [s[1] for s in two.seen]
    assert first and second
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(e["eventId"] for e in events)
    assert len(events) == 16


async def test_robot_message_and_reply_through_the_sdk(sandbox: Sandbox) -> None:
    async with sdk(sandbox, None, bot=True):
        result = await sandbox.deliver_chat("manager1", "pending")
    [reply] = result["replies"]
    assert (reply["kind"], reply["msgType"], reply["title"]) == ("session", "markdown", "echo")
    assert reply["text"] == "you said **pending**"
    assert reply["raw"]["at"] == {"atUserIds": ["manager1"]}


async def test_sdk_reconnects_after_disconnect_and_answers_pings(sandbox: Sandbox) -> None:
    recorder = Recorder()
    async with sdk(sandbox, recorder):
        await until(lambda s: s["stream"]["connections"][0]["pongs"] >= 1, sandbox)
        assert await sandbox.disconnect_all() == 1
        # The SDK ACKs `disconnect`, closes and reconnects with a new ticket.
        await until(
            lambda s: s["stream"]["connectionsOpened"] == 2 and s["stream"]["open"] == 1, sandbox
        )
        await approve_one(sandbox)
        events = await sandbox.wait_events_settled(10)
    assert [e["status"] for e in events] == ["delivered"] * 4
    assert len(recorder.seen) == 4
