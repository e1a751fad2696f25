"""Hostile input against a real `approval-bridge run` process (issue 6, deliverable 4).

Two processes, each with the DingTalk sandbox and the reference ERP beside it (`bot.bench.stack`):
one on the DingTalk stream (webhooks, chat, dashboard), one taking encrypted HTTP callbacks.
Both run with short HTTP deadlines and a low connection limit, at DEBUG level, with every secret
set: slow, oversized, replayed and forged requests are refused, non-admins change nothing, and
no secret shows in the logs, the answers, /metrics, the dashboard or `approval-bridge check`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import re
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import func, select

from approvals.config import DatabaseConfig
from approvals.db.engine import Database
from approvals.db.tables import audit, erp_event, inbox, job, revision
from bot.bench.machine import Placement
from bot.bench.stack import APP_KEY, APP_SECRET, Stack, StackOptions, free_port
from bot.sandbox.crypto import CallbackCrypto
from tests.harness import event, order
from tests.reliability.conftest import Figures, size, span

pytestmark = pytest.mark.asyncio(loop_scope="module")

LIMIT = size(100, 1000)
"""`http.max_connections` of both processes."""
HEADER_S, BODY_S, KEEPALIVE_S = span(1.0, 2.0), span(1.5, 3.0), 2.0
SLACK_S = 1.0
"""Allowed beyond a deadline (a loaded two-core machine)."""
DASHBOARD_USER = "auditor"
SECRETS = {
    "dashboard token": secrets.token_urlsafe(24),
    "dashboard password": secrets.token_urlsafe(18),
    "callback token": secrets.token_hex(12),
    "callback AES key": base64.b64encode(secrets.token_bytes(32)).decode()[:43],
}
ENV = {
    "HTTP__MAX_CONNECTIONS": str(LIMIT),
    "HTTP__HEADER_TIMEOUT_S": str(HEADER_S),
    "HTTP__BODY_TIMEOUT_S": str(BODY_S),
    "HTTP__KEEPALIVE_TIMEOUT_S": str(KEEPALIVE_S),
    "LOG__LEVEL": "DEBUG",
    "DASHBOARD__TOKEN": SECRETS["dashboard token"],
    "DASHBOARD__USERNAME": DASHBOARD_USER,
    "DASHBOARD__PASSWORD": SECRETS["dashboard password"],
    "DINGTALK__CALLBACK_TOKEN": SECRETS["callback token"],
    "DINGTALK__CALLBACK_AES_KEY": SECRETS["callback AES key"],
    "JOBS__POLL_INTERVAL_S": "0.1",
    "JOBS__BACKOFF_INITIAL_S": "0.2",
}
ANSWERS: list[bytes] = []
"""Every answer the bridges gave in this module, checked for secrets at the end."""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """The bridge on the DingTalk stream."""
    folder = tmp_path_factory.mktemp("hostile-stream")
    async with Stack.up(folder, Placement.detect(), StackOptions(qps=None, env=ENV)) as up:
        yield up


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """The bridge taking DingTalk's encrypted HTTP callbacks."""
    folder = tmp_path_factory.mktemp("hostile-http")
    options = StackOptions(qps=None, env={**ENV, "DINGTALK__MODE": "http"})
    async with Stack.up(folder, Placement.detect(), options) as up:
        yield up


# --- raw HTTP ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    """0 when the connection was closed without an answer."""
    head: bytes
    body: bytes
    seconds: float
    """From sending until the server closed the connection."""
    first_s: float = 0.0
    """From sending until the answer began (`ask` only)."""

    def json(self) -> Any:
        return json.loads(self.body)


def parse(raw: bytes, seconds: float, first_s: float = 0.0) -> Answer:
    ANSWERS.append(raw)
    head, _, body = raw.partition(b"\r\n\r\n")
    return Answer(int(head.split(b" ", 2)[1]) if head else 0, head, body, seconds, first_s)


