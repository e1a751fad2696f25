"""The service's HTTP server (`bot.server`): connection limit, head and body deadlines, and
hostile requests answered in JSON without an error in the log."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import resource
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import ValidationError
from sqlalchemy import func, select

from approvals.db.tables import erp_event
from approvals.memory import MemoryGateway, MemoryNotifier
from bot import server
from bot.app import Ports, create_app
from bot.keys import DATABASE
from bot.server import GuardedRunner
from bot.settings import HttpConfig
from bot.web import errors
from tests import dbutil
from tests.harness import bridge_settings, event, signed, stock

FAST = HttpConfig(
    port=0, max_connections=8, header_timeout_s=0.5, body_timeout_s=0.8, keepalive_timeout_s=1
)


class Served:
    """An app behind a `GuardedRunner` on a loopback port."""

    def __init__(self, runner: GuardedRunner, port: int) -> None:
        self.runner = runner
        self.port = port

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def ask(self, raw: bytes, wait_s: float = 5) -> tuple[int, bytes, float]:
        """Send raw bytes; (status, body, seconds until the server closed)."""
        started = time.monotonic()
        reader, writer = await self.connect()
        writer.write(raw)
        try:
            answer = await asyncio.wait_for(reader.read(), wait_s)
        finally:
            writer.close()
        return status_of(answer), answer.partition(b"\r\n\r\n")[2], time.monotonic() - started


def status_of(answer: bytes) -> int:
    """The status of a raw HTTP answer; 0 for none (the connection was just closed)."""
    return int(answer.split(b" ", 2)[1]) if answer else 0


async def read_all(request: web.Request) -> web.Response:
    chunks = [chunk async for chunk in request.content.iter_any()]
    return web.json_response({"size": sum(map(len, chunks))})


@asynccontextmanager
async def guarded(app: web.Application, config: HttpConfig = FAST) -> AsyncIterator[Served]:
    cuts: list[str] = []
    runner = GuardedRunner(app, config, cuts.append, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    guard = runner.guarded
    try:
        yield Served(runner, site.port)
    finally:
        await runner.cleanup()
    assert sum(guard.cuts.values()) == len(cuts)  # the observer heard every cut


def echo_app() -> web.Application:
    app = web.Application(middlewares=[errors])
    app.router.add_post("/", read_all)
    app.router.add_get("/", read_all)
    return app


POST = b"POST / HTTP/1.1\r\nHost: x\r\n"
GET = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def bridge_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_connections_past_the_limit_are_answered_503_and_closed_at_once() -> None:
    async with guarded(echo_app()) as served:
        held = [await served.connect() for _ in range(FAST.max_connections)]
        await asyncio.sleep(0.05)
        status, body, took = await served.ask(GET)
        assert (status, json.loads(body)) == (503, {"error": "overloaded"})
        assert took < 0.3
        for _, writer in held:
            writer.close()
        await asyncio.sleep(0.05)
        assert (await served.ask(GET))[0] == 200
        assert served.runner.guarded.cuts == {"limit": 1}
        assert served.runner.guarded.open == 0


async def test_a_head_that_never_completes_is_cut_while_others_are_served() -> None:
    async with guarded(echo_app()) as served:
        reader, writer = await served.connect()
        started = time.monotonic()
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")

        async def trickle() -> None:
            for _ in range(100):
                writer.write(b"X: y\r\n")
                await asyncio.sleep(0.05)

        dripping = asyncio.create_task(trickle())
        try:
            assert (await served.ask(GET))[0] == 200  # served meanwhile
            assert await asyncio.wait_for(reader.read(), 3) == b""
        finally:
            dripping.cancel()
            writer.close()
        assert FAST.header_timeout_s <= time.monotonic() - started < FAST.header_timeout_s + 0.5
        assert served.runner.guarded.cuts == {"header_timeout": 1}


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_that_trickles_is_answered_408_and_closed(chunked: bool) -> None:
    framing = (
        b"Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n"
        if chunked
        else b"Content-Length: 99\r\n\r\nab"
    )
    async with guarded(echo_app()) as served:
        reader, writer = await served.connect()
        started = time.monotonic()
        writer.write(POST + framing)

        async def trickle() -> None:
            for _ in range(100):
                await asyncio.sleep(0.1)
                writer.write(b"1\r\nx\r\n" if chunked else b"x")

        dripping = asyncio.create_task(trickle())
        try:
            answer = await asyncio.wait_for(reader.read(), 3)
        finally:
            dripping.cancel()
            writer.close()
        assert status_of(answer) == 408
        assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {"error": "request_timeout"}
        assert time.monotonic() - started < FAST.body_timeout_s + 0.5
        assert served.runner.guarded.cuts == {"body_timeout": 1}


async def test_an_idle_kept_alive_connection_is_closed() -> None:
    async with guarded(echo_app()) as served:
        reader, writer = await served.connect()
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"}")
        idle = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 3) == b""
        assert time.monotonic() - idle < FAST.keepalive_timeout_s + 0.5
        writer.close()


@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n",
        POST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        POST + b"Transfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc",
        POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # a TLS hello
    ],
)
async def test_unreadable_requests_get_a_json_400_and_no_error_in_the_log(
    raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with guarded(echo_app()) as served:
        status, body, _ = await served.ask(raw)
        assert status == 400
        assert json.loads(body)["error"] in ("bad_request", "invalid_payload")
        assert (await served.ask(GET))[0] == 200
    assert bridge_errors(caplog) == []


@pytest.mark.parametrize("encoding", [b"gzip", b"deflate"])
async def test_a_body_that_cannot_be_inflated_is_a_400_not_a_500(
    encoding: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with guarded(echo_app()) as served:
        raw = POST + b"Content-Encoding: " + encoding + b"\r\nContent-Length: 9\r\n\r\nnot gzip!"
        status, body, _ = await served.ask(raw)
    assert status == 400
    assert json.loads(body)["error"] == "invalid_payload"
    assert bridge_errors(caplog) == []


async def test_a_client_hanging_up_mid_body_is_no_error(caplog: pytest.LogCaptureFixture) -> None:
    async with guarded(echo_app()) as served:
        _, writer = await served.connect()
        writer.write(POST + b"Content-Length: 100\r\n\r\nabc")
        await asyncio.sleep(0.1)
        writer.close()
        await asyncio.sleep(0.2)
        assert (await served.ask(GET))[0] == 200
    assert bridge_errors(caplog) == []


async def test_the_webhook_refuses_slow_oversized_and_undecodable_bodies(
    sqlite_template: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = dbutil.copy_sqlite(sqlite_template, tmp_path / "bridge.db")
    app = create_app(bridge_settings(url), Ports(MemoryGateway(), MemoryNotifier()))
    async with guarded(app) as served:
        head = b"POST /erp/events HTTP/1.1\r\nHost: x\r\n"  # signed() adds Content-Type
        good = json.dumps(event("srv-1", "stock.below_safety", stock())).encode()
        sign = b"".join(f"{k}: {v}\r\n".encode() for k, v in signed(good).items())
        # Slow: the signed body arrives, but not all of it in time.
        status, body, _ = await served.ask(
            head + sign + b"Content-Length: %d\r\n\r\n" % len(good) + good[:-1]
        )
        assert (status, json.loads(body)) == (408, {"error": "request_timeout"})
        # Over 1 MiB, announced or chunked, or only once inflated.
        big = b"Content-Length: %d\r\n\r\n" % (2 << 20)
        assert (await served.ask(head + sign + big))[0] == 413
        chunk = b"%x\r\n%s\r\n" % (1 << 16, b" " * (1 << 16))
        chunked = head + sign + b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 17
        assert (await served.ask(chunked))[0] == 413
        bomb = gzip.compress(b" " * (4 << 20))
        inflated = head + sign + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb)
        assert (await served.ask(inflated + bomb))[0] == 413
        garbled = head + sign + b"Content-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope"
        status, body, _ = await served.ask(garbled)
        assert (status, json.loads(body)["error"]) == (400, "invalid_payload")
        # Nothing of it was stored; the same event whole is taken.
        async with app[DATABASE].read() as conn:
            assert (await conn.execute(select(func.count()).select_from(erp_event))).scalar() == 0
        whole = head + sign + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(good)
        assert (await served.ask(whole + good))[0] == 202
    assert bridge_errors(caplog) == []


def test_http_limits_are_validated() -> None:
    defaults = HttpConfig()
    assert (defaults.max_connections, defaults.header_timeout_s) == (1000, 10.0)
    assert (defaults.body_timeout_s, defaults.keepalive_timeout_s) == (30.0, 15.0)
    for bad in (
        {"max_connections": 0},
        {"header_timeout_s": 0},
        {"body_timeout_s": -1},
        {"keepalive_timeout_s": 0},
    ):
        with pytest.raises(ValidationError):
            HttpConfig.model_validate(bad)


def test_the_open_file_limit_is_raised_to_fit_the_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limits = {"now": (1024, 4096)}
    monkeypatch.setattr(resource, "getrlimit", lambda _: limits["now"])
    monkeypatch.setattr(resource, "setrlimit", lambda _, value: limits.update(now=value))
    server.room_for(1000)
    assert limits["now"] == (1000 + server.FD_HEADROOM, 4096)
    server.room_for(10_000)  # as far as the hard limit allows
    assert limits["now"] == (4096, 4096)
