"""The ERP webhook (CONTRACT section 2) over real HTTP on loopback, on SQLite and PostgreSQL.

Every row of the response table and every semantic rule, each checked by its status code, its
body and what it left in the database.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import distinct, func, select, text

from approvals.config import DatabaseConfig, IntakeConfig
from approvals.db import repo
from approvals.db.engine import Database
from approvals.db.tables import approval, audit, erp_event, job, metadata, revision
from approvals.decisions import DecisionOutcome
from approvals.memory import MemoryInstance
from approvals.states import OPEN_STATES, State
from tests import dbutil
from tests.harness import (
    SECRET,
    Bridge,
    bridge_settings,
    event,
    order,
    running_bridge,
    signed,
    stock,
)

MiB = 1024 * 1024
JSON = "application/json"
COUNTED = (approval, revision, job, erp_event, audit)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated, empty database: a fresh SQLite file, or the run's PostgreSQL database emptied."""
    if request.param == "sqlite":
        return dbutil.copy_sqlite(sqlite_template, tmp_path / "bridge.db")
    url: str = request.getfixturevalue("postgres_url")
    database = Database.from_config(DatabaseConfig(url=url))
    try:
        names = ", ".join(t.name for t in metadata.sorted_tables)
        async with database.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        await database.dispose()
    return url


@dataclass
class ErpReceiver:
    """A tiny ERP endpoint that records write-backs (CONTRACT section 3)."""

    url: str = ""
    received: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), json.loads(await request.read())))
        return web.json_response({"erp_ref": f"ERP-{len(self.received)}"})