async def ask(port: int, request: bytes, wait_s: float = 15) -> Answer:
    """Send raw bytes on a fresh connection; the answer, read until the server closes."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        raw = await asyncio.wait_for(reader.read(1), wait_s)
        first_s = time.monotonic() - started
        raw += await asyncio.wait_for(reader.read(), wait_s)
    finally:
        writer.close()
    return parse(raw, time.monotonic() - started, first_s)


async def dribble(port: int, head: bytes, drips: Iterable[bytes], every_s: float) -> Answer:
    """Send `head`, then one drip after another until the server answers or closes."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def trickle() -> None:
        writer.write(head)
        with contextlib.suppress(ConnectionError):
            for piece in drips:
                await asyncio.sleep(every_s)
                if writer.is_closing():
                    return
                writer.write(piece)

    dripping = asyncio.create_task(trickle())
    try:
        raw = await asyncio.wait_for(reader.read(), 30)
    except ConnectionResetError:  # cut while a byte was in flight: a reset, not a close
        raw = b""
    finally:
        dripping.cancel()
        await asyncio.gather(dripping, return_exceptions=True)
        writer.close()
    return parse(raw, time.monotonic() - started)


def drip(piece: bytes) -> Iterator[bytes]:
    """The same bytes again and again."""
    return itertools.repeat(piece)


def byte_by_byte(data: bytes) -> Iterator[bytes]:
    """`data` one byte at a time, then header lines for ever, a byte at a time too."""
    endless = itertools.chain(data, itertools.cycle(b"X-Pad: slow\r\n"))
    return (bytes([b]) for b in endless)


def signed_head(secret: str, body: bytes, stamp: int | None = None, length: bool = True) -> bytes:
    """A webhook's request head, signed as CONTRACT section 2 says (written out independently)."""
    ts = str(int(time.time()) if stamp is None else stamp).encode()
    mac = hmac.new(secret.encode(), ts + b"." + body, hashlib.sha256).hexdigest().encode()
    head = (
        b"POST /erp/events HTTP/1.1\r\nHost: bridge\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nX-Bridge-Timestamp: " + ts + b"\r\n"
        b"X-Bridge-Signature: v1=" + mac + b"\r\n"
    )
    if length:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + b"\r\n"


def get(path: str, headers: Mapping[str, str] | None = None, method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: bridge", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def stock_event(event_id: str, material: str) -> bytes:
    data = {
        "material_code": material,
        "material_name": "刀片",
        "unit": "片",
        "warehouse": "WH1",
        "on_hand": "1",
        "safety_stock": "5",
        "reorder_qty": "10",
        "preferred_supplier": {"code": "S001", "name": "S"},
        "requester": {"erp_user": "u1002", "name": "李四"},
    }
    return json.dumps(event(event_id, "stock.below_safety", data)).encode()


async def webhook(stack: Stack, body: bytes, stamp: int | None = None) -> Answer:
    return await ask(stack.port, signed_head(stack.secret, body, stamp) + body)


# --- the database -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def database(stack: Stack) -> AsyncIterator[Database]:
    db = Database.from_config(DatabaseConfig(url=stack.database_url))
    try:
        yield db
    finally:
        await db.dispose()


async def snapshot(stack: Stack) -> dict[str, Any]:
    """What a command or a request could change: approvals, jobs, the audit trail, the inboxes."""
    async with database(stack) as db, db.read() as conn:
        revisions = await conn.execute(
            select(revision.c.approval_id, revision.c.revision, revision.c.state)
        )
        jobs = await conn.execute(select(job.c.id, job.c.kind, job.c.status, job.c.attempts))
        return {
            "revisions": sorted(tuple(r) for r in revisions),
            "jobs": sorted(tuple(r) for r in jobs),
            "audit": (await conn.execute(select(func.count()).select_from(audit))).scalar(),
            "events": (await conn.execute(select(func.count()).select_from(erp_event))).scalar(),
            "inbox": (await conn.execute(select(func.count()).select_from(inbox))).scalar(),
        }


async def stored(stack: Stack, event_id: str) -> bool:
    async with database(stack) as db, db.read() as conn:
        query = select(func.count()).select_from(erp_event).where(erp_event.c.event_id == event_id)
        return bool((await conn.execute(query)).scalar())


async def instances_of(stack: Stack, doc_no: str) -> list[dict[str, Any]]:
    """The sandbox's instances raised for a document (its number is in the form)."""
    found = await stack.sandbox.instances()
    return [i for i in found if doc_no in json.dumps(i, ensure_ascii=False)]


async def until(predicate: Any, wait_s: float = 20) -> None:
    deadline = time.monotonic() + wait_s
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.1)


