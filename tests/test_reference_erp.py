"""The reference ERP over real loopback HTTP: signed delivery with retries, write-backs, faults."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import io
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from erp_adapter.reference import InputError, NotFoundError, ReferenceErp, RetryPolicy

SECRET = "shared-test-secret"
FAST = RetryPolicy(initial=0.01, maximum=0.05, request_timeout=2.0)
SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def po(doc_no: str = "PO-2026-000123", **changes: Any) -> dict[str, Any]:
    """A purchase order as CONTRACT §2 shows it, without a revision."""
    data: dict[str, Any] = {
        "doc_no": doc_no,
        "buyer": {"erp_user": "u1001", "name": "张三"},
        "department": {"code": "D01", "name": "采购部"},
        "supplier": {"code": "S001", "name": "杭州某某五金有限公司"},
        "currency": "CNY",
        "total_amount": "13560.00",
        "expected_date": "2026-12-01",
        "remark": "月度备料",
        "lines": [
            {"line_no": 1, "material_code": "M-001", "material_name": "硬质合金刀片",
             "spec": "CNMG120408", "unit": "片", "quantity": "1000", "unit_price": "12.00",
             "tax_rate": "0.13", "amount": "12000.00"},
        ],
    }  # fmt: skip
    data.update(changes)
    return data


ALERT: dict[str, Any] = {
    "material_code": "M-001", "material_name": "硬质合金刀片", "unit": "片", "warehouse": "WH1",
    "on_hand": "80", "safety_stock": "500", "reorder_qty": "1000",
    "preferred_supplier": {"code": "S001", "name": "杭州某某五金有限公司"},
    "requester": {"erp_user": "u1002", "name": "李四"},
}  # fmt: skip


REPLENISH: dict[str, Any] = {
    "doc_type": "replenishment",
    "material_code": "M-001",
    "warehouse": "WH1",
    "quantity": "1000",
}


def decision(doc_no: str, revision: int = 1, outcome: str = "approved", **extra: Any) -> bytes:
    """A write-back body (CONTRACT §3) for a purchase order, or a replenishment via `extra`."""
    body = {
        "approval_id": f"apv-{doc_no}",
        "doc_type": "purchase_order",
        "doc_no": doc_no,
        "revision": revision,
        "decision": outcome,
        "process_instance_id": "inst-1",
        "decided_at": "2026-11-25T11:02:00+08:00",
        "approvers": [{"user_id": "dt-user-2001", "name": "王五", "result": "agree",
                       "comment": "同意", "at": "2026-11-25T11:02:00+08:00"}],
        **extra,
    }  # fmt: skip
    return json.dumps(body).encode()


def signed(body: bytes, *, ts: int | None = None, secret: str = SECRET) -> dict[str, str]:
    """Section 2 headers, computed here with hmac directly (not with the code under test)."""
    stamp = int(time.time()) if ts is None else ts
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Bridge-Timestamp": str(stamp), "X-Bridge-Signature": f"v1={mac}"}


@dataclass
class Reply:
    """One scripted answer of the test bridge."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    """One request the test bridge received."""

    timestamp: int
    signature_ok: bool
    body: dict[str, Any]
    at: float


@dataclass
class Bridge:
    """A tiny bridge: verifies each signature with hmac and answers from `script`, then 202."""

    url: str = ""
    script: list[Reply] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    always: Reply | None = None

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        stamp = request.headers["X-Bridge-Timestamp"]
        expected = signed(raw, ts=int(stamp))["X-Bridge-Signature"]
        ok = hmac.compare_digest(expected, request.headers["X-Bridge-Signature"])
        body = json.loads(raw)
        loop = asyncio.get_running_loop()
        self.received.append(Received(int(stamp), ok, body, loop.time()))
        if not ok:
            return web.json_response({"error": "bad_signature"}, status=401)
        reply = self.always or (self.script.pop(0) if self.script else None)
        if reply is None:
            reply = Reply(202, {"status": "accepted", "approval_id": f"apv-{body['event_id']}"})
        await asyncio.sleep(reply.delay)
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)

    def event_ids(self) -> list[str]:
        return [r.body["event_id"] for r in self.received]


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    fake = Bridge()
    app = web.Application()
    app.router.add_post("/erp/events", fake.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    fake.url = f"http://{host}:{port}"
    yield fake
    await runner.cleanup()


@pytest.fixture
async def erp(bridge: Bridge) -> AsyncIterator[ReferenceErp]:
    async with ReferenceErp(secret=SECRET, bridge_url=bridge.url, retry=FAST) as ref:
        yield ref


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def write_back(
    client: aiohttp.ClientSession,
    erp: ReferenceErp,
    body: bytes,
    key: str | None = "apv-1:1",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """POST a write-back to the reference ERP, signed unless `headers` are given."""
    sent = {"Content-Type": "application/json", **(signed(body) if headers is None else headers)}
    if key is not None:
        sent["Idempotency-Key"] = key
    async with client.post(f"{erp.url}/approval-results", data=body, headers=sent) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


async def eventually(check: Callable[[], bool], within: float = 3.0) -> None:
    """Poll until `check()` holds (state owned by the code under test, so no event to await)."""
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


BAD = "invalid_payload"


def enc(value: Any) -> bytes:
    """JSON bytes of `value`."""
    return json.dumps(value).encode()


def free_port() -> int:
    """A loopback port with nothing listening on it (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- ERP -> bridge: signed delivery, retried until acknowledged --------------------------------


async def test_delivery_honours_retry_after_then_is_acknowledged(
    erp: ReferenceErp, bridge: Bridge
) -> None:
    bridge.script = [Reply(503, {"error": "overloaded"}, {"Retry-After": "1"})]
    event_id = erp.submit_order(po())
    events = await erp.wait_delivered(timeout=5)

    assert [r.body["event_id"] for r in bridge.received] == [event_id, event_id]
    assert all(r.signature_ok for r in bridge.received)
    first, second = bridge.received
    assert second.at - first.at >= 0.95
    assert second.timestamp > first.timestamp  # re-signed with a fresh timestamp
    assert abs(first.timestamp - time.time()) < 10
    assert first.body == second.body
    body = second.body
    assert body["type"] == "purchase_order.submitted"
    assert dt.datetime.fromisoformat(body["occurred_at"]).utcoffset() is not None
    assert body["data"]["revision"] == 1
    assert body["data"]["total_amount"] == "13560.00"
    assert body["data"]["lines"][0]["quantity"] == "1000"
    [event] = events
    assert event.event_id == event_id
    assert event.status == "delivered"
    assert event.approval_id == f"apv-{event_id}"
    assert event.response == {"status": "accepted", "approval_id": f"apv-{event_id}"}
    assert [a.status for a in event.attempts] == [503, 202]


async def test_delivery_retries_refused_connections_timeouts_and_5xx(bridge: Bridge) -> None:
    policy = RetryPolicy(initial=0.01, maximum=0.05, request_timeout=0.2)
    async with ReferenceErp(
        secret=SECRET, bridge_url=f"http://127.0.0.1:{free_port()}", retry=policy
    ) as erp:
        event_id = erp.stock_alert(ALERT)
        await eventually(lambda: len(erp.event(event_id).attempts) >= 2)
        bridge.script = [Reply(202, delay=0.6), Reply(500), Reply(502)]
        erp.bridge_url = bridge.url
        [event] = await erp.wait_delivered(timeout=5)

    assert event.status == "delivered"
    refused = [a for a in event.attempts if a.status is None and "Connect" in (a.error or "")]
    assert len(refused) >= 2
    assert [a.status for a in event.attempts[len(refused) :]] == [None, 500, 502, 202]
    assert event.attempts[len(refused)].error == "TimeoutError"
    assert bridge.event_ids() == [event_id] * 4
    assert all(r.signature_ok for r in bridge.received)
    assert bridge.received[-1].body["type"] == "stock.below_safety"
    assert bridge.received[-1].body["data"]["on_hand"] == "80"


async def test_409_is_stale_and_other_4xx_rejected_without_retry(
    erp: ReferenceErp, bridge: Bridge
) -> None:
    bridge.script = [Reply(409, {"error": "stale_revision"})]
    order_event = erp.submit_order(po())
    await erp.wait_delivered(timeout=5)
    bridge.script = [Reply(400, {"error": "invalid_payload", "details": []})]
    alert_event = erp.stock_alert(ALERT)
    await erp.wait_delivered(timeout=5)

    assert bridge.event_ids() == [order_event, alert_event]
    assert erp.event(order_event).status == "stale"
    assert erp.event(order_event).response == {"error": "stale_revision"}
    assert erp.event(alert_event).status == "rejected"
    assert erp.event(alert_event).approval_id is None


async def test_events_of_one_order_are_delivered_in_order(
    erp: ReferenceErp, bridge: Bridge
) -> None:
    bridge.script = [Reply(503), Reply(503)]
    submitted = erp.submit_order(po())
    changed = erp.change_order("PO-2026-000123", po(remark="改数量"))
    cancelled = erp.cancel_order("PO-2026-000123", "供应商停产")
    await erp.wait_delivered(timeout=5)

    assert bridge.event_ids() == [submitted, submitted, submitted, changed, cancelled]
    types = [r.body["type"] for r in bridge.received[2:]]
    assert types == [
        "purchase_order.submitted",
        "purchase_order.changed",
        "purchase_order.cancelled",
    ]
    assert bridge.received[3].body["data"]["revision"] == 2
    cancel_data = {"doc_no": "PO-2026-000123", "revision": 2, "reason": "供应商停产"}
    assert bridge.received[4].body["data"] == cancel_data
    assert {e.status for e in erp.events} == {"delivered"}


async def test_wait_delivered_times_out_while_the_bridge_is_down(
    erp: ReferenceErp, bridge: Bridge
) -> None:
    bridge.always = Reply(503, {"error": "overloaded"})
    event_id = erp.submit_order(po())
    with pytest.raises(TimeoutError, match=event_id):
        await erp.wait_delivered(timeout=0.3)
    assert erp.event(event_id).status == "pending"
    assert len(erp.event(event_id).attempts) >= 3


async def test_max_attempts_gives_up_as_failed(bridge: Bridge) -> None:
    bridge.always = Reply(500)
    policy = RetryPolicy(initial=0.01, maximum=0.02, max_attempts=3)
    async with ReferenceErp(secret=SECRET, bridge_url=bridge.url, retry=policy) as erp:
        event_id = erp.submit_order(po())
        await erp.wait_delivered(timeout=5)
    assert erp.event(event_id).status == "failed"
    assert [a.status for a in erp.event(event_id).attempts] == [500, 500, 500]


async def test_injected_clock_and_session(bridge: Bridge) -> None:
    fixed = dt.datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI)
    async with aiohttp.ClientSession() as session:
        async with ReferenceErp(
            secret=SECRET, bridge_url=bridge.url, session=session, clock=lambda: fixed, retry=FAST
        ) as erp:
            erp.submit_order(po())
            await erp.wait_delivered(timeout=5)
        assert not session.closed
    [received] = bridge.received
    assert received.timestamp == int(fixed.timestamp())
    assert received.body["occurred_at"] == "2026-11-25T10:00:00+08:00"


