"""The stream intake against the DingTalk sandbox (its own thread and loop): §5 end to end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from approvals.db.tables import inbox, job
from approvals.decisions import DecisionResult
from approvals.errors import StorageUnavailable
from approvals.memory import MemoryGateway, MemoryInstance
from approvals.ports import InstanceRequest
from bot.events import ApprovalEvent, ChangeType, ChatMessage, EventKind, EventSink
from bot.keys import DECISIONS
from bot.sandbox import Sandbox, SandboxOptions
from bot.stream import Backoff, StreamAuthError, StreamIntake
from tests import dbutil
from tests.harness import Bridge, bridge_settings, running_bridge
from tests.test_events import pending

APP_KEY, APP_SECRET = "dingstreamtestapp", "stream-test-secret"
FAST = SandboxOptions(
    app_key=APP_KEY,
    app_secret=APP_SECRET,
    ping_interval=0.2,
    ack_timeout=2.0,
    redelivery_delay=0.1,
    disconnect_close_delay=1.0,
    shutdown_timeout=1.0,
)


class SandboxGateway(MemoryGateway):
    """Raises the bridge's instances in the sandbox, through its OpenAPI."""

    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        super().__init__()
        self.url, self.http = url, http

    async def create_instance(self, request: InstanceRequest) -> str:
        credentials = {"appKey": APP_KEY, "appSecret": APP_SECRET}
        async with self.http.post(self.url + "/v1.0/oauth2/accessToken", json=credentials) as r:
            token = (await r.json())["accessToken"]
        body = {
            "processCode": "PROC-SANDBOX",
            "originatorUserId": request.originator,
            "deptId": -1,
            "formComponentValues": [{"name": "桥接单号", "value": request.reference}],
            "approvers": [{"actionType": "NONE", "userIds": ["manager1"]}],
        }
        headers = {"x-acs-dingtalk-access-token": token}
        url = self.url + "/v1.0/workflow/processInstances"
        async with self.http.post(url, json=body, headers=headers) as r:
            assert r.status == 200, await r.text()
            instance_id: str = (await r.json())["instanceId"]
        self.instances[instance_id] = MemoryInstance(instance_id, request)
        return instance_id


@dataclass
class Chats:
    """A chat handler that keeps what it got."""

    got: list[ChatMessage] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, message: ChatMessage) -> None:
        self.got.append(message)
        self.arrived.set()


@dataclass
class World:
    """A sandbox, a bridge raising instances there, and the intake between them."""

    sandbox: Sandbox
    bridge: Bridge
    http: aiohttp.ClientSession

    def intake(self, sink: EventSink | None = None, **kwargs: Any) -> StreamIntake:
        """An intake for the sandbox's gateway (fast backoff unless given)."""
        options: dict[str, Any] = {
            "client_id": APP_KEY,
            "client_secret": APP_SECRET,
            "backoff": Backoff(0.05, 0.2),
            "watchdog_s": 5.0,
            **kwargs,
        }
        return StreamIntake(
            self.http,
            api_base=self.sandbox.url,
            sink=sink or EventSink(self.bridge.app[DECISIONS]),
            **options,
        )

    async def events_of(self, instance_id: str) -> list[dict[str, Any]]:
        """The instance's events once none is pending, as (eventType, type) and delivery."""
        events = await self.sandbox.wait_events_settled(10)
        return [e for e in events if e["data"]["processInstanceId"] == instance_id]

    async def inbox(self) -> set[str]:
        async with self.bridge.db.read() as conn:
            return set((await conn.execute(select(inbox.c.event_key))).scalars())


@asynccontextmanager
async def world(tmp_path: Path, template: Path, **options: Any) -> AsyncIterator[World]:
    """The sandbox in its own thread (as a real server would be), and a bridge on SQLite."""
    sandbox = Sandbox(SandboxOptions(**{**FAST.__dict__, **options}))
    await asyncio.to_thread(sandbox.start_in_thread)
    try:
        async with aiohttp.ClientSession() as http:
            url = dbutil.copy_sqlite(template, tmp_path / "bridge.db")
            gateway = SandboxGateway(sandbox.url, http)
            async with running_bridge(bridge_settings(url), gateway=gateway) as bridge:
                yield World(sandbox, bridge, http)
    finally:
        await sandbox.stop_async()


async def until(check: Callable[[], bool], wait_s: float = 5.0) -> None:
    """Poll until a condition holds."""
    deadline = time.monotonic() + wait_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def open_faults(sandbox: Sandbox) -> int:
    """How many open-connection calls the sandbox failed on purpose."""
    apis = (await sandbox.stats())["calls"]["apis"]
    faults: int = apis.get("POST /v1.0/gateway/connections/open", {}).get("faults", 0)
    return faults


def shape(events: list[dict[str, Any]]) -> set[tuple[str, str, str | None]]:
    return {(e["eventType"], e["data"]["type"], e["data"].get("result")) for e in events}