@pytest.fixture
async def erp() -> AsyncIterator[ErpReceiver]:
    """The write-back receiver, serving on loopback."""
    receiver = ErpReceiver()
    app = web.Application()
    app.router.add_post("/approval-results", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


@pytest.fixture
async def bridge(db_url: str, erp: ErpReceiver) -> AsyncIterator[Bridge]:
    """A bridge on loopback over the test database, writing back to `erp`."""
    async with running_bridge(bridge_settings(db_url, erp.url)) as served:
        yield served


# --- helpers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """What the webhook answered."""

    status: int
    body: dict[str, Any]
    retry_after: str | None


def encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


async def post_raw(
    bridge: Bridge,
    data: Any,
    headers: dict[str, str],
    http: aiohttp.ClientSession | None = None,
    **kwargs: Any,
) -> Reply:
    """POST anything to the webhook; every answer must be a JSON object."""
    session = http or bridge.http
    url = bridge.url + "/erp/events"
    if isinstance(data, bytes) and len(data) > 64 * 1024:
        data = io.BytesIO(data)  # aiohttp warns about large raw bytes (warnings are errors)
    async with session.post(url, data=data, headers=headers, **kwargs) as response:
        raw = await response.read()
        assert response.content_type == JSON, (response.status, response.content_type, raw)
        body = json.loads(raw)
        assert isinstance(body, dict), body
        return Reply(response.status, body, response.headers.get("Retry-After"))


async def deliver(bridge: Bridge, body: Any, http: aiohttp.ClientSession | None = None) -> Reply:
    """POST an event (a dict, or raw bytes), signed with the right secret and a fresh timestamp."""
    raw = body if isinstance(body, bytes) else encode(body)
    return await post_raw(bridge, raw, signed(raw), http)


def cancel(doc_no: str, revision: int = 1, reason: str = "供应商停产") -> dict[str, Any]:
    """A `purchase_order.cancelled` event's `data`."""
    return {"doc_no": doc_no, "revision": revision, "reason": reason}


def accepted(reply: Reply) -> str:
    """The approval id of a 202 `accepted` answer."""
    assert reply.status == 202, reply
    assert reply.body["status"] == "accepted", reply
    approval_id = reply.body["approval_id"]
    assert isinstance(approval_id, str)
    assert approval_id, reply
    return approval_id


async def counts(bridge: Bridge) -> dict[str, int]:
    """Rows in every table intake writes to."""
    async with bridge.db.read() as conn:
        return {
            table.name: (await conn.execute(select(func.count()).select_from(table))).scalar_one()
            for table in COUNTED
        }


async def event_ids(bridge: Bridge) -> set[str]:
    async with bridge.db.read() as conn:
        return set((await conn.execute(select(erp_event.c.event_id))).scalars())


async def jobs_of(bridge: Bridge, approval_id: str) -> list[tuple[str, int]]:
    """(kind, revision) of every job still held for an approval."""
    query = select(job.c.kind, job.c.revision).where(job.c.approval_id == approval_id)
    async with bridge.db.read() as conn:
        return [(row[0], row[1]) for row in await conn.execute(query)]


async def audit_actions(bridge: Bridge, approval_id: str) -> list[tuple[int | None, str]]:
    query = select(audit.c.revision, audit.c.action).where(audit.c.approval_id == approval_id)
    async with bridge.db.read() as conn:
        return [(row[0], row[1]) for row in await conn.execute(query.order_by(audit.c.id))]


async def eventually(check: Callable[[], bool], what: str, within_s: float = 10) -> None:
    """Wait until `check()` holds."""
    deadline = time.monotonic() + within_s
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def instances_for(bridge: Bridge, approval_id: str) -> list[MemoryInstance]:
    return [i for i in bridge.gateway.instances.values() if i.request.approval_id == approval_id]


async def settle(bridge: Bridge, seconds: float = 0.2) -> None:
    """Give the job runner time to do anything it would (wrongly) do."""
    await bridge.idle()
    await asyncio.sleep(seconds)


def padded(body: dict[str, Any], size: int) -> bytes:
    """A valid event padded with trailing JSON whitespace to exactly `size` bytes."""
    raw = encode(body)
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


async def chunks(raw: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """A body sent with chunked transfer encoding, in several pieces."""
    for start in range(0, len(raw), size):
        yield raw[start : start + size]
        await asyncio.sleep(0)


# --- 202 accepted, 200 duplicate, 409 stale_revision ----------------------------------------


async def test_accepted_event_is_committed_before_the_answer(bridge: Bridge, db_url: str) -> None:
    reply = await deliver(bridge, event("evt-1", "purchase_order.submitted", order("PO-1")))
    approval_id = accepted(reply)
    assert reply.body == {"status": "accepted", "approval_id": approval_id}

    # Read at once, through a connection of our own: the rows are there, so they were committed.
    outside = Database.from_config(DatabaseConfig(url=db_url))
    try:
        async with outside.read() as conn:
            recorded = (
                await conn.execute(select(erp_event).where(erp_event.c.event_id == "evt-1"))
            ).one()
            row = await repo.get_revision(conn, approval_id, 1)
    finally:
        await outside.dispose()
    assert recorded.approval_id == approval_id
    assert recorded.revision == 1
    assert recorded.type == "purchase_order.submitted"
    assert row is not None
    assert row.doc_no == "PO-1"
    assert row.doc_type.value == "purchase_order"
    assert row.state in OPEN_STATES
    # Money stays the exact decimal string it arrived as.
    assert row.document["total_amount"] == "12000.00"
    assert row.document["lines"][0]["unit_price"] == "12.00"

    pending = await bridge.wait_state(approval_id, 1, State.PENDING)
    assert pending.instance_id is not None
    instance = bridge.gateway.instances[pending.instance_id]
    assert instance.status == "RUNNING"
    assert instance.request.reference == f"{approval_id}:1"


async def test_content_type_with_charset_is_accepted(bridge: Bridge) -> None:
    raw = encode(event("evt-cs", "purchase_order.submitted", order("PO-CS")))
    headers = signed(raw) | {"Content-Type": "application/json; charset=utf-8"}
    approval_id = accepted(await post_raw(bridge, raw, headers))
    assert await event_ids(bridge) == {"evt-cs"}
    assert (await bridge.revision(approval_id, 1)).doc_no == "PO-CS"


async def test_same_event_id_again_is_a_duplicate_and_writes_nothing(bridge: Bridge) -> None:
    body = event("evt-dup", "purchase_order.submitted", order("PO-DUP"))
    approval_id = accepted(await deliver(bridge, body))
    pending = await bridge.wait_state(approval_id, 1, State.PENDING)
    before = await counts(bridge)

    again = await deliver(bridge, body)  # the same delivery, signed afresh
    # The same event id with other content is still the same event: the id is the key.
    other = event("evt-dup", "purchase_order.changed", order("PO-DUP", revision=2, price="99.00"))
    also = await deliver(bridge, other)

    assert again.status == 200
    assert again.body == {"status": "duplicate", "approval_id": approval_id}
    assert also.status == 200
    assert also.body == {"status": "duplicate", "approval_id": approval_id}
    await settle(bridge)
    assert await counts(bridge) == before
    assert await bridge.revision(approval_id, 1) == pending
    async with bridge.db.read() as conn:
        assert await repo.get_revision(conn, approval_id, 2) is None
    assert len(bridge.gateway.instances) == 1


async def test_concurrent_redeliveries_store_one_event(bridge: Bridge) -> None:
    body = event("evt-burst", "purchase_order.submitted", order("PO-BURST"))
    replies = await asyncio.gather(*(deliver(bridge, body) for _ in range(5)))

    statuses = sorted(r.status for r in replies)
    assert statuses == [200, 200, 200, 200, 202], replies
    ids = {r.body["approval_id"] for r in replies}
    assert len(ids) == 1
    assert {r.body["status"] for r in replies if r.status == 200} == {"duplicate"}
    found = await counts(bridge)
    assert (found["erp_event"], found["approval"], found["revision"]) == (1, 1, 1)
    await bridge.wait_state(ids.pop(), 1, State.PENDING)
    assert len(bridge.gateway.instances) == 1


@pytest.mark.parametrize("type_", ["purchase_order.submitted", "purchase_order.changed"])
async def test_same_revision_under_a_new_event_id_is_a_duplicate(
    bridge: Bridge, type_: str
) -> None:
    approval_id = accepted(
        await deliver(bridge, event("evt-a", "purchase_order.submitted", order("PO-SAME")))
    )
    await bridge.wait_state(approval_id, 1, State.PENDING)
    before = await counts(bridge)

    reply = await deliver(bridge, event("evt-b", type_, order("PO-SAME", price="13.00")))

    assert reply.status == 200
    assert reply.body == {"status": "duplicate", "approval_id": approval_id}
    await settle(bridge)
    assert await counts(bridge) == before
    assert await event_ids(bridge) == {"evt-a"}
    row = await bridge.revision(approval_id, 1)
    assert row.state is State.PENDING
    assert row.document["lines"][0]["unit_price"] == "12.00"
    assert len(bridge.gateway.instances) == 1


async def test_lower_revision_is_stale_and_writes_nothing(bridge: Bridge) -> None:
    approval_id = accepted(
        await deliver(bridge, event("evt-r2", "purchase_order.submitted", order("PO-ST", 2)))
    )
    pending = await bridge.wait_state(approval_id, 2, State.PENDING)
    before = await counts(bridge)

    stale = [
        event("evt-r1-sub", "purchase_order.submitted", order("PO-ST", 1)),
        event("evt-r1-chg", "purchase_order.changed", order("PO-ST", 1)),
        event("evt-r1-can", "purchase_order.cancelled", cancel("PO-ST", 1)),
    ]
    replies = [await deliver(bridge, body) for body in stale]

    for reply in replies:
        assert reply.status == 409, reply
        assert reply.body["error"] == "stale_revision", reply
    await settle(bridge)
    assert await counts(bridge) == before
    assert await event_ids(bridge) == {"evt-r2"}
    assert await bridge.revision(approval_id, 2) == pending
    assert pending.instance_id is not None
    assert bridge.gateway.instances[pending.instance_id].status == "RUNNING"
    assert len(bridge.gateway.instances) == 1


# --- changed: supersede ---------------------------------------------------------------------


async def test_changed_supersedes_pending_revision_and_late_decision_is_not_written_back(
    bridge: Bridge, erp: ErpReceiver
) -> None:
    approval_id = accepted(
        await deliver(bridge, event("evt-1", "purchase_order.submitted", order("PO-CHG")))
    )
    first = await bridge.wait_state(approval_id, 1, State.PENDING)
    old_instance = first.instance_id
    assert old_instance is not None
    assert bridge.gateway.instances[old_instance].status == "RUNNING"

    changed = event("evt-2", "purchase_order.changed", order("PO-CHG", 2, price="11.50"))
    assert accepted(await deliver(bridge, changed)) == approval_id

    # The old revision is superseded in the same transaction that took the new one.
    assert (await bridge.revision(approval_id, 1)).state is State.SUPERSEDED
    await eventually(
        lambda: bridge.gateway.instances[old_instance].status == "TERMINATED",
        "the superseded instance to be terminated",
    )
    second = await bridge.wait_state(approval_id, 2, State.PENDING)
    new_instance = second.instance_id
    assert new_instance is not None
    assert new_instance != old_instance
    raised = bridge.gateway.instances[new_instance]
    assert raised.status == "RUNNING"
    assert raised.request.revision == 2
    assert raised.request.reference == f"{approval_id}:2"
    assert second.document["lines"][0]["unit_price"] == "11.50"

    late = await bridge.decide(old_instance, "approved")
    assert late.outcome is DecisionOutcome.LATE
    assert (late.approval_id, late.revision) == (approval_id, 1)
    assert ("write_back", 1) not in await jobs_of(bridge, approval_id)

    applied = await bridge.decide(new_instance, "approved")
    assert applied.outcome is DecisionOutcome.APPLIED
    done = await bridge.wait_state(approval_id, 2, State.DONE)
    assert done.erp_ref == "ERP-1"
    await settle(bridge)

    assert len(erp.received) == 1, erp.received
    headers, body = erp.received[0]
    assert headers["Idempotency-Key"] == f"{approval_id}:2"
    assert body["revision"] == 2
    assert body["decision"] == "approved"
    assert body["process_instance_id"] == new_instance
    old = await bridge.revision(approval_id, 1)
    assert old.state is State.SUPERSEDED
    assert old.decision is None
    assert (1, "late_decision") in await audit_actions(bridge, approval_id)


# --- cancelled ------------------------------------------------------------------------------


async def test_cancel_terminates_pending_instance_and_nothing_is_written_back(
    bridge: Bridge, erp: ErpReceiver
) -> None:
    approval_id = accepted(
        await deliver(bridge, event("evt-1", "purchase_order.submitted", order("PO-CAN")))
    )
    pending = await bridge.wait_state(approval_id, 1, State.PENDING)
    instance_id = pending.instance_id
    assert instance_id is not None

    reply = await deliver(bridge, event("evt-2", "purchase_order.cancelled", cancel("PO-CAN")))

    assert accepted(reply) == approval_id
    assert (await bridge.revision(approval_id, 1)).state is State.CANCELLED
    await eventually(
        lambda: bridge.gateway.instances[instance_id].status == "TERMINATED",
        "the cancelled instance to be terminated",
    )
    late = await bridge.decide(instance_id, "approved")
    assert late.outcome is DecisionOutcome.LATE
    await settle(bridge)
    assert erp.received == []
    assert all(kind != "write_back" for kind, _ in await jobs_of(bridge, approval_id))
    row = await bridge.revision(approval_id, 1)
    assert row.state is State.CANCELLED
    assert row.decision is None
    assert len(bridge.gateway.instances) == 1
    assert await event_ids(bridge) == {"evt-1", "evt-2"}


async def test_cancel_before_submission_turns_the_late_submission_away(bridge: Bridge) -> None:
    reply = await deliver(bridge, event("evt-c", "purchase_order.cancelled", cancel("PO-EARLY")))
    approval_id = accepted(reply)
    row = await bridge.revision(approval_id, 1)
    assert row.state is State.CANCELLED
    assert row.doc_no == "PO-EARLY"
    before = await counts(bridge)

    late = await deliver(bridge, event("evt-s", "purchase_order.submitted", order("PO-EARLY")))
    older = await deliver(bridge, event("evt-s0", "purchase_order.submitted", order("PO-EARLY", 0)))

    # Whatever it is answered, the late submission must raise nothing and write nothing.
    await settle(bridge)
    assert await counts(bridge) == before
    assert bridge.gateway.instances == {}
    assert (await bridge.revision(approval_id, 1)).state is State.CANCELLED
    assert await event_ids(bridge) == {"evt-c"}
    assert older.status == 409, older
    assert older.body["error"] == "stale_revision"
    # CONTRACT §2: the same document and revision again is a duplicate of what we hold.
    assert late.status == 200, late
    assert late.body == {"status": "duplicate", "approval_id": approval_id}


# --- stock.below_safety: folding ------------------------------------------------------------


async def test_stock_events_fold_into_one_approval_in_sequence(bridge: Bridge) -> None:
    ids = [
        accepted(
            await deliver(
                bridge, event(f"stk-{i}", "stock.below_safety", stock(on_hand=str(80 - i)))
            )
        )
        for i in range(5)
    ]
    assert len(set(ids)) == 1
    first = ids[0]
    row = await bridge.wait_state(first, 1, State.PENDING)
    assert row.doc_type.value == "replenishment"
    assert len(bridge.gateway.instances) == 1
    found = await counts(bridge)
    assert (found["approval"], found["revision"], found["erp_event"]) == (1, 1, 5)
    assert [a for _, a in await audit_actions(bridge, first)].count("folded") == 4

    other = accepted(
        await deliver(bridge, event("stk-wh2", "stock.below_safety", stock(warehouse="WH2")))
    )
    assert other != first
    await bridge.wait_state(other, 1, State.PENDING)
    assert len(bridge.gateway.instances) == 2

    assert row.instance_id is not None
    assert (await bridge.decide(row.instance_id, "approved")).outcome is DecisionOutcome.APPLIED
    after = accepted(await deliver(bridge, event("stk-after", "stock.below_safety", stock())))
    assert after not in (first, other)
    await bridge.wait_state(after, 1, State.PENDING)
    assert len(bridge.gateway.instances) == 3
    assert (await counts(bridge))["approval"] == 3


async def test_concurrent_stock_events_fold_into_one_approval(bridge: Bridge) -> None:
    bodies = [event(f"stk-{i}", "stock.below_safety", stock(on_hand=str(i))) for i in range(5)]
    bodies += [event(f"stk-b{i}", "stock.below_safety", stock(warehouse="WH2")) for i in range(5)]
    replies = await asyncio.gather(*(deliver(bridge, body) for body in bodies))

    ids = [accepted(reply) for reply in replies]
    assert len(set(ids[:5])) == 1
    assert len(set(ids[5:])) == 1
    assert ids[0] != ids[5]
    for approval_id in (ids[0], ids[5]):
        await bridge.wait_state(approval_id, 1, State.PENDING)
        assert len(instances_for(bridge, approval_id)) == 1
    found = await counts(bridge)
    assert (found["approval"], found["revision"], found["erp_event"]) == (2, 2, 10)
    assert len(bridge.gateway.instances) == 2


# --- 401 ------------------------------------------------------------------------------------


def _without(headers: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in names}


def _tampered(raw: bytes) -> tuple[bytes, dict[str, str]]:
    return raw.replace(b'"12.00"', b'"10.00"'), signed(raw)


def _non_numeric(raw: bytes) -> tuple[bytes, dict[str, str]]:
    mac = hmac.new(SECRET.encode(), b"soon." + raw, hashlib.sha256).hexdigest()
    return raw, {
        "X-Bridge-Timestamp": "soon",
        "X-Bridge-Signature": f"v1={mac}",
        "Content-Type": JSON,
    }


AUTH_CASES: dict[str, tuple[Callable[[bytes], tuple[bytes, dict[str, str]]], str]] = {
    "missing both headers": (lambda r: (r, {"Content-Type": JSON}), "bad_signature"),
    "missing timestamp": (
        lambda r: (r, _without(signed(r), "X-Bridge-Timestamp")),
        "bad_signature",
    ),
    "missing signature": (
        lambda r: (r, _without(signed(r), "X-Bridge-Signature")),
        "bad_signature",
    ),
    "wrong secret": (lambda r: (r, signed(r, secret="not-the-secret")), "bad_signature"),
    "tampered body": (_tampered, "bad_signature"),
    "non-numeric timestamp": (_non_numeric, "bad_signature"),
    "no v1= prefix": (
        lambda r: (r, signed(r) | {"X-Bridge-Signature": signed(r)["X-Bridge-Signature"][3:]}),
        "bad_signature",
    ),
    "empty signature": (lambda r: (r, signed(r) | {"X-Bridge-Signature": "v1="}), "bad_signature"),
    "301 s in the past": (
        lambda r: (r, signed(r, ts=int(time.time()) - 301)),
        "stale_timestamp",
    ),
    "301 s in the future": (
        lambda r: (r, signed(r, ts=math.ceil(time.time()) + 301)),
        "stale_timestamp",
    ),
}


@pytest.mark.parametrize("case", list(AUTH_CASES))
async def test_unauthenticated_request_is_401_and_stores_nothing(bridge: Bridge, case: str) -> None:
    make, error = AUTH_CASES[case]
    raw, headers = make(encode(event("evt-auth", "purchase_order.submitted", order("PO-AUTH"))))

    reply = await post_raw(bridge, raw, headers)

    assert reply.status == 401, reply
    assert reply.body == {"error": error}
    assert await counts(bridge) == dict.fromkeys((t.name for t in COUNTED), 0)
    assert bridge.gateway.instances == {}


@pytest.mark.parametrize("skew", [-290, 290])
async def test_timestamp_within_tolerance_is_accepted(bridge: Bridge, skew: int) -> None:
    raw = encode(event("evt-skew", "purchase_order.submitted", order("PO-SKEW")))
    reply = await post_raw(bridge, raw, signed(raw, ts=int(time.time()) + skew))
    approval_id = accepted(reply)
    assert (await bridge.revision(approval_id, 1)).doc_no == "PO-SKEW"


async def _raw_http(bridge: Bridge, head: bytes, body: bytes) -> tuple[int, bytes, bytes]:
    """One HTTP/1.1 exchange written byte by byte (for header bytes no client library sends)."""
    host, port = bridge.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    header_block, _, payload = response.partition(b"\r\n\r\n")
    status = int(header_block.split(b" ", 2)[1])
    return status, header_block, payload


async def test_signature_header_with_bytes_that_are_not_utf8_is_401(bridge: Bridge) -> None:
    raw = encode(event("evt-bytes", "purchase_order.submitted", order("PO-BYTES")))
    stamp = str(int(time.time())).encode()
    head = (
        b"POST /erp/events HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\n"
        b"X-Bridge-Timestamp: " + stamp + b"\r\nX-Bridge-Signature: v1=\xff\xfe\r\n"
    )

    status, header_block, payload = await _raw_http(bridge, head, raw)

    assert status == 401, (header_block, payload)
    assert json.loads(payload) == {"error": "bad_signature"}
    assert await counts(bridge) == dict.fromkeys((t.name for t in COUNTED), 0)


# --- 413 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_over_1_mib_is_413_and_stores_nothing(bridge: Bridge, chunked: bool) -> None:
    raw = padded(event("evt-big", "purchase_order.submitted", order("PO-BIG")), MiB + 1)
    data: Any = chunks(raw) if chunked else raw

    reply = await post_raw(bridge, data, signed(raw))

    assert reply.status == 413, reply
    assert reply.body == {"error": "payload_too_large"}
    assert await counts(bridge) == dict.fromkeys((t.name for t in COUNTED), 0)
    async with bridge.http.get(bridge.url + "/healthz") as health:
        assert health.status == 200


@pytest.mark.parametrize(
    ("size", "chunked"),
    [(2_000, True), (300_000, False), (300_000, True), (MiB, False), (MiB, True)],
    ids=["small-chunked", "300k", "300k-chunked", "1mib", "1mib-chunked"],
)
async def test_body_up_to_1_mib_is_read_whole_and_accepted(
    bridge: Bridge, size: int, chunked: bool
) -> None:
    """At most 1 MiB is allowed: a body of that size (in one piece or many) is read completely."""
    raw = padded(event("evt-size", "purchase_order.submitted", order("PO-SIZE")), size)
    data: Any = chunks(raw, 1000) if chunked and size < 10_000 else chunks(raw) if chunked else raw

    reply = await post_raw(bridge, data, signed(raw))

    approval_id = accepted(reply)
    assert await event_ids(bridge) == {"evt-size"}
    assert (await bridge.revision(approval_id, 1)).doc_no == "PO-SIZE"


# --- 415 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/xml"])
async def test_body_that_is_not_json_is_415(bridge: Bridge, content_type: str | None) -> None:
    raw = encode(event("evt-ct", "purchase_order.submitted", order("PO-CT")))
    headers = _without(signed(raw), "Content-Type")
    if content_type is not None:
        headers["Content-Type"] = content_type

    reply = await post_raw(bridge, raw, headers, skip_auto_headers=["Content-Type"])

    assert reply.status == 415, reply
    assert reply.body == {"error": "unsupported_media_type"}
    assert await counts(bridge) == dict.fromkeys((t.name for t in COUNTED), 0)


# --- 400 ------------------------------------------------------------------------------------


def _po(**changes: Any) -> dict[str, Any]:
    body = event("evt-bad", "purchase_order.submitted", order("PO-BAD"))
    for path, value in changes.items():
        node: Any = body
        keys = [int(k) if k.isdigit() else k for k in path.split("__")]
        for key in keys[:-1]:
            node = node[key]
        if value is _DELETE:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return body


_DELETE = object()

INVALID: dict[str, tuple[bytes | dict[str, Any], list[Any] | None]] = {
    # (body, the `loc` that must be reported; None where no field is to blame)
    "not json": (b'{"event_id": "evt-bad", ', None),
    "json array": (b"[]", None),
    "json string": (b'"purchase_order.submitted"', None),
    "unknown type": (_po(type="purchase_order.approved"), ["type"]),
    "missing type": (_po(type=_DELETE), ["type"]),
    "missing event_id": (_po(event_id=_DELETE), ["event_id"]),
    "missing data": (_po(data=_DELETE), ["data"]),
    "missing data field": (_po(data__doc_no=_DELETE), ["data", "doc_no"]),
    "missing buyer": (_po(data__buyer=_DELETE), ["data", "buyer"]),
    "float money": (_po(data__lines__0__unit_price=12.5), ["data", "lines", 0, "unit_price"]),
    "integer quantity": (_po(data__lines__0__quantity=1000), ["data", "lines", 0, "quantity"]),
    "float total": (_po(data__total_amount=12000.0), ["data", "total_amount"]),
    "too many decimal places": (
        _po(data__lines__0__unit_price="12.0000001"),
        ["data", "lines", 0, "unit_price"],
    ),
    "money that is not a number": (_po(data__total_amount="12,000.00"), ["data", "total_amount"]),
    "money out of decimal range": (
        _po(data__lines__0__quantity="1e999999999999999999"),
        ["data", "lines", 0, "quantity"],
    ),
    "naive occurred_at": (_po(occurred_at="2026-11-25T10:00:00"), ["occurred_at"]),
    "occurred_at out of range in UTC": (
        _po(occurred_at="9999-12-31T23:59:59-14:00"),
        ["occurred_at"],
    ),
    "empty lines": (_po(data__lines=[]), ["data", "lines"]),
    "revision not a number": (_po(data__revision="two"), ["data", "revision"]),
    "stock on_hand as float": (
        event("evt-bad", "stock.below_safety", stock() | {"on_hand": 80.0}),
        ["data", "on_hand"],
    ),
    "cancel without revision": (
        event("evt-bad", "purchase_order.cancelled", {"doc_no": "PO-BAD"}),
        ["data", "revision"],
    ),
}


@pytest.mark.parametrize("case", list(INVALID))
async def test_invalid_payload_is_400_naming_the_field(bridge: Bridge, case: str) -> None:
    body, loc = INVALID[case]

    reply = await deliver(bridge, body)

    assert reply.status == 400, reply
    assert reply.body["error"] == "invalid_payload"
    details = reply.body["details"]
    assert isinstance(details, list)
    assert details
    for item in details:
        assert isinstance(item["loc"], list), item
        assert isinstance(item["msg"], str), item
        assert item["msg"], item
    if loc is not None:
        # The field is named at the end of `loc` (the exact form is checked separately below).
        assert any(item["loc"][-len(loc) :] == loc for item in details), details
    assert await counts(bridge) == dict.fromkeys((t.name for t in COUNTED), 0)


@pytest.mark.parametrize(
    ("case", "loc"),
    [
        ("missing data field", ["data", "doc_no"]),
        ("float money", ["data", "lines", 0, "unit_price"]),
        ("naive occurred_at", ["occurred_at"]),
        ("stock on_hand as float", ["data", "on_hand"]),
    ],
)
async def test_invalid_payload_loc_is_the_path_in_the_body(
    bridge: Bridge, case: str, loc: list[Any]
) -> None:
    """`loc` is the JSON path of the field in what the ERP sent, with nothing of ours before it."""
    body, _ = INVALID[case]

    reply = await deliver(bridge, body)

    assert reply.status == 400, reply
    assert [item["loc"] for item in reply.body["details"]] == [loc]


async def test_nul_character_is_refused_without_failing_other_events(bridge: Bridge) -> None:
    """PostgreSQL cannot store U+0000 in text: it must be a 400, and its batch neighbours stored."""
    good = [event(f"evt-ok-{i}", "purchase_order.submitted", order(f"PO-OK-{i}")) for i in range(5)]
    bad = event("evt-nul", "purchase_order.submitted", order("PO-\x00-NUL"))

    replies = await asyncio.gather(*(deliver(bridge, body) for body in [*good, bad]))

    for reply in replies[:5]:
        accepted(reply)
    assert await event_ids(bridge) == {f"evt-ok-{i}" for i in range(5)}
    nul = replies[5]
    assert nul.status == 400, nul
    assert nul.body["error"] == "invalid_payload"
    assert ["data", "doc_no"] in [item["loc"] for item in nul.body["details"]]


# --- 503 and group commit -------------------------------------------------------------------


async def test_full_intake_queue_is_503_with_retry_after_and_stores_nothing(
    db_url: str, erp: ErpReceiver
) -> None:
    settings = bridge_settings(db_url, erp.url).model_copy(
        update={"intake": IntakeConfig(max_queue=1, max_batch=1)}
    )
    bodies = {
        f"evt-ovl-{i}": event(f"evt-ovl-{i}", "purchase_order.submitted", order(f"PO-OVL-{i}"))
        for i in range(60)
    }
    async with running_bridge(settings) as bridge:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            replies = dict(
                zip(
                    bodies,
                    await asyncio.gather(*(deliver(bridge, b, http) for b in bodies.values())),
                    strict=True,
                )
            )
        taken = {eid for eid, reply in replies.items() if reply.status == 202}
        refused = {eid for eid, reply in replies.items() if reply.status == 503}

        assert taken | refused == set(bodies), {r.status for r in replies.values()}
        assert refused, "a queue of one must overflow under 60 concurrent deliveries"
        for eid in refused:
            reply = replies[eid]
            assert reply.body == {"error": "overloaded"}
            assert reply.retry_after is not None, reply
            assert int(reply.retry_after) >= 1
        assert await event_ids(bridge) == taken
        found = await counts(bridge)
        assert found["approval"] == found["revision"] == len(taken)

        # Nothing was kept of a refused event, so the ERP's retry is taken as new.
        for eid in sorted(refused):
            accepted(await deliver(bridge, bodies[eid]))
        assert await event_ids(bridge) == set(bodies)


async def test_group_commit_stores_300_concurrent_events_in_few_transactions(
    bridge: Bridge,
) -> None:
    bodies = [
        event(f"evt-gc-{i}", "purchase_order.submitted", order(f"PO-GC-{i:03}")) for i in range(300)
    ]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        replies = await asyncio.gather(*(deliver(bridge, body, http) for body in bodies))

    ids = [accepted(reply) for reply in replies]
    assert len(set(ids)) == 300
    assert await event_ids(bridge) == {body["event_id"] for body in bodies}
    async with bridge.db.read() as conn:
        stored = dict(
            (await conn.execute(select(erp_event.c.event_id, erp_event.c.approval_id))).all()
        )
        docs = dict((await conn.execute(select(approval.c.id, approval.c.doc_no))).all())
        batches = (
            await conn.execute(select(func.count(distinct(erp_event.c.received_at))))
        ).scalar_one()
    for body, approval_id in zip(bodies, ids, strict=True):
        assert stored[body["event_id"]] == approval_id
        assert docs[approval_id] == body["data"]["doc_no"]
    # Each transaction stamps its events with one `received_at`: few values, many per commit.
    assert batches <= 50, f"{batches} commits for 300 concurrent events: no group commit"