async def test_close_cancels_deliveries_in_flight(bridge: Bridge) -> None:
    bridge.always = Reply(503)
    erp = ReferenceErp(secret=SECRET, bridge_url=bridge.url, retry=FAST)
    await erp.start()
    event_id = erp.submit_order(po())
    await eventually(lambda: len(bridge.received) >= 2)
    await erp.close()
    count = len(bridge.received)
    await asyncio.sleep(0.1)
    assert len(bridge.received) == count
    assert erp.event(event_id).status == "pending"


# -- bridge -> ERP: write-backs ---------------------------------------------------------------


async def test_write_back_refuses_bad_signatures_and_stale_timestamps(
    erp: ReferenceErp, client: aiohttp.ClientSession
) -> None:
    erp.submit_order(po())
    body = decision("PO-2026-000123")
    old = int(time.time()) - 301
    cases = [
        ({}, "bad_signature"),
        (signed(body, secret="wrong-secret"), "bad_signature"),
        (signed(body + b" "), "bad_signature"),
        ({**signed(body), "X-Bridge-Timestamp": "soon"}, "bad_signature"),
        (signed(body, ts=old), "stale_timestamp"),
        (signed(body, ts=int(time.time()) + 301), "stale_timestamp"),
    ]
    for headers, error in cases:
        status, answer, _ = await write_back(client, erp, body, headers=headers)
        assert (status, answer) == (401, {"error": error}), headers

    assert erp.order("PO-2026-000123").status == "submitted"
    assert [w.outcome for w in erp.write_backs] == ["unauthorized"] * len(cases)
    assert [w.status for w in erp.write_backs] == [401] * len(cases)


