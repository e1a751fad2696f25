"""The stream gateway (spec §5): tickets, the websocket, pushes with ACKs, pings, disconnects."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import random
import secrets
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from bot.sandbox.connection import Connection, GatewayStats, Ticket, Topic, ack_ok, subscriptions
from bot.sandbox.crypto import dumps
from bot.sandbox.errors import ApiError, invalid
from bot.sandbox.options import Clock, SandboxOptions
from bot.sandbox.records import EventRecord, camel, ms

log = logging.getLogger(__name__)


class Gateway:
    """Connections per app; each push goes to one eligible connection chosen at random."""

    def __init__(
        self,
        options: SandboxOptions,
        clock: Clock,
        rng: random.Random,
        credentials_ok: Callable[[object, object], bool],
    ) -> None:
        self._options = options
        self._clock = clock
        self._rng = rng
        self._credentials_ok = credentials_ok
        self.stats = GatewayStats()
        self.connections: dict[str, Connection] = {}
        self._tickets: dict[str, Ticket] = {}
        self._acks: dict[str, tuple[asyncio.Future[dict[str, Any] | None], Connection]] = {}
        self._pushing = asyncio.Event()
        """Set whenever an event push starts waiting for its ACK."""
        self._pings: dict[str, Connection] = {}
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._seq = itertools.count(1)

    def open(self, body: Any, host: str) -> dict[str, str]:
        """`POST /v1.0/gateway/connections/open`: check the app, hand out a ticket."""
        if not isinstance(body, dict):
            raise invalid("body is mandatory for this action")
        if not self._credentials_ok(body.get("clientId"), body.get("clientSecret")):
            self.stats.auth_failures += 1
            raise ApiError("authFailed", "鉴权失败", 401)
        topics = subscriptions(body.get("subscriptions"))
        now = self._clock()
        self._tickets = {k: t for k, t in self._tickets.items() if t.expires_at > now}
        # Real tickets are UUIDs; ours also carry + / = to exercise the client's quote_plus.
        value = base64.b64encode(uuid.uuid4().bytes + secrets.token_bytes(2)).decode()
        self._tickets[value] = Ticket(str(body["clientId"]), topics, now + self._options.ticket_ttl)
        self.stats.tickets_issued += 1
        return {"endpoint": f"ws://{host}/connect", "ticket": value}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """`GET /connect?ticket=`: the websocket, from the ticket's single use to the close."""
        ticket = self._take(request.query.get("ticket", ""))
        if ticket is None:
            self.stats.tickets_refused += 1
            return web.json_response(
                {"code": "invalidTicket", "message": "ticket 无效或已过期", "requestid": ""},
                status=401,
            )
        ws = web.WebSocketResponse(timeout=2.0, max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        conn = Connection(uuid.uuid4().hex, ticket.client_id, ticket.topics, ws, self._clock())
        conn.transport = request.transport
        self.connections[conn.conn_id] = conn
        self.stats.connections_opened += 1
        self._changed.set()
        pinger = asyncio.create_task(self._ping(conn), name=f"ping {conn.conn_id}")
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_frame(conn, msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            pinger.cancel()
            await asyncio.gather(pinger, return_exceptions=True)
            self._forget(conn)
        return ws

    async def attempt(self, record: EventRecord) -> bool:
        """Push an event to one connection and wait for its ACK (False: redeliver later)."""
        conn = await self._pick(("EVENT", "*"))
        headers = {
            "topic": "*",
            "eventType": record.event_type,
            "eventId": record.event_id,
            "eventCorpId": self._options.corp_id,
            "eventBornTime": str(record.born),
            "eventUnifiedAppId": self._options.unified_app_id,
        }
        mid = self._message_id()
        future: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._acks[mid] = (future, conn)
        self._pushing.set()
        try:
            if not await self._send(conn, "EVENT", mid, headers, dumps(record.data)):
                return False
            async with asyncio.timeout(self._options.ack_timeout):
                ack = await future
        except TimeoutError:
            self.stats.ack_timeouts += 1
            return False
        finally:
            self._acks.pop(mid, None)
        if ack is None:
            return False  # the connection went away before acknowledging
        ok = ack_ok(ack)
        if ok:
            self.stats.acks_ok += 1
        else:
            self.stats.acks_failed += 1
        return ok

    async def callback(
        self, topic: str, build: Callable[[Connection], dict[str, Any]]
    ) -> str | None:
        """Push a CALLBACK (robot message) built for one subscribed connection; fire and forget."""
        # The data depends on the connection chosen: a robot message's robotCode is its client id.
        candidates = self._eligible(("CALLBACK", topic))
        if not candidates:
            return None
        conn = self._rng.choice(candidates)
        mid = self._message_id()
        sent = await self._send(conn, "CALLBACK", mid, {"topic": topic}, dumps(build(conn)))
        return conn.conn_id if sent else None

    def disconnect(self, conn: Connection, reason: str = "connection is expired") -> bool:
        """Send `disconnect`, stop pushing there, close after the delay (unless the client does)."""
        if conn.draining or conn.ws.closed:
            return False
        conn.draining = True
        self.stats.disconnects += 1
        self._changed.set()
        self._spawn(self._drain(conn, reason), f"drain {conn.conn_id}")
        return True

    def disconnect_all(self, reason: str = "connection is expired") -> int:
        """Disconnect every connection; how many were told."""
        return sum(self.disconnect(c, reason) for c in list(self.connections.values()))

    def drop(self, conn: Connection) -> bool:
        """Cut a connection as a network failure would: no `disconnect`, no close frame."""
        transport = conn.transport
        if conn.ws.closed or transport is None or transport.is_closing():
            return False
        self.stats.drops += 1
        conn.draining = True
        self._changed.set()
        # abort(): the socket goes at once, unsent data is discarded, the peer sees a reset.
        if isinstance(transport, asyncio.WriteTransport):
            transport.abort()
        else:
            transport.close()
        return True

    def drop_all(self) -> int:
        """Cut every connection; how many were cut."""
        return sum(self.drop(c) for c in list(self.connections.values()))

    async def drop_in_flight(self, wait_s: float) -> int:
        """Cut every connection as soon as an event push awaits its ACK (within `wait_s`), the
        moment a cut loses the most; at the end of the wait if none comes."""
        self._pushing.clear()
        if not self._acks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._pushing.wait()
        return self.drop_all()

    def to_json(self) -> dict[str, Any]:
        """Counters and open connections."""
        return {
            **camel(asdict(self.stats)),
            "open": len(self.connections),
            "connections": [c.to_json() for c in self.connections.values()],
        }

    async def close(self) -> None:
        """Close every connection and stop the background tasks."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        closing = [
            c.ws.close(code=WSCloseCode.GOING_AWAY, message=b"sandbox stopping")
            for c in list(self.connections.values())
        ]
        await asyncio.gather(*closing, return_exceptions=True)

    def _take(self, value: str) -> Ticket | None:
        """Use up a ticket; a client that did not quote_plus it sent spaces for its pluses."""
        ticket = self._tickets.pop(value, None) or self._tickets.pop(value.replace(" ", "+"), None)
        if ticket is None or ticket.expires_at <= self._clock():
            return None
        return ticket

    def _eligible(self, topic: Topic) -> list[Connection]:
        return [
            c
            for c in self.connections.values()
            if topic in c.topics and not c.draining and not c.ws.closed
        ]

    async def _pick(self, topic: Topic) -> Connection:
        """A random eligible connection, waiting for one to open if need be."""
        while not (candidates := self._eligible(topic)):
            self._changed.clear()
            await self._changed.wait()
        return self._rng.choice(candidates)

    async def _send(
        self, conn: Connection, type_: str, mid: str, extra: dict[str, str], data: str
    ) -> bool:
        headers = {
            "appId": self._options.unified_app_id,
            "connectionId": conn.conn_id,
            "contentType": "application/json",
            "messageId": mid,
            "time": str(ms(self._clock())),
            **extra,
        }
        frame = {"specVersion": "1.0", "type": type_, "headers": headers, "data": data}
        try:
            await conn.ws.send_str(dumps(frame))
        except (ConnectionError, RuntimeError) as exc:
            log.info("sandbox: push to %s failed: %s", conn.conn_id, exc)
            return False
        if type_ != "SYSTEM":
            self.stats.pushes += 1
        return True

    def _on_frame(self, conn: Connection, raw: str) -> None:
        """A client frame: an ACK for a push or a ping; anything else is ignored."""
        try:
            frame = json.loads(raw)
        except ValueError:
            log.info("sandbox: non-JSON frame from %s ignored", conn.conn_id)
            return
        headers = frame.get("headers") if isinstance(frame, dict) else None
        mid = headers.get("messageId") if isinstance(headers, dict) else None
        if not isinstance(mid, str):
            return
        if self._pings.pop(mid, None) is not None:
            conn.pongs += 1
            return
        future = self._acks[mid][0] if mid in self._acks else None
        if future is None or future.done():
            self.stats.unmatched_acks += 1  # a CALLBACK's ACK, or one that came too late
            return
        future.set_result(frame)

    async def _ping(self, conn: Connection) -> None:
        """SYSTEM `ping` frames with an `opaque` the client echoes back."""
        while not conn.ws.closed:
            await asyncio.sleep(self._options.ping_interval)
            mid = self._message_id()
            self._pings[mid] = conn
            self.stats.pings += 1
            await self._send(conn, "SYSTEM", mid, {"topic": "ping"}, dumps({"opaque": mid}))

    async def _drain(self, conn: Connection, reason: str) -> None:
        data = dumps({"reason": reason})
        await self._send(conn, "SYSTEM", self._message_id(), {"topic": "disconnect"}, data)
        # DingTalk stays silent for a while, then closes: never a tight close loop (§5.5).
        try:
            async with asyncio.timeout(self._options.disconnect_close_delay):
                await conn.closed.wait()
        except TimeoutError:
            await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"disconnect")

    def _forget(self, conn: Connection) -> None:
        self.connections.pop(conn.conn_id, None)
        self.stats.connections_closed += 1
        conn.closed.set()
        for mid in [m for m, c in self._pings.items() if c is conn]:
            del self._pings[mid]
        # Pushes waiting on this connection's ACK fail now and are redelivered elsewhere.
        for future, target in self._acks.values():
            if target is conn and not future.done():
                future.set_result(None)
        self._changed.set()

    def _message_id(self) -> str:
        return (
            f"{secrets.token_hex(4)}_{next(self._seq)}_{ms(self._clock()):x}_{secrets.token_hex(2)}"
        )

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