async def test_an_approvals_events_are_delivered_and_applied_once(
    tmp_path: Path, sqlite_template: Path
) -> None:
    async with world(tmp_path, sqlite_template) as w, w.intake() as intake:
        approval_id, instance_id = await pending(w.bridge, "PO-S1")
        await w.sandbox.approve(instance_id, remark="好")
        events = await w.events_of(instance_id)
        assert shape(events) == {
            ("bpms_instance_change", "start", None),
            ("bpms_task_change", "start", None),
            ("bpms_task_change", "finish", "agree"),
            ("bpms_instance_change", "finish", "agree"),
        }
        assert [(e["status"], e["deliveries"]) for e in events] == [("delivered", 1)] * 4
        # Acked only after the commit: by now the decision is in the database.
        assert (await w.bridge.revision(approval_id, 1)).decision == "approved"
        finishes = [e["eventId"] for e in events if e["data"]["type"] == "finish"]
        assert {f"dingtalk:{e}" for e in finishes} <= await w.inbox()
        # DingTalk may push an event again after an ACK (§4.4): acked again, applied once.
        acked = (await w.sandbox.stats())["stream"]["acksOk"]
        for event_id in finishes:
            await w.sandbox.redeliver(event_id)
        await until(lambda: intake.connected)
        for _ in range(500):
            if (await w.sandbox.stats())["stream"]["acksOk"] == acked + 2:
                break
            await asyncio.sleep(0.01)
        assert (await w.sandbox.stats())["stream"]["acksOk"] == acked + 2
        async with w.bridge.db.read() as conn:
            query = select(func.count()).where(job.c.kind == "write_back")
            assert (await conn.execute(query)).scalar_one() == 1


class FailsOnce(EventSink):
    """The first instance finish fails to commit (the database was busy)."""

    failed: list[str]

    async def apply(self, event: ApprovalEvent) -> DecisionResult:
        first = not getattr(self, "failed", None)
        if first and event.kind is EventKind.INSTANCE and event.type is ChangeType.FINISH:
            self.failed = [event.key]
            raise StorageUnavailable("database is locked")
        return await super().apply(event)


async def test_an_event_that_fails_is_not_acked_and_is_redelivered(
    tmp_path: Path, sqlite_template: Path
) -> None:
    async with world(tmp_path, sqlite_template) as w:
        sink = FailsOnce(w.bridge.app[DECISIONS])
        async with w.intake(sink):
            approval_id, instance_id = await pending(w.bridge, "PO-S2")
            await w.sandbox.refuse(instance_id, remark="太贵")
            events = await w.events_of(instance_id)
        finish = next(
            e
            for e in events
            if e["eventType"] == "bpms_instance_change" and e["data"]["type"] == "finish"
        )
        assert (finish["status"], finish["deliveries"]) == ("delivered", 2)
        assert sink.failed == [f"dingtalk:{finish['eventId']}"]
        assert (await w.sandbox.stats())["stream"]["acksFailed"] == 1
        assert (await w.bridge.revision(approval_id, 1)).decision == "rejected"


async def test_a_dropped_connection_comes_back_with_backoff_and_loses_nothing(
    tmp_path: Path, sqlite_template: Path
) -> None:
    async with (
        world(tmp_path, sqlite_template) as w,
        w.intake(backoff=Backoff(0.4, 2.0)) as intake,
    ):
        approval_id, instance_id = await pending(w.bridge, "PO-S3")
        first = intake.connected_since
        told = time.monotonic()
        assert await w.sandbox.disconnect_all() == 1
        await w.sandbox.approve(instance_id)  # while the connection is being replaced
        await until(lambda: intake.connected and intake.connected_since != first)
        assert intake.connected_since is not None
        assert intake.connected_since - told >= 0.2  # half the first step, at least
        await w.events_of(instance_id)
        assert (await w.bridge.revision(approval_id, 1)).decision == "approved"
        # A server that keeps closing must not cause a hot reconnect loop (§5.8).
        opened = intake.connections
        await w.sandbox.set_faults(disconnect_every=0.05)
        await asyncio.sleep(1.5)
        await w.sandbox.set_faults(disconnect_every=None)
        assert 1 <= intake.connections - opened <= 4
        # Nor does a gateway that refuses to open connections (a 503 on every call).
        await w.sandbox.set_faults(error_rate=1.0, error_status=503)
        await w.sandbox.disconnect_all()
        seen: list[float] = []
        deadline = time.monotonic() + 10
        while len(seen) < 2:
            assert time.monotonic() < deadline, "the intake stopped retrying"
            faults = await open_faults(w.sandbox)
            if faults > len(seen):
                seen.append(time.monotonic())
            assert faults <= 2
            await asyncio.sleep(0.01)
        await w.sandbox.set_faults(error_rate=0.0)
        assert seen[1] - seen[0] >= 0.5  # the streak of failures keeps the delay near its cap
        await until(lambda: intake.connected, 10)