async def test_write_back_window_follows_the_injected_clock(
    bridge: Bridge, client: aiohttp.ClientSession
) -> None:
    fixed = dt.datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI)
    async with ReferenceErp(secret=SECRET, bridge_url=bridge.url, clock=lambda: fixed) as erp:
        erp.submit_order(po())
        body = decision("PO-2026-000123")
        status, answer, _ = await write_back(client, erp, body)
        assert (status, answer) == (401, {"error": "stale_timestamp"})
        ts = int(fixed.timestamp()) - 299
        status, _, _ = await write_back(client, erp, body, headers=signed(body, ts=ts))
        assert status == 200
        assert erp.write_backs[-1].received_at == fixed


async def test_write_back_requires_an_idempotency_key(
    erp: ReferenceErp, client: aiohttp.ClientSession
) -> None:
    erp.submit_order(po())
    status, answer, _ = await write_back(client, erp, decision("PO-2026-000123"), key=None)
    assert (status, answer) == (400, {"error": "missing_idempotency_key"})
    assert erp.order("PO-2026-000123").status == "submitted"
    assert erp.write_backs[0].outcome == "invalid"


async def test_write_back_applies_once_replays_and_refuses_a_second_decision(
    erp: ReferenceErp, client: aiohttp.ClientSession
) -> None:
    erp.submit_order(po())
    approve = decision("PO-2026-000123")
    first = await write_back(client, erp, approve, key="apv-1:1")
    again = await write_back(client, erp, approve, key="apv-1:1")
    other = await write_back(
        client, erp, decision("PO-2026-000123", outcome="rejected"), key="apv-1:1"
    )

    assert first[:2] == (200, {"erp_ref": "AUD-000001"})
    assert again[:2] == first[:2]
    assert other[:2] == (422, {"error": "conflicting_decision"})
    order = erp.order("PO-2026-000123")
    assert order.status == "approved"
    assert order.erp_ref == "AUD-000001"
    assert order.decided_by == json.loads(approve)
    assert [(w.idempotency_key, w.status, w.outcome) for w in erp.write_backs] == [
        ("apv-1:1", 200, "applied"),
        ("apv-1:1", 200, "replay"),
        ("apv-1:1", 422, "conflicting_decision"),
    ]
    assert erp.write_backs[2].body["decision"] == "rejected"


