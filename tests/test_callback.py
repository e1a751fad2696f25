"""The HTTP-callback route over loopback: pushes applied and answered, forgeries refused."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from approvals.config import DatabaseConfig, PriceConfig
from approvals.db.engine import Database
from approvals.decisions import DecisionService
from approvals.ports import SystemClock
from approvals.states import State
from bot import callback
from bot.crypto import BadKey
from bot.events import EventSink
from bot.keys import DECISIONS
from bot.sandbox.crypto import CallbackCrypto as DingTalkSide
from bot.settings import DingTalkConfig
from tests.harness import Bridge
from tests.test_events import bridge, pending  # noqa: F401  (`bridge` is a fixture)
from tests.test_stream import world

# §6.3 vector A: a real check_url push, signed and encrypted by DingTalk's own library.
TOKEN, AES, OWNER = "mryue", "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7", "ding6ccabc44d2c8d38b"
A_QUERY = {
    "msg_signature": "03044561471240d4a14bb09372dfcfd4fd0e40cb",
    "timestamp": "1608001896814",
    "nonce": "WL4PK6yA",
}
A_BODY = {
    "encrypt": "0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvN"
    "vmBKyDCYxxOK+HZeKju4yhELOFchzNukR+t8SB/qk4ROMu3"
}
CONFIG = DingTalkConfig(
    mode="http", app_key=OWNER, callback_token=SecretStr(TOKEN), callback_aes_key=SecretStr(AES)
)


@dataclass
class Route:
    """The callback route served on loopback, and DingTalk's side of the crypto."""

    url: str
    http: aiohttp.ClientSession
    dingtalk: DingTalkSide

    async def push(self, query: dict[str, str], data: bytes) -> tuple[int, Any]:
        """POST raw bytes with a query; (status, JSON body)."""
        async with self.http.post(self.url, params=query, data=data) as response:
            return response.status, await response.json()

    async def send(
        self,
        payload: Any,
        spelling: tuple[str, str] = ("msg_signature", "timestamp"),
        dingtalk: DingTalkSide | None = None,
    ) -> tuple[int, Any]:
        """Push a payload as DingTalk does: encrypted, signed, its parameters in the query."""
        side = dingtalk or self.dingtalk
        plain = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        encrypt = side.encrypt(plain)
        stamp, nonce = str(int(time.time() * 1000)), "nonce123"
        query = {spelling[0]: side.sign(stamp, nonce, encrypt), spelling[1]: stamp, "nonce": nonce}
        return await self.push(query, json.dumps({"encrypt": encrypt}).encode())


@asynccontextmanager
async def serve(sink: EventSink) -> AsyncIterator[Route]:
    """The route mounted as the composition root would, on a free loopback port."""
    app = web.Application()
    callback.add_route(app)
    app[callback.CALLBACK] = callback.from_config(sink, CONFIG)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}{callback.PATH}"
            yield Route(url, http, DingTalkSide(TOKEN, AES, OWNER))
    finally:
        await runner.cleanup()


@pytest.fixture
async def route(bridge: Bridge) -> AsyncIterator[Route]:  # noqa: F811
    async with serve(EventSink(bridge.app[DECISIONS])) as served:
        yield served


def finish(instance_id: str, result: str = "agree") -> dict[str, Any]:
    """An instance finish in the older HTTP variant (lowercase corpId, no eventId, §4.3)."""
    return {
        "EventType": "bpms_instance_change",
        "corpId": "ding9f50b15bxxxx16741",
        "processInstanceId": instance_id,
        "type": "finish",
        "result": result,
        "finishTime": 1764064801000,
        "staffId": "u1",
    }


async def test_dingtalks_own_check_url_is_answered_with_success(route: Route) -> None:
    status, body = await route.push(A_QUERY, json.dumps(A_BODY).encode())
    assert status == 200
    assert set(body) == {"msg_signature", "timeStamp", "nonce", "encrypt"}
    assert route.dingtalk.open_envelope(body) == "success"


async def test_a_push_is_applied_before_it_is_answered(bridge: Bridge, route: Route) -> None:  # noqa: F811
    approval_id, instance_id = await pending(bridge, "PO-C1")
    started = time.monotonic()
    status, body = await route.send(finish(instance_id))
    assert time.monotonic() - started < 1.5  # DingTalk's deadline (§6.4)
    assert (status, route.dingtalk.open_envelope(body)) == (200, "success")
    assert (await bridge.revision(approval_id, 1)).decision == "approved"
    again, body = await route.send(finish(instance_id))  # a redelivery: answered, not re-applied
    assert (again, route.dingtalk.open_envelope(body)) == (200, "success")


async def test_both_parameter_spellings_are_accepted(bridge: Bridge, route: Route) -> None:  # noqa: F811
    approval_id, instance_id = await pending(bridge, "PO-C2")
    task = {
        "EventType": "bpms_task_change",
        "CorpId": "ding9f50b15bxxxx16741",
        "eventId": "evt-task-1",
        "processInstanceId": instance_id,
        "type": "finish",
        "result": "refuse",
        "staffId": "manager1",
        "remark": "too dear",
        "taskId": 811165,
    }
    status, body = await route.send(task, spelling=("signature", "timeStamp"))
    assert (status, route.dingtalk.open_envelope(body)) == (200, "success")
    row = await bridge.revision(approval_id, 1)
    assert [(a["user_id"], a["result"], a["comment"]) for a in row.approvers or []] == [
        ("manager1", "refuse", "too dear")
    ]


