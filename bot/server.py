"""The service's HTTP server: aiohttp's, with a connection limit and request-head/body deadlines.

aiohttp closes a connection whose head is incomplete only when `keepalive_timeout` runs out, and
it neither limits connections nor bounds how long a body may trickle in. `GuardedServer` adds:
past `http.max_connections` a connection is answered 503 and closed at once; a new connection
must deliver its first request head within `http.header_timeout_s` (later heads on a kept-alive
connection within `keepalive_timeout_s`, aiohttp's own rule); a body must be complete within
`http.body_timeout_s` of its head, else its reader fails with `BodyTimeout` (the error
middleware answers 408 and the connection is closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader

from bot.settings import HttpConfig

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 15.0
"""How long a stopping service lets in-flight requests finish."""
REFUSED_LINGER_S = 1.0
"""How long a connection refused past the limit may stay half-open for its 503 to be read."""
FD_HEADROOM = 256
"""File descriptors beside the connections: database, client sessions, logs, the stream."""
OVERLOADED = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: 23\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"\r\n"
    b'{"error": "overloaded"}'
)

_Task = asyncio.Task[None]
RequestHandlerFn = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
RequestFactory = Callable[
    [RawRequestMessage, StreamReader, web.RequestHandler, AbstractStreamWriter, _Task],
    web.BaseRequest,
]
CutObserver = Callable[[str], None]
"""Told why a connection was cut: `limit`, `header_timeout` or `body_timeout`."""


class BodyTimeout(TimeoutError):
    """The request body did not arrive within `http.body_timeout_s` of its head."""


class GuardedHandler(web.RequestHandler):
    """aiohttp's per-connection protocol, counted and held to the server's deadlines."""

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Refuse past the limit; otherwise serve, with the first head's deadline running."""
        guard = self._guard
        if guard.open >= guard.config.max_connections:
            self._refused = True
            guard.cut("limit")
            assert isinstance(transport, asyncio.Transport)
            transport.write(OVERLOADED)
            # Half-close and discard what the client sends until it closes too (aiohttp's
            # eof_received then closes ours), at most REFUSED_LINGER_S: closing with its
            # request unread would reset the connection, and the client might miss the 503.
            transport.write_eof()
            self._linger = asyncio.get_running_loop().call_later(REFUSED_LINGER_S, transport.close)
            return
        guard.open += 1
        super().connection_made(transport)
        loop = asyncio.get_running_loop()
        self._head_timer = loop.call_later(guard.config.header_timeout_s, self._head_late)

    def data_received(self, data: bytes) -> None:
        """Parse the request, unless the connection was refused (then the bytes are dropped)."""
        if not self._refused:
            super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        """Stop the timers and free the connection's place."""
        if self._refused:
            self._cancel_timers()
            return
        self._guard.open -= 1
        self._cancel_timers()
        super().connection_lost(exc)

    def head_received(self, payload: StreamReader) -> None:
        """A request head is complete: its body now has `body_timeout_s` to arrive."""
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        if not payload.is_eof():
            loop = asyncio.get_running_loop()
            timer = loop.call_later(self._guard.config.body_timeout_s, self._body_late, payload)
            self._body_timer = timer
            payload.on_eof(timer.cancel)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A request aiohttp could not parse is answered JSON 400 and logged quietly.

        aiohttp logs each one as an error with a traceback, so any client could fill the log,
        and echoes the offending bytes in a text answer. Server errors keep aiohttp's handling.
        """
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        log.debug("http: unreadable request from %s: %s", self.peername, " ".join(str(exc).split()))
        response = web.json_response({"error": "bad_request"}, status=status)
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """As aiohttp's, but a body that cannot be decoded is the client's fault, logged quietly.

        aiohttp raises the decoding error again while it drains the body after the answer
        (which the error middleware already gave), and logs that as an unhandled exception.
        """
        exc = kwargs.get("exc_info")
        if isinstance(exc, web.RequestPayloadError):
            reason = " ".join(str(exc.__cause__ or exc).split())
            log.debug("http: undecodable body from %s: %s", self.peername, reason)
            return
        super().log_exception(*args, **kwargs)

    def _head_late(self) -> None:
        self._head_timer = None
        log.debug("http: closing %s: no complete request head in time", self.peername)
        self._guard.cut("header_timeout")
        self.force_close()

    def _body_late(self, payload: StreamReader) -> None:
        self._body_timer = None
        log.debug("http: request body from %s not complete in time", self.peername)
        self._guard.cut("body_timeout")
        # The handler reading the body gets the error (and answers 408); aiohttp then
        # closes the connection, as the body was never finished.
        payload.set_exception(BodyTimeout("request body not received in time"))

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer, self._linger):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = self._linger = None


class GuardedServer(web.Server):
    """`web.Server` whose connections are `GuardedHandler`s."""

    def __init__(
        self,
        handler: RequestHandlerFn,
        *,
        config: HttpConfig,
        request_factory: RequestFactory,
        handler_cancellation: bool = False,
        observer: CutObserver | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            handler,
            request_factory=self._request,
            handler_cancellation=handler_cancellation,
            **kwargs,
        )
        self.config = config
        self.open = 0
        """Connections being served now."""
        self.cuts: dict[str, int] = {}
        """Connections cut, by reason."""
        self._build_request = request_factory
        self._observer = observer
        self._handler_kwargs = kwargs

    def __call__(self) -> GuardedHandler:
        """The protocol factory `loop.create_server` calls for each connection."""
        return GuardedHandler(self, loop=asyncio.get_running_loop(), **self._handler_kwargs)

    def cut(self, reason: str) -> None:
        """Count a connection cut (and tell the observer)."""
        self.cuts[reason] = self.cuts.get(reason, 0) + 1
        if self._observer is not None:
            try:
                self._observer(reason)
            except Exception:
                log.exception("http: the cut observer failed")

    def _request(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: web.RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        # aiohttp builds the request as soon as a head is parsed: the seam for the deadlines.
        if isinstance(protocol, GuardedHandler):
            protocol.head_received(payload)
        return self._build_request(message, payload, protocol, writer, task)


class GuardedRunner(web.AppRunner):
    """`web.AppRunner` serving through a `GuardedServer`."""

    def __init__(
        self,
        app: web.Application,
        config: HttpConfig,
        observer: CutObserver | None = None,
        **kwargs: Any,
    ) -> None:
        handler_kwargs = {"keepalive_timeout": config.keepalive_timeout_s, **kwargs}
        super().__init__(app, shutdown_timeout=SHUTDOWN_TIMEOUT_S, **handler_kwargs)
        self._config = config
        self._observer = observer
        self._handler_kwargs = handler_kwargs

    @property
    def guarded(self) -> GuardedServer:
        """The running server (after `setup`)."""
        assert isinstance(self.server, GuardedServer)
        return self.server

    async def _make_server(self) -> web.Server:
        # The app's own server runs its start-up; ours takes over its handler and request factory.
        plain = await super()._make_server()
        return GuardedServer(
            plain.request_handler,
            config=self._config,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            observer=self._observer,
            **self._handler_kwargs,
        )


async def serve(
    app: web.Application,
    config: HttpConfig,
    announce: Callable[[str], None],
    observer: CutObserver | None = None,
) -> None:
    """Serve `app` until SIGTERM or SIGINT, then finish in-flight requests and clean up."""
    room_for(config.max_connections)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = GuardedRunner(app, config, observer, access_log=None)
    try:
        await runner.setup()
        # A listen backlog to match: a burst of connects past a short one waits a second for
        # the client's SYN to be sent again.
        backlog = max(128, min(config.max_connections, 4096))
        site = web.TCPSite(runner, config.host, config.port, backlog=backlog)
        await site.start()
        announce(f"listening on {site.name}")
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await runner.cleanup()


def room_for(connections: int) -> None:
    """Raise the open-file limit for `connections` plus headroom, as far as the system allows.

    A limit below that makes `accept` fail with EMFILE before `max_connections` is reached, and
    asyncio then stops accepting anything for a while, health checks included.
    """
    needed = connections + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft < needed:
        log.warning(
            "http: the open-file limit (%d) is below http.max_connections + %d; raise it "
            "(ulimit -n, LimitNOFILE=) or lower http.max_connections",
            soft,
            FD_HEADROOM,
        )