async def test_write_back_for_an_old_revision_or_a_cancelled_order_is_stale(
    erp: ReferenceErp, client: aiohttp.ClientSession
) -> None:
    erp.submit_order(po())
    erp.change_order("PO-2026-000123", po(remark="第二版"))
    old = await write_back(client, erp, decision("PO-2026-000123", 1), key="apv-1:1")
    assert old[:2] == (409, {"error": "stale"})
    assert erp.order("PO-2026-000123").status == "submitted"
    current = await write_back(client, erp, decision("PO-2026-000123", 2), key="apv-1:2")
    assert current[:2] == (200, {"erp_ref": "AUD-000001"})
    assert erp.order("PO-2026-000123").revision == 2

    erp.submit_order(po("PO-2026-000124"))
    erp.cancel_order("PO-2026-000124", "不需要了")
    cancelled = await write_back(client, erp, decision("PO-2026-000124"), key="apv-2:1")
    assert cancelled[:2] == (409, {"error": "stale"})
    assert erp.order("PO-2026-000124").status == "cancelled"


async def test_write_back_for_an_unknown_order_is_404(
    erp: ReferenceErp, client: aiohttp.ClientSession
) -> None:
    status, answer, _ = await write_back(client, erp, decision("PO-NOPE"))
    assert (status, answer) == (404, {"error": "not_found"})