# --- connections: slowloris, too many, slow and oversized bodies ------------------------------


async def test_slowloris_is_cut_at_the_header_timeout_while_webhooks_are_answered(
    stack: Stack, figures: Figures
) -> None:
    count = size(60, 800)
    assert count < LIMIT
    head = b"POST /erp/events HTTP/1.1\r\nHost: bridge\r\n"
    lorises = [
        asyncio.create_task(dribble(stack.port, b"", byte_by_byte(head), every_s=0.1))
        for _ in range(count)
    ]
    await asyncio.sleep(0.3)
    latencies = []
    for n in range(size(4, 12)):
        answer = await webhook(stack, stock_event(f"loris-{uuid.uuid4()}", f"M-LORIS-{n}"))
        assert answer.status == 202, answer
        latencies.append(answer.seconds)
        await asyncio.sleep(HEADER_S / 5)
    cut = await asyncio.gather(*lorises)
    assert {a.status for a in cut} == {0}  # closed, never answered
    held = [a.seconds for a in cut]
    assert max(held) < HEADER_S + SLACK_S, max(held)
    assert min(held) >= HEADER_S * 0.9
    assert max(latencies) < 1.0, latencies
    figures.record(
        "hostile",
        case="slowloris",
        connections=count,
        cut=len(cut),
        header_timeout_s=HEADER_S,
        held_median_s=round(statistics.median(held), 2),
        held_max_s=round(max(held), 2),
        webhooks_meanwhile=len(latencies),
        webhook_max_s=round(max(latencies), 3),
    )


async def test_connections_past_the_limit_are_cut_and_service_resumes(
    stack: Stack, figures: Figures
) -> None:
    extra = size(30, 200)
    started = time.monotonic()
    conns = [await asyncio.open_connection("127.0.0.1", stack.port) for _ in range(LIMIT + extra)]
    reads = [asyncio.create_task(reader.read()) for reader, _ in conns]
    done, waiting = await asyncio.wait(reads, timeout=HEADER_S / 3)
    opened_s = time.monotonic() - started
    refused = [task.result() for task in done]
    # While it is full, even a health check is turned away at once, in JSON.
    full = await ask(stack.port, get("/healthz"))
    for _, writer in conns:
        writer.close()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert opened_s < HEADER_S, "too slow to fill the server before the header timeout"
    assert len(waiting) == LIMIT
    assert len(refused) == extra
    assert all(raw.startswith(b"HTTP/1.1 503 ") for raw in refused), refused[:3]
    assert (full.status, full.json()) == (503, {"error": "overloaded"})
    await asyncio.sleep(0.2)
    health = await ask(stack.port, get("/healthz"))
    assert health.status == 200
    answer = await webhook(stack, stock_event(f"after-flood-{uuid.uuid4()}", "M-FLOOD"))
    assert answer.status == 202, answer
    metrics = (await ask(stack.port, get("/metrics"))).body.decode()
    cuts = re.search(r'approval_bridge_http_connections_cut_total\{reason="limit"\} (\S+)', metrics)
    assert cuts is not None and float(cuts.group(1)) >= extra + 1
    figures.record(
        "hostile",
        case="connection_limit",
        max_connections=LIMIT,
        opened=LIMIT + extra,
        held=len(waiting),
        refused_503=len(refused),
        refused_within_s=round(HEADER_S / 3, 2),
        answered_after=True,
    )