async def test_forgeries_are_refused_and_the_service_keeps_running(
    bridge: Bridge,  # noqa: F811
    route: Route,
) -> None:
    approval_id, instance_id = await pending(bridge, "PO-C3")
    encrypt = route.dingtalk.encrypt(json.dumps(finish(instance_id)))
    body = json.dumps({"encrypt": encrypt}).encode()
    forged = {"msg_signature": "0" * 40, "timestamp": "1", "nonce": "n"}
    assert await route.push(forged, body) == (403, {"error": "bad_signature"})
    assert await route.push({}, body) == (403, {"error": "bad_signature"})
    other_app = DingTalkSide(TOKEN, AES, "dingotherappkey")
    assert await route.send(finish(instance_id), dingtalk=other_app) == (
        403,
        {"error": "wrong_owner"},
    )
    assert (await bridge.revision(approval_id, 1)).state is State.PENDING
    status, reply = await route.send(finish(instance_id, "refuse"))
    assert (status, route.dingtalk.open_envelope(reply)) == (200, "success")
    assert (await bridge.revision(approval_id, 1)).decision == "rejected"


async def test_garbage_is_a_400_never_a_500(route: Route) -> None:
    signed = route.dingtalk.sign("1", "n", "Z2FyYmFnZQ==")
    garbage = {"msg_signature": signed, "timestamp": "1", "nonce": "n"}
    assert await route.push(A_QUERY, b"not json") == (400, {"error": "bad_request"})
    assert await route.push(A_QUERY, b'{"encrypted": "x"}') == (400, {"error": "bad_request"})
    assert await route.push(A_QUERY, b"[1, 2]") == (400, {"error": "bad_request"})
    body = b'{"encrypt": "Z2FyYmFnZQ=="}'
    assert await route.push(garbage, body) == (400, {"error": "bad_ciphertext"})
    assert await route.send("not json") == (400, {"error": "bad_event"})
    assert await route.send(["a", "list"]) == (400, {"error": "bad_event"})
    no_instance = {"EventType": "bpms_instance_change", "type": "finish", "result": "agree"}
    assert await route.send(no_instance) == (400, {"error": "bad_event"})
    # Events the bridge does not act on are still answered (else DingTalk keeps pushing them).
    status, body = await route.send({"EventType": "user_add_org", "UserId": ["u1"]})
    assert (status, route.dingtalk.open_envelope(body)) == (200, "success")


async def test_a_push_that_cannot_be_recorded_is_refused_for_redelivery(
    bridge: Bridge,  # noqa: F811
    tmp_path: Path,
) -> None:
    approval_id, instance_id = await pending(bridge, "PO-C4")
    # A database without the schema: the sink's commit fails for real.
    broken = Database.from_config(DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path}/empty.db"))
    try:
        sink = EventSink(DecisionService(broken, SystemClock(), PriceConfig()))
        async with serve(sink) as failing:
            status, body = await failing.send(finish(instance_id))
    finally:
        await broken.dispose()
    assert (status, body) == (503, {"error": "unavailable"})
    assert (await bridge.revision(approval_id, 1)).state is State.PENDING
    async with serve(EventSink(bridge.app[DECISIONS])) as working:
        status, body = await working.send(finish(instance_id))
    assert (status, working.dingtalk.open_envelope(body)) == (200, "success")
    assert (await bridge.revision(approval_id, 1)).decision == "approved"


async def test_the_sandbox_pushes_an_approval_over_http_and_accepts_the_answers(
    tmp_path: Path, sqlite_template: Path
) -> None:
    # The sandbox is an independent DingTalk: it runs check_url and checks every reply.
    async with world(tmp_path, sqlite_template) as w:
        async with serve(EventSink(w.bridge.app[DECISIONS])) as route:
            await w.sandbox.configure_callback(route.url, TOKEN, AES, owner_key=OWNER)
            assert await w.sandbox.check_callback()
            approval_id, instance_id = await pending(w.bridge, "PO-C5")
            await w.sandbox.approve(instance_id, remark="同意")
            events = await w.events_of(instance_id)
        assert len(events) == 4
        assert {(e["status"], e["deliveries"]) for e in events} == {("delivered", 1)}
        assert (await w.bridge.revision(approval_id, 1)).decision == "approved"


async def test_the_factory_refuses_missing_or_illegal_keys(tmp_path: Path) -> None:
    db = Database.from_config(DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path}/unused.db"))
    sink = EventSink(DecisionService(db, SystemClock(), PriceConfig()))
    with pytest.raises(callback.CallbackKeysMissing, match="callback_token"):
        callback.from_config(sink, DingTalkConfig(mode="http", app_key=OWNER))
    with pytest.raises(callback.CallbackKeysMissing):
        callback.from_config(sink, CONFIG.model_copy(update={"app_key": ""}))
    owned = CONFIG.model_copy(update={"app_key": "", "callback_owner_key": "dingcorp"})
    assert isinstance(callback.from_config(sink, owned), callback.DingTalkCallback)
    with pytest.raises(BadKey):
        callback.callback_route(sink, token=TOKEN, aes_key="short", owner_key=OWNER)
    bad_key = CONFIG.model_copy(update={"callback_aes_key": SecretStr("x" * 42 + "!")})
    with pytest.raises(callback.CallbackKeysMissing, match="callback_aes_key"):
        callback.from_config(sink, bad_key)
    await db.dispose()