async def test_replenishment_raises_one_requisition(
    erp: ReferenceErp, client: aiohttp.ClientSession
) -> None:
    body = decision("BR-000007", **REPLENISH)
    first = await write_back(client, erp, body, key="apv-r7:1")
    second = await write_back(client, erp, body, key="apv-r7:1")
    other_key = await write_back(client, erp, body, key="apv-r7:1-retry")
    assert first[:2] == second[:2] == other_key[:2] == (200, {"erp_ref": "PR-000001"})
    [requisition] = erp.requisitions
    assert (requisition.number, requisition.reference) == ("PR-000001", "BR-000007")
    assert (requisition.material_code, requisition.warehouse) == ("M-001", "WH1")
    assert requisition.quantity == "1000"

    refused = decision("BR-000008", outcome="rejected", **REPLENISH)
    assert (await write_back(client, erp, refused, key="apv-r8:1"))[:2] == (200, {})
    assert len(erp.requisitions) == 1
    assert [w.outcome for w in erp.write_backs] == ["applied", "replay", "applied", "applied"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (decision("PO-2026-000123", outcome="maybe"), "decision"),
        (decision("PO-2026-000123", revision="1"), "revision"),  # type: ignore[arg-type]
        (decision("PO-2026-000123", decided_at="2026-11-25T11:02:00"), "UTC offset"),
        (decision("R-1", **{**REPLENISH, "quantity": 1000}), "decimal string"),
        (decision("R-1", **{**REPLENISH, "warehouse": None}), "warehouse"),
    ],
)
async def test_malformed_write_backs_are_400(
    erp: ReferenceErp, client: aiohttp.ClientSession, body: bytes, message: str
) -> None:
    erp.submit_order(po())
    status, answer, _ = await write_back(client, erp, body)
    assert status == 400
    assert answer["error"] == "invalid_payload"
    assert message in answer["message"]
    assert erp.order("PO-2026-000123").status == "submitted"


# -- fault injection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "status", "error"),
    [
        ("down", 503, "unavailable"),
        ("error", 500, "internal_error"),
        ("reject", 400, "rejected"),
        ("conflict", 409, "stale"),
    ],
)
async def test_fault_modes_answer_then_recover(
    erp: ReferenceErp, client: aiohttp.ClientSession, mode: Any, status: int, error: str
) -> None:
    erp.submit_order(po())
    erp.set_fault(mode, fail_next=2, retry_after=7)
    body = decision("PO-2026-000123")
    for _ in range(2):
        got, answer, headers = await write_back(client, erp, body)
        assert (got, answer["error"], answer["injected"]) == (status, error, True)
        assert headers.get("Retry-After") == ("7" if mode == "down" else None)
    assert erp.order("PO-2026-000123").status == "submitted"
    assert (await write_back(client, erp, body))[:2] == (200, {"erp_ref": "AUD-000001"})
    assert [w.outcome for w in erp.write_backs] == ["fault", "fault", "applied"]
    assert erp.faults.to_json()["mode"] == "ok"


async def test_fault_mode_persists_without_fail_next(
    erp: ReferenceErp, client: aiohttp.ClientSession
) -> None:
    erp.submit_order(po())
    erp.set_fault("down")
    for _ in range(3):
        assert (await write_back(client, erp, decision("PO-2026-000123")))[0] == 503
    erp.set_fault("ok")
    assert (await write_back(client, erp, decision("PO-2026-000123")))[0] == 200


async def test_slow_mode_delays_then_answers_normally(
    erp: ReferenceErp, client: aiohttp.ClientSession
) -> None:
    erp.submit_order(po())
    erp.set_fault("slow", delay=0.4, fail_next=1)
    started = time.monotonic()
    status, answer, _ = await write_back(client, erp, decision("PO-2026-000123"))
    assert time.monotonic() - started >= 0.4
    assert (status, answer) == (200, {"erp_ref": "AUD-000001"})
    assert erp.write_backs[0].outcome == "applied"
    started = time.monotonic()
    assert (await write_back(client, erp, decision("PO-2026-000123")))[0] == 200
    assert time.monotonic() - started < 0.3


async def test_stop_listening_refuses_connections_then_listen_serves_the_same_address(
    erp: ReferenceErp, bridge: Bridge, client: aiohttp.ClientSession
) -> None:
    erp.submit_order(po())
    url = erp.url
    # A kept-alive connection from before must not survive: the ERP is down, not just deaf.
    assert (await write_back(client, erp, decision("PO-2026-000123"), key="k-0"))[0] == 200
    await erp.stop_listening()
    with pytest.raises(aiohttp.ClientConnectionError):
        await write_back(client, erp, decision("PO-2026-000123"), key="k-1")
    erp.stock_alert(ALERT)  # events still go out while the ERP's listener is down
    await erp.wait_delivered()
    assert bridge.event_ids()[-1] == erp.events[-1].event_id
    await erp.listen()
    assert erp.url == url
    assert (await write_back(client, erp, decision("PO-2026-000123"), key="k-2"))[0] == 200
    assert [w.idempotency_key for w in erp.write_backs] == ["k-0", "k-2"]
    with pytest.raises(RuntimeError, match="already listening"):
        await erp.listen()