async def test_a_network_that_cuts_working_connections_does_not_grow_the_backoff(
    tmp_path: Path, sqlite_template: Path
) -> None:
    async with (
        world(tmp_path, sqlite_template, ping_interval=0.05) as w,
        w.intake(backoff=Backoff(0.4, 30.0)) as intake,
    ):
        waits: list[float] = []
        for _ in range(6):
            # Each connection works (its pings arrive), then the network cuts it.
            await until(
                lambda: (
                    intake.connected and (intake.last_frame_at or 0) > (intake.connected_since or 0)
                )
            )
            cut = time.monotonic()
            assert await w.sandbox.drop_all() == 1
            await until(lambda: not intake.connected)
            await until(lambda: intake.connected)
            waits.append(time.monotonic() - cut)
        # Never more than the first step (0.4 s) and a connect: a failure streak would have
        # doubled it each time (1.6 s by the fourth cut, 6.4 s by the sixth).
        assert max(waits) < 1.0, waits
        assert (await w.sandbox.stats())["stream"]["drops"] == 6


async def test_the_watchdog_replaces_a_silent_connection(
    tmp_path: Path, sqlite_template: Path
) -> None:
    # No pings from the server: the connection carries nothing, as a dead TCP link would.
    async with (
        world(tmp_path, sqlite_template, ping_interval=60.0) as w,
        w.intake(watchdog_s=0.3) as intake,
    ):
        await until(lambda: intake.watchdog_trips >= 2 and intake.connections >= 3)
        await until(lambda: intake.connected)
        stats = (await w.sandbox.stats())["stream"]
        assert stats["connectionsClosed"] >= 2
        assert stats["open"] <= 1


async def test_readiness_follows_the_connection(tmp_path: Path, sqlite_template: Path) -> None:
    async with world(tmp_path, sqlite_template) as w:
        intake = w.intake()
        assert (intake.connected, intake.frame_age()) == (False, None)
        async with intake:
            await until(lambda: intake.connected)
            await asyncio.sleep(0.5)  # pings every 0.2 s, each echoed
            age = intake.frame_age()
            assert age is not None and age < 1.0
            stats = (await w.sandbox.stats())["stream"]
            assert [c["pongs"] > 0 for c in stats["connections"]] == [True]
        assert not intake.connected


class Stuck(EventSink):
    """Never finishes applying an instance finish (a hung database)."""

    async def apply(self, event: ApprovalEvent) -> DecisionResult:
        if event.kind is EventKind.INSTANCE and event.type is ChangeType.FINISH:
            await asyncio.Event().wait()
        return await super().apply(event)


async def test_shutdown_is_quick_even_with_an_event_in_flight(
    tmp_path: Path, sqlite_template: Path
) -> None:
    async with world(tmp_path, sqlite_template) as w:
        intake = w.intake(Stuck(w.bridge.app[DECISIONS]))
        await intake.__aenter__()
        _, instance_id = await pending(w.bridge, "PO-S4")
        await w.sandbox.approve(instance_id)
        await asyncio.sleep(0.3)  # the finish is now stuck in the sink
        started = time.monotonic()
        await intake.__aexit__(None, None, None)
        assert time.monotonic() - started < 2.0
        assert not intake.connected
        for _ in range(100):  # the server notices the close on its own thread
            if (await w.sandbox.stats())["stream"]["open"] == 0:
                break
            await asyncio.sleep(0.01)
        assert (await w.sandbox.stats())["stream"]["open"] == 0
        events = [e for e in await w.sandbox.events() if e["eventType"] == "bpms_instance_change"]
        finish = next(
            e
            for e in events
            if e["data"]["processInstanceId"] == instance_id and e["data"]["type"] == "finish"
        )
        assert finish["status"] == "pending"  # never acked: DingTalk will push it again


async def test_wrong_credentials_stop_startup_with_a_clear_error(
    tmp_path: Path, sqlite_template: Path
) -> None:
    async with world(tmp_path, sqlite_template) as w:
        intake = w.intake(client_secret="wrong")
        with pytest.raises(StreamAuthError, match="authFailed"):
            await intake.__aenter__()
        assert not intake.connected


async def test_robot_messages_reach_the_chat_handler(tmp_path: Path, sqlite_template: Path) -> None:
    async with world(tmp_path, sqlite_template) as w:
        chats = Chats()
        async with w.intake(chat=chats) as intake:
            await until(lambda: intake.connected)
            await w.sandbox.deliver_chat("manager1", "status PO-1", conversation_type="2", wait=0.1)
            await asyncio.wait_for(chats.arrived.wait(), 5)
        [message] = chats.got
        assert (message.text, message.sender_staff_id) == ("status PO-1", "manager1")
        assert message.is_group and message.robot_code == APP_KEY
        assert message.session_webhook.startswith(w.sandbox.url + "/robot/sendBySession")