async def test_slow_and_oversized_bodies_are_cut_and_nothing_is_stored(
    stack: Stack, figures: Figures
) -> None:
    event_id = f"slow-{uuid.uuid4()}"
    body = stock_event(event_id, "M-SLOW")
    slow = await dribble(stack.port, signed_head(stack.secret, body) + body[:10], drip(b"x"), 0.2)
    assert (slow.status, slow.json()) == (408, {"error": "request_timeout"})
    assert slow.seconds < BODY_S + SLACK_S
    chunked_head = signed_head(stack.secret, body, length=False)
    chunked_head = chunked_head[:-2] + b"Transfer-Encoding: chunked\r\n\r\n"
    slow_chunks = await dribble(stack.port, chunked_head + b"1\r\n{\r\n", drip(b"1\r\n \r\n"), 0.2)
    assert (slow_chunks.status, slow_chunks.json()) == (408, {"error": "request_timeout"})
    assert slow_chunks.seconds < BODY_S + SLACK_S
    assert not await stored(stack, event_id)
    # Over 1 MiB: refused on the announced length, before the body is sent ...
    huge = (2 << 20) * b" "
    announced = await ask(stack.port, signed_head(stack.secret, huge))
    assert (announced.status, announced.json()) == (413, {"error": "payload_too_large"})
    assert announced.first_s < 0.5  # then the connection lingers while the body drains
    # ... or as soon as a chunked body passes it.
    chunk = b"%x\r\n%s\r\n" % (1 << 16, b" " * (1 << 16))
    over = await ask(stack.port, chunked_head + chunk * 17)
    assert (over.status, over.json()) == (413, {"error": "payload_too_large"})
    # An idle kept-alive connection is let go.
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n")
    await reader.readuntil(b'"ok"}')
    idle = time.monotonic()
    assert await asyncio.wait_for(reader.read(), KEEPALIVE_S + 5) == b""
    idle_s = time.monotonic() - idle
    writer.close()
    assert idle_s < KEEPALIVE_S + SLACK_S
    figures.record(
        "hostile",
        case="bodies",
        body_timeout_s=BODY_S,
        slow_body_408_after_s=round(slow.seconds, 2),
        slow_chunked_408_after_s=round(slow_chunks.seconds, 2),
        oversized_413=["content-length", "chunked"],
        keepalive_timeout_s=KEEPALIVE_S,
        idle_closed_after_s=round(idle_s, 2),
        stored=0,
    )


# --- replays and forgeries --------------------------------------------------------------------


async def test_replayed_webhooks_are_refused_or_change_nothing(
    stack: Stack, figures: Figures
) -> None:
    event_id, doc_no = f"replay-{uuid.uuid4()}", f"PO-REPLAY-{uuid.uuid4().hex[:6]}"
    body = json.dumps(event(event_id, "purchase_order.submitted", order(doc_no))).encode()
    now = int(time.time())
    for stamp in (now - 301, now - 3600, now + 302, 0):
        stale = await webhook(stack, body, stamp)
        assert (stale.status, stale.json()) == (401, {"error": "stale_timestamp"}), stamp
    forged = await ask(stack.port, signed_head("not-the-secret", body) + body)
    assert (forged.status, forged.json()) == (401, {"error": "bad_signature"})
    assert not await stored(stack, event_id)
    request = signed_head(stack.secret, body) + body
    first = await ask(stack.port, request)
    assert first.status == 202, first
    approval_id = first.json()["approval_id"]

    async def raised() -> bool:
        return bool(await instances_of(stack, doc_no))

    await until(raised)
    before = await snapshot(stack)
    replays = size(5, 50)
    for _ in range(replays):  # the very same bytes, signature and all, within the window
        again = await ask(stack.port, request)
        assert (again.status, again.json()) == (
            200,
            {"status": "duplicate", "approval_id": approval_id},
        )
    await asyncio.sleep(1.0)  # time for a wrong second instance to show up, were there one
    assert await snapshot(stack) == before
    mine = await instances_of(stack, doc_no)
    assert len(mine) == 1
    figures.record(
        "hostile",
        case="replay",
        stale_refused=4,
        forged_refused=1,
        replays_within_window=replays,
        duplicates=replays,
        instances=len(mine),
    )