async def test_faults_over_http(erp: ReferenceErp, client: aiohttp.ClientSession) -> None:
    erp.submit_order(po())
    async with client.post(f"{erp.url}/ref/faults", json={"mode": "error", "fail_next": 1}) as r:
        assert r.status == 200
        expected = {"mode": "error", "fail_next": 1, "delay": 0.0, "retry_after": None}
        assert await r.json() == expected
    assert (await write_back(client, erp, decision("PO-2026-000123")))[0] == 500
    async with client.get(f"{erp.url}/ref/faults") as r:
        assert (await r.json())["mode"] == "ok"
    for bad in (
        {"mode": "flaky"},
        {"mode": "down", "fail_next": "2"},
        {"mode": "slow", "delay": -1},
    ):
        async with client.post(f"{erp.url}/ref/faults", json=bad) as r:
            assert r.status == 400
            assert (await r.json())["error"] == "invalid_payload"


# -- control API over HTTP ------------------------------------------------------------------------


async def test_control_api_drives_orders_and_alerts_over_http(
    erp: ReferenceErp, bridge: Bridge, client: aiohttp.ClientSession
) -> None:
    base = f"{erp.url}/ref"
    data = po()
    del data["total_amount"], data["lines"][0]["amount"]
    data["lines"].append({"material_code": "M-002", "quantity": "3", "unit_price": "0.335"})
    async with client.post(f"{base}/orders", json=data) as r:
        assert r.status == 201
        created = await r.json()
    assert created["order"]["revision"] == 1
    assert created["order"]["status"] == "submitted"
    assert created["order"]["data"]["total_amount"] == "12001.01"
    assert created["order"]["data"]["lines"][1]["line_no"] == 2
    assert created["order"]["data"]["lines"][1]["amount"] == "1.01"

    async with client.put(f"{base}/orders/PO-2026-000123", json=po(remark="加急")) as r:
        assert r.status == 200
        changed = await r.json()
    assert changed["order"]["revision"] == 2
    async with client.post(f"{base}/orders/PO-2026-000123/cancel", json={"reason": "重复"}) as r:
        assert r.status == 200
        cancelled = await r.json()
    assert cancelled["order"]["status"] == "cancelled"
    async with client.post(f"{base}/stock-alerts", json=ALERT) as r:
        assert r.status == 202
        alert = await r.json()
    await erp.wait_delivered(timeout=5)

    async with client.get(f"{base}/orders/PO-2026-000123") as r:
        order = await r.json()
    assert (order["revision"], order["status"], order["cancel_reason"]) == (2, "cancelled", "重复")
    async with client.get(f"{base}/orders") as r:
        assert [o["doc_no"] for o in (await r.json())["orders"]] == ["PO-2026-000123"]
    async with client.get(f"{base}/events") as r:
        events = (await r.json())["events"]
    ids = [created["event_id"], changed["event_id"], cancelled["event_id"], alert["event_id"]]
    assert [e["event_id"] for e in events] == ids
    assert {e["status"] for e in events} == {"delivered"}
    assert events[0]["approval_id"] == f"apv-{ids[0]}"
    assert sorted(bridge.event_ids()) == sorted(ids)

    body = decision("BR-1", **REPLENISH)
    assert (await write_back(client, erp, body, key="r:1"))[0] == 200
    async with client.get(f"{base}/requisitions") as r:
        [requisition] = (await r.json())["requisitions"]
    assert (requisition["number"], requisition["reference"]) == ("PR-000001", "BR-1")
    async with client.get(f"{base}/write-backs") as r:
        [record] = (await r.json())["write_backs"]
    assert (record["idempotency_key"], record["status"], record["outcome"]) == (
        "r:1",
        200,
        "applied",
    )
    assert record["body"]["doc_no"] == "BR-1"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        ("POST", "/ref/orders", b"{oops", 400, BAD),
        ("POST", "/ref/orders", b"", 400, BAD),
        ("POST", "/ref/orders", b'{"doc_no": "X"}', 400, BAD),
        ("POST", "/ref/orders", enc(po(doc_no="")), 400, BAD),
        ("POST", "/ref/orders", enc(po(lines=[])), 400, BAD),
        ("POST", "/ref/orders", enc(po(lines=[{"material_code": "M"}])), 400, BAD),
        ("POST", "/ref/orders", enc(po(total_amount=1.5)), 400, BAD),
        ("POST", "/ref/orders", enc(po(revision=2)), 400, BAD),
        ("POST", "/ref/orders", enc(po(expected_date="soon")), 400, BAD),
        ("POST", "/ref/orders", enc(po(buyer="u1001")), 400, BAD),
        ("POST", "/ref/orders", enc(po()), 409, "conflict"),
        ("PUT", "/ref/orders/PO-NOPE", enc(po("PO-NOPE")), 404, "not_found"),
        ("PUT", "/ref/orders/PO-2026-000123", enc(po("PO-X")), 400, BAD),
        ("GET", "/ref/orders/PO-NOPE", b"", 404, "not_found"),
        ("POST", "/ref/orders/PO-NOPE/cancel", b"", 404, "not_found"),
        ("POST", "/ref/orders/PO-2026-000123/cancel", b'{"reason": 5}', 400, BAD),
        ("POST", "/ref/stock-alerts", enc({**ALERT, "on_hand": "900"}), 400, BAD),
        ("POST", "/ref/stock-alerts", enc({**ALERT, "requester": None}), 400, BAD),
        ("POST", "/ref/stock-alerts", b'{"material_code": "M"}', 400, BAD),
        ("POST", "/ref/faults", b"[]", 400, BAD),
        ("GET", "/ref/nowhere", b"", 404, "not_found"),
        ("DELETE", "/ref/orders", b"", 405, "method_not_allowed"),
        ("POST", "/ref/orders", b"[" * 2_000_000, 413, "request_entity_too_large"),
    ],
)
async def test_control_api_answers_bad_input_with_json_errors(
    erp: ReferenceErp,
    client: aiohttp.ClientSession,
    method: str,
    path: str,
    body: bytes,
    status: int,
    error: str,
) -> None:
    erp.submit_order(po())
    headers = {"Content-Type": "application/json"}
    url = f"{erp.url}{path}"
    async with client.request(method, url, data=io.BytesIO(body), headers=headers) as r:
        assert r.status == status
        answer = await r.json()
    assert answer["error"] == error
    assert answer["message"]
    assert [o.revision for o in erp.orders.values()] == [1]
    assert len(erp.events) == 1


