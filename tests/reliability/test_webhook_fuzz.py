"""Property test: whatever reaches `POST /erp/events`, the answer is a JSON 2xx or 4xx, never a 5xx.

The bridge runs on its own event loop in a background thread, behind the service's own HTTP
server (`bot.server`); hypothesis drives it from a plain synchronous test over raw HTTP/1.1
sockets, so that any byte can be put in a header, and bodies may come chunked or gzipped.
Examples per database: 200, or 10,000 in the long mode (APPROVAL_BRIDGE_RELIABILITY=long);
APPROVAL_BRIDGE_FUZZ_EXAMPLES overrides both.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gzip
import hashlib
import hmac
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from approvals.db.tables import erp_event, metadata
from approvals.memory import MemoryGateway, MemoryNotifier
from bot.app import Ports, create_app
from bot.server import GuardedRunner
from bot.settings import HttpConfig, Settings
from tests import dbutil
from tests.harness import SECRET, Bridge, bridge_settings, event, order, stock
from tests.reliability.conftest import Figures, size

EXAMPLES = int(os.environ.get("APPROVAL_BRIDGE_FUZZ_EXAMPLES") or size(200, 10_000))
T = TypeVar("T")
HTTP = HttpConfig(port=0, header_timeout_s=5, body_timeout_s=5)
"""The service's server with short deadlines: no example may need them."""


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Bridge]:
    """The bridge behind the service's own guarded server, on a free loopback port."""
    gateway, notifier = MemoryGateway(), MemoryNotifier()
    app = create_app(settings, Ports(gateway, notifier))
    runner = GuardedRunner(app, HTTP, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Bridge(f"http://127.0.0.1:{site.port}", app, http, gateway, notifier)
    finally:
        await runner.cleanup()


# --- the bridge on a loop of its own --------------------------------------------------------


class Served:
    """A bridge serving from a background thread's event loop until `close()`."""

    def __init__(self, url: str, truncate: bool, database: str) -> None:
        self.database = database
        self._url = url
        self._truncate = truncate
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.bridge: Bridge | None = None
        self._thread = threading.Thread(target=self._main, name="fuzzed-bridge", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the bridge did not start within 30 s")
        if self._error is not None:
            raise RuntimeError("the bridge did not start") from self._error

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # handed to the test thread, never left unhandled
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serving(bridge_settings(self._url)) as bridge:
            if self._truncate:
                names = ", ".join(t.name for t in metadata.sorted_tables)
                async with bridge.db.engine.begin() as conn:
                    await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            self.bridge = bridge
            self._ready.set()
            await self._stop.wait()

    @property
    def port(self) -> int:
        assert self.bridge is not None
        return int(self.bridge.url.rsplit(":", 1)[1])

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine on the bridge's loop and wait for its result."""
        assert self._loop is not None
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def close(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the bridge did not stop within 30 s"
        if self._error is not None:
            raise self._error


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def served(
    request: pytest.FixtureRequest,
    sqlite_template: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """One bridge per database for the whole fuzz run."""
    if request.param == "sqlite":
        url = dbutil.copy_sqlite(sqlite_template, tmp_path_factory.mktemp("fuzz") / "bridge.db")
        bridge = Served(url, truncate=False, database="sqlite")
    else:
        bridge = Served(request.getfixturevalue("postgres_url"), truncate=True, database="postgres")
    try:
        yield bridge
    finally:
        bridge.close()


# --- raw HTTP/1.1 ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    head: bytes
    body: bytes


def exchange(
    port: int,
    method: bytes,
    path: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    chunks: list[int] | None = None,
) -> Answer:
    """One request on a fresh connection; the whole answer, read until the server closes.

    With `chunks` (chunk sizes), the body is sent chunked in pieces of those sizes.
    """
    lines = [method + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    if chunks is None:
        lines.append(b"Content-Length: %d" % len(body))
        framed = body
    else:
        lines.append(b"Transfer-Encoding: chunked")
        framed, rest = b"", body
        for n in [*chunks, len(body)]:
            piece, rest = rest[:n], rest[n:]
            if piece:
                framed += b"%x\r\n%s\r\n" % (len(piece), piece)
        framed += b"0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + framed)
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
    head, _, payload = bytes(received).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return Answer(status, head, payload)


def signature(body: bytes, stamp: bytes, secret: str = SECRET) -> bytes:
    mac = hmac.new(secret.encode(), stamp + b"." + body, hashlib.sha256).hexdigest()
    return b"v1=" + mac.encode()


# --- strategies ------------------------------------------------------------------------------

# Header values as HTTP allows them: visible ASCII, space, tab and obs-text (0x80-0xFF).
header_value = st.binary(max_size=80).map(
    lambda raw: bytes(b for b in raw if b == 9 or 32 <= b <= 126 or b >= 128).strip(b" \t")
)
json_scalar = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=30)
)
json_value = st.recursive(
    json_scalar,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
decimal_text = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(
        ["0", "12.00", "-1", "1e400", "1e999999999999999999", "1e-7", " 5 ", "", "1_0"]
    ),
)
datetime_text = st.one_of(
    st.datetimes(timezones=st.timezones() | st.none()).map(lambda d: d.isoformat()),
    st.sampled_from(
        ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2026-11-25", "now"]
    ),
)
event_ids = st.one_of(
    st.sampled_from(["fz-1", "fz-2", "fz-3"]), st.uuids().map(str), st.text(max_size=210)
)


@st.composite
def valid_event(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed event of any type, on a few shared documents so revisions interact."""
    doc_no = draw(st.sampled_from(["FZ-1", "FZ-2", "FZ-3"]))
    revision = draw(st.integers(0, 3))
    kind = draw(
        st.sampled_from(
            [
                "purchase_order.submitted",
                "purchase_order.changed",
                "purchase_order.cancelled",
                "stock.below_safety",
            ]
        )
    )
    data: dict[str, Any]
    if kind == "purchase_order.cancelled":
        data = {"doc_no": doc_no, "revision": revision, "reason": draw(st.text(max_size=20))}
    elif kind == "stock.below_safety":
        data = stock(draw(st.sampled_from(["M-1", "M-2"])), draw(st.sampled_from(["WH1", "WH2"])))
    else:
        data = order(doc_no, revision, price=draw(st.sampled_from(["12.00", "0.5", "13"])))
    return event(draw(event_ids), kind, data)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


@st.composite
def mutated_event(draw: st.DrawFn) -> Any:
    """A valid event with a few values replaced, removed or added."""
    body: Any = draw(valid_event())
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(body))))
        replacement = draw(st.one_of(json_value, decimal_text, datetime_text, st.text(max_size=5)))
        if not path:
            body = replacement
            continue
        parent: Any = body
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = replacement
        else:
            parent[path[-1]] = replacement
    return body


bodies = st.one_of(
    st.binary(max_size=600),
    json_value.map(lambda v: json.dumps(v).encode()),
    valid_event().map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
    mutated_event().map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
    mutated_event().map(lambda v: json.dumps(v).encode()),
)


@dataclass(frozen=True)
class Auth:
    """How a fuzzed request is authenticated: properly, stale, or with arbitrary header values."""

    mode: str
    stamp: bytes | None
    sig: bytes | None

    def headers(self, body: bytes) -> list[tuple[bytes, bytes]]:
        if self.mode == "valid":
            stamp = str(int(time.time())).encode()
            return [(b"X-Bridge-Timestamp", stamp), (b"X-Bridge-Signature", signature(body, stamp))]
        if self.mode == "stale":
            stamp = str(int(time.time()) - 400).encode()
            return [(b"X-Bridge-Timestamp", stamp), (b"X-Bridge-Signature", signature(body, stamp))]
        found = []
        if self.stamp is not None:
            found.append((b"X-Bridge-Timestamp", self.stamp))
        if self.sig is not None:
            found.append((b"X-Bridge-Signature", self.sig))
        return found


auths = st.builds(
    Auth,
    mode=st.sampled_from(["valid", "valid", "valid", "stale", "arbitrary"]),
    stamp=st.none() | header_value | st.integers(-(2**65), 2**65).map(lambda n: str(n).encode()),
    sig=st.none() | header_value | st.binary(max_size=32).map(lambda b: b"v1=" + b.hex().encode()),
)
# Headers besides the authentication: some that change how the body is read, and any others.
# (`Expect` is left out: aiohttp answers an unknown expectation itself, in plain text.)
TOKEN = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
extra_headers = st.lists(
    st.one_of(
        st.tuples(
            st.just(b"Content-Encoding"),
            st.sampled_from([b"gzip", b"deflate", b"br", b"zstd", b"identity", b"x-unknown"]),
        ),
        st.tuples(st.just(b"Transfer-Encoding"), st.sampled_from([b"gzip", b"identity", b"x"])),
        st.tuples(
            st.sampled_from([b"Connection", b"Upgrade"]),
            st.sampled_from([b"keep-alive", b"upgrade", b"websocket", b"h2c"]),
        ),
        st.tuples(
            st.sampled_from(
                [b"Host", b"X-Bridge-Timestamp", b"X-Bridge-Signature", b"Content-Type"]
            ),
            header_value,
        ),
        st.tuples(st.text(TOKEN, min_size=1, max_size=20).map(str.encode), header_value),
    ),
    max_size=3,
)
framings = st.none() | st.lists(st.integers(1, 64), max_size=8)
"""Content-Length (None), or chunked in pieces of these sizes."""
content_types = st.one_of(
    st.just(b"application/json"),
    st.just(b"application/json; charset=utf-8"),
    st.none(),
    header_value,
)


# --- the property ----------------------------------------------------------------------------


async def _stored(bridge: Bridge) -> set[str]:
    """Approval ids that stored events led to."""
    async with bridge.db.read() as conn:
        return set((await conn.execute(select(erp_event.c.approval_id))).scalars())


def test_every_input_gets_a_json_2xx_or_4xx(
    served: Served, figures: Figures, caplog: pytest.LogCaptureFixture
) -> None:
    taken: set[str] = set()
    statuses: Counter[int] = Counter()
    started = time.monotonic()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        body=bodies,
        auth=auths,
        content_type=content_types,
        extra=extra_headers,
        chunks=framings,
        gzipped=st.booleans(),
    )
    def deliver(
        body: bytes,
        auth: Auth,
        content_type: bytes | None,
        extra: list[tuple[bytes, bytes]],
        chunks: list[int] | None,
        gzipped: bool,
    ) -> None:
        headers = auth.headers(body)
        if content_type is not None:
            headers.append((b"Content-Type", content_type))
        headers += extra
        if gzipped:  # signed as sent by the ERP before compression: the bridge reads it inflated
            headers.append((b"Content-Encoding", b"gzip"))
            body = gzip.compress(body)

        answer = exchange(served.port, b"POST", b"/erp/events", headers, body, chunks)
        statuses[answer.status] += 1

        assert 200 <= answer.status < 500, (answer.status, answer.head, answer.body)
        assert b"application/json" in answer.head.lower(), answer.head
        reply = json.loads(answer.body)
        assert isinstance(reply, dict), reply
        if answer.status < 300:
            assert answer.status in (200, 202), answer
            assert reply["status"] in ("accepted", "duplicate"), reply
            assert isinstance(reply["approval_id"], str), reply
            if answer.status == 202:
                taken.add(reply["approval_id"])
        else:
            assert isinstance(reply.get("error"), str), reply

    deliver()

    health = exchange(served.port, b"GET", b"/healthz", [], b"")
    assert health.status == 200, health
    assert json.loads(health.body) == {"status": "ok"}
    assert served.bridge is not None
    # Every event answered 202 was stored (ids are compared through the approval they led to,
    # as the bridge trims whitespace around an event id).
    assert taken <= served.call(_stored(served.bridge))
    # And a plain, valid event is still taken after all that.
    good = json.dumps(
        event(f"fz-final-{uuid.uuid4()}", "stock.below_safety", stock("M-FINAL"))
    ).encode()
    stamp = str(int(time.time())).encode()
    headers = [
        (b"X-Bridge-Timestamp", stamp),
        (b"X-Bridge-Signature", signature(good, stamp)),
        (b"Content-Type", b"application/json"),
    ]
    final = exchange(served.port, b"POST", b"/erp/events", headers, good)
    assert final.status == 202, final
    # Nothing the fuzzer sent was an error of the bridge's own.
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    figures.record(
        "webhook_fuzz",
        database=served.database,
        examples=EXAMPLES,
        tried=statuses.total(),
        statuses={str(code): n for code, n in sorted(statuses.items())},
        accepted=len(taken),
        seconds=round(time.monotonic() - started, 1),
    )