async def test_forged_http_callbacks_are_refused(http_stack: Stack, figures: Figures) -> None:
    token, aes = SECRETS["callback token"], SECRETS["callback AES key"]
    dingtalk = CallbackCrypto(token, aes, APP_KEY)
    other_owner = CallbackCrypto(token, aes, "dingsomeoneelse")
    other_keys = CallbackCrypto(
        secrets.token_hex(12), base64.b64encode(os.urandom(32)).decode()[:43], APP_KEY
    )
    finish = {
        "EventType": "bpms_instance_change",
        "processInstanceId": "forged-instance",
        "type": "finish",
        "result": "agree",
    }

    def push(side: CallbackCrypto, payload: str, sign_with: CallbackCrypto | None = None) -> bytes:
        encrypt = side.encrypt(payload)
        stamp, nonce = str(int(time.time() * 1000)), "n0nce"
        sig = (sign_with or side).sign(stamp, nonce, encrypt)
        return callback(f"msg_signature={sig}&timestamp={stamp}&nonce={nonce}", encrypt)

    def callback(query: str, encrypt: str, body: bytes | None = None) -> bytes:
        data = body if body is not None else json.dumps({"encrypt": encrypt}).encode()
        head = (
            f"POST /dingtalk/callback?{query} HTTP/1.1\r\nHost: bridge\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        return head.encode() + data

    before = await snapshot(http_stack)
    port = http_stack.port
    cases = {
        "bad signature": (push(dingtalk, json.dumps(finish), sign_with=other_keys), 403),
        "no signature": (callback("", dingtalk.encrypt(json.dumps(finish))), 403),
        "wrong owner key": (push(other_owner, json.dumps(finish)), 403),
        "other app's keys": (push(other_keys, json.dumps(finish)), 403),
        "garbage ciphertext": (push_garbage(dingtalk), 400),
        "not JSON": (callback("", "", b"\xff\xfe not json"), 400),
        "oversized": (callback("", "", b'{"encrypt": "' + b"A" * (2 << 20) + b'"}'), 413),
    }
    refused = {}
    for name, (request, status) in cases.items():
        answer = await ask(port, request)
        assert answer.status == status, (name, answer)
        refused[name] = answer.json()["error"]
    slow_head = (
        b"POST /dingtalk/callback HTTP/1.1\r\nHost: bridge\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{"
    )
    slow = await dribble(port, slow_head, drip(b" "), 0.2)
    assert (slow.status, slow.json()) == (408, {"error": "request_timeout"})
    assert slow.seconds < BODY_S + SLACK_S
    assert await snapshot(http_stack) == before
    # And DingTalk's own, properly made push is still taken.
    ok = await ask(port, push(dingtalk, json.dumps({"EventType": "check_url"})))
    assert ok.status == 200
    assert dingtalk.open_envelope(ok.json()) == "success"
    figures.record("hostile", case="http_callbacks", refused=refused, genuine_accepted=True)


def push_garbage(side: CallbackCrypto) -> bytes:
    """Properly signed, but the ciphertext decrypts to nothing readable."""
    encrypt = base64.b64encode(os.urandom(64)).decode()
    stamp, nonce = str(int(time.time() * 1000)), "n0nce"
    sig = side.sign(stamp, nonce, encrypt)
    data = json.dumps({"encrypt": encrypt}).encode()
    return (
        f"POST /dingtalk/callback?msg_signature={sig}&timestamp={stamp}&nonce={nonce} HTTP/1.1"
        f"\r\nHost: bridge\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data


# --- chat and dashboard -----------------------------------------------------------------------


async def test_chat_commands_from_non_admins_change_nothing(stack: Stack, figures: Figures) -> None:
    erp, sandbox = stack.erp, stack.sandbox
    parked_doc, open_doc = f"PO-PARK-{uuid.uuid4().hex[:6]}", f"PO-OPEN-{uuid.uuid4().hex[:6]}"
    erp.set_fault("reject", fail_next=1)  # the first write-back is refused: parked
    erp.submit_order(order(parked_doc))
    erp.submit_order(order(open_doc))
    await erp.wait_delivered()

    async def instance_of(doc: str) -> dict[str, Any] | None:
        found = await instances_of(stack, doc)
        return found[0] if found else None

    async def both_raised() -> bool:
        return None not in (await instance_of(parked_doc), await instance_of(open_doc))

    await until(both_raised)
    parked = await instance_of(parked_doc)
    assert parked is not None
    await sandbox.approve(parked["instanceId"])

    async def is_parked() -> bool:
        return any(j[2] == "parked" for j in (await snapshot(stack))["jobs"])

    await until(is_parked)
    await asyncio.sleep(1.0)  # the admins' notice of the parked write-back goes out
    before, write_backs = await snapshot(stack), len(erp.write_backs)
    commands = [
        f"retry {parked_doc}",
        f"重试 {parked_doc}",
        "sync",
        "同步",
        f"cancel {open_doc}",
        f"取消 {open_doc}",
        f"status {open_doc}",
        "pending",
        "stats",
        "failed",
        "help",
        f"RETRY {parked_doc}",
        f"retry {parked_doc}; sync",
        "<script>alert(1)</script>",
    ]
    impostors = ["dt-intruder", "dt-admin ", "DT-ADMIN", "dt-admin\u200b"]
    sends = [(who, text) for who in impostors for text in commands[: size(4, len(commands))]]
    sends += [("dt-intruder", text) for text in commands]
    replies = await asyncio.gather(*(sandbox.deliver_chat(who, text) for who, text in sends))
    refusals = 0
    for (who, text), reply in zip(sends, replies, strict=True):
        texts = [json.dumps(r, ensure_ascii=False) for r in reply["replies"]]
        assert texts, (who, text)
        assert all("Sorry, only admins" in t for t in texts), (who, text, texts)
        refusals += 1
    await asyncio.sleep(1.0)
    assert await snapshot(stack) == before
    assert len(erp.write_backs) == write_backs
    assert erp.order(parked_doc).status != "approved"
    still = await instance_of(open_doc)
    assert still is not None and still["status"] == "RUNNING"
    # The same command from the admin does act: the check above could have seen a change.
    await sandbox.deliver_chat("dt-admin", f"retry {parked_doc}")

    async def written_back() -> bool:
        return erp.order(parked_doc).status == "approved"

    await until(written_back)
    figures.record(
        "hostile",
        case="chat_non_admin",
        messages=len(sends),
        senders=len(impostors),
        refused=refusals,
        changes=0,
        admin_retry_worked=True,
    )


async def test_the_dashboard_refuses_missing_and_wrong_credentials(
    stack: Stack, figures: Figures
) -> None:
    token, password = SECRETS["dashboard token"], SECRETS["dashboard password"]

    def basic(user: str, word: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{word}".encode()).decode()

    wrong = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer " + token[:-1]},
        {"Authorization": "Bearer " + token + "x"},
        {"Authorization": "Bearer " + password},
        {"Authorization": "Token " + token},
        {"Authorization": basic(DASHBOARD_USER, token)},
        {"Authorization": basic(DASHBOARD_USER, password[:-1])},
        {"Authorization": basic("admin", password)},
        {"Authorization": basic(DASHBOARD_USER.upper(), password)},
        {"Authorization": "Basic " + password},
        {"Authorization": "Basic !!!"},
        {"Cookie": f"token={token}"},
        {"X-Forwarded-User": DASHBOARD_USER},
    ]
    for headers in wrong:
        for method in ("GET", "HEAD"):
            answer = await ask(stack.port, get("/", headers, method))
            assert answer.status == 401, (headers, method, answer.head)
            assert b"WWW-Authenticate: Bearer" in answer.head
    for path in ("/?x=1", "//", "/index.html", "/%2F"):
        assert (await ask(stack.port, get(path))).status in (401, 404), path
    assert (await ask(stack.port, get("/", method="POST"))).status == 405
    for good in (
        {"Authorization": "Bearer " + token},
        {"Authorization": basic(DASHBOARD_USER, password)},
    ):
        page = await ask(stack.port, get("/", good))
        assert page.status == 200
        assert b"<html" in page.body.lower()
    figures.record("hostile", case="dashboard", refused_401=2 * len(wrong), accepted=2)


# --- secrets ----------------------------------------------------------------------------------


async def run_cli(*args: str, env: Mapping[str, str], cwd: Path) -> tuple[int, str]:
    """`approval-bridge ARGS` with only `env` for configuration; (exit code, stdout + stderr)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("APPROVAL_BRIDGE")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        *args,
        env={**base, **env},
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


async def test_no_secret_shows_anywhere(
    stack: Stack, http_stack: Stack, tmp_path: Path, figures: Figures
) -> None:
    db_password = secrets.token_urlsafe(12)
    known = {
        **SECRETS,
        "webhook secret": stack.secret,
        "http webhook secret": http_stack.secret,
        "app secret": APP_SECRET,
        "basic credentials": base64.b64encode(
            f"{DASHBOARD_USER}:{SECRETS['dashboard password']}".encode()
        ).decode(),
        "database password": db_password,
    }
    tokens = {**stack.sandbox.state.tokens.current(), **http_stack.sandbox.state.tokens.current()}
    known |= {f"access token of {app}": value for app, value in tokens.items()}
    # Tempt it: errors that carry credentials close to the real ones.
    near = await ask(
        stack.port, get("/", {"Authorization": "Bearer " + SECRETS["dashboard token"][:-2]})
    )
    assert near.status == 401
    body = stock_event(f"tempt-{uuid.uuid4()}", "M-TEMPT")
    await ask(stack.port, signed_head(stack.secret[::-1], body) + body)
    await ask(stack.port, b"GET /" + stack.secret.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    surfaces: dict[str, str] = {}
    for name, up in (("stream", stack), ("http", http_stack)):
        surfaces[f"/metrics ({name})"] = (await ask(up.port, get("/metrics"))).body.decode()
        auth = {"Authorization": "Bearer " + SECRETS["dashboard token"]}
        surfaces[f"dashboard ({name})"] = (await ask(up.port, get("/", auth))).body.decode()
        surfaces[f"/readyz ({name})"] = (await ask(up.port, get("/readyz"))).body.decode()
    surfaces["answers"] = b"\n".join(ANSWERS).decode(errors="replace")
    surfaces |= await cli_outputs(stack, tmp_path, db_password)
    # Both services stop cleanly, so the logs hold everything, shutdown included.
    for name, up in (("stream", stack), ("http", http_stack)):
        assert up.process is not None and up.process.poll() is None, f"{name} bridge died"
        up.process.terminate()
        assert await asyncio.to_thread(up.process.wait, 20) == 0
        log = (up.folder / "bridge.log").read_text(encoding="utf-8", errors="replace")
        assert "DEBUG" in log
        assert "Traceback" not in log, log[log.index("Traceback") - 500 :][:3000]
        surfaces[f"log ({name})"] = log
    leaks = [
        f"{secret} in {surface}"
        for surface, text in surfaces.items()
        for secret, value in known.items()
        if value in text
    ]
    assert leaks == []
    figures.record(
        "hostile",
        case="secrets",
        secrets_checked=len(known),
        surfaces=len(surfaces),
        log_bytes=sum(len(t) for s, t in surfaces.items() if s.startswith("log")),
        answers_checked=len(ANSWERS),
        leaks=0,
    )


async def cli_outputs(stack: Stack, folder: Path, db_password: str) -> dict[str, str]:
    """`check` and `run` on configurations that tempt a leak; what each printed."""
    outputs = {}
    webhook_secret = stack.secret
    aes = SECRETS["callback AES key"]
    in_file = folder / "secrets-in-file.toml"
    in_file.write_text(
        f"""
[database]
url = "postgresql+asyncpg://bridge:{db_password}@127.0.0.1:1/bridge"
[dingtalk]
mode = "http"
app_key = "{APP_KEY}"
app_secret = "{APP_SECRET}"
callback_token = "{SECRETS["callback token"]}"
callback_aes_key = "{aes}"
[erp]
webhook_secret = "{webhook_secret}"
[dashboard]
token = "{SECRETS["dashboard token"]}"
password = "{SECRETS["dashboard password"]}"
""",
        encoding="utf-8",
    )
    code, outputs["check: secrets in the file"] = await run_cli(
        "check", "--config", str(in_file), env={}, cwd=folder
    )
    assert code == 1
    assert "secret in file" in outputs["check: secrets in the file"]
    code, outputs["run: secrets in the file"] = await run_cli(
        "run", "--config", str(in_file), env={}, cwd=folder
    )
    assert code == 2
    misplaced = {
        # Typos, wrong shapes, and configured secrets pasted into other keys as well (whose
        # refused values `check` quotes back): each refused by name, never echoed.
        "APPROVAL_BRIDGE__DASHBOARD__PASSWORD": SECRETS["dashboard password"],
        "APPROVAL_BRIDGE__DINGTALK__APP_SECRETT": APP_SECRET,
        "APPROVAL_BRIDGE__ERP__WEBHOOK_SECRET__KEY": webhook_secret,
        "APPROVAL_BRIDGE__DASHBOARD": json.dumps(
            {"tokn": SECRETS["dashboard token"], "password": 5}
        ),
        "APPROVAL_BRIDGE__DINGTALK__CALLBACK_AES_KEY": aes[:20],
        "APPROVAL_BRIDGE__DINGTALK__CALLBACK_TOKEN": SECRETS["callback token"],
        "APPROVAL_BRIDGE__DINGTALK__MODE": SECRETS["callback token"],
        "APPROVAL_BRIDGE__DATABASE__URL": f"postgresql+asyncpg://bridge:{db_password}@h:x/db",
        "APPROVAL_BRIDGE__HTTP__PORT": SECRETS["dashboard password"],
        "APPROVAL_BRIDGE__USERS": "{" + SECRETS["callback token"],
    }
    code, outputs["check: misplaced secrets"] = await run_cli("check", env=misplaced, cwd=folder)
    assert code == 1
    assert "APPROVAL_BRIDGE__HTTP__PORT: error" in outputs["check: misplaced secrets"]
    # A wrong app secret: refused by DingTalk at start-up, and neither secret is printed.
    wrong = {
        "APPROVAL_BRIDGE__ERP__WEBHOOK_SECRET": webhook_secret,
        "APPROVAL_BRIDGE__DINGTALK__APP_SECRET": APP_SECRET[::-1],
        "APPROVAL_BRIDGE__HTTP__PORT": str(free_port()),
        "APPROVAL_BRIDGE__LOG__LEVEL": "DEBUG",
    }
    config = str(stack.folder / "bridge.toml")
    code, out = await run_cli("run", "--config", config, env=wrong, cwd=folder)
    assert code == 2, out
    assert "DingTalk refused the app credentials" in out
    assert APP_SECRET[::-1] not in out
    outputs["run: wrong app secret"] = out
    for name, text in outputs.items():
        assert "Traceback" not in text, (name, text)
    return outputs