async def test_cancelling_twice_and_changing_a_cancelled_order_conflict(
    erp: ReferenceErp, client: aiohttp.ClientSession
) -> None:
    erp.submit_order(po())
    erp.cancel_order("PO-2026-000123", "作废")
    async with client.post(f"{erp.url}/ref/orders/PO-2026-000123/cancel") as r:
        assert (r.status, (await r.json())["error"]) == (409, "conflict")
    async with client.put(f"{erp.url}/ref/orders/PO-2026-000123", json=po()) as r:
        assert (r.status, (await r.json())["error"]) == (409, "conflict")
    assert [e.type for e in erp.events] == ["purchase_order.submitted", "purchase_order.cancelled"]


async def test_changing_a_decided_order_needs_approval_again(
    erp: ReferenceErp, client: aiohttp.ClientSession
) -> None:
    erp.submit_order(po())
    assert (await write_back(client, erp, decision("PO-2026-000123"), key="a:1"))[0] == 200
    erp.change_order("PO-2026-000123", po(remark="追加"))
    order = erp.order("PO-2026-000123")
    assert (order.revision, order.status, order.erp_ref) == (2, "submitted", None)
    rejected = decision("PO-2026-000123", 2, "rejected")
    assert (await write_back(client, erp, rejected, key="a:2"))[:2] == (
        200,
        {"erp_ref": "AUD-000002"},
    )
    assert erp.order("PO-2026-000123").status == "rejected"


async def test_python_callers_get_input_errors_before_anything_changes(
    erp: ReferenceErp,
) -> None:
    with pytest.raises(InputError, match="plain JSON"):
        erp.submit_order(po(extra={"when": dt.date(2026, 1, 1)}))
    with pytest.raises(InputError, match="reorder_qty"):
        erp.stock_alert({**ALERT, "reorder_qty": 1000})
    with pytest.raises(NotFoundError):
        erp.cancel_order("PO-NOPE")
    assert erp.orders == {}
    assert erp.events == []


async def test_emitting_without_a_bridge_url_is_refused(client: aiohttp.ClientSession) -> None:
    async with ReferenceErp(secret=SECRET) as erp:
        async with client.post(f"{erp.url}/ref/orders", json=po()) as r:
            assert (r.status, (await r.json())["error"]) == (503, "not_ready")
        assert erp.orders == {}
        assert erp.events == []
