"""The DingTalk stream connection: our own open call and loop, the SDK's frames, acks on commit."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote_plus

import aiohttp
import websockets.exceptions  # imported eagerly: websockets >= 14 loads it lazily (§5.8)
from dingtalk_stream import AckMessage, CallbackMessage, EventMessage, SystemMessage
from websockets.asyncio.client import ClientConnection, connect

from approvals import failpoints
from bot.events import ROBOT_TOPIC, ChatHandler, EventError, EventSink, from_stream, relay_chat
from bot.settings import DingTalkConfig

log = logging.getLogger(__name__)

OPEN_PATH = "/v1.0/gateway/connections/open"
_FRAME_ERRORS = (ValueError, TypeError, AttributeError, KeyError)
"""What the SDK's `from_dict` raises on a malformed frame (e.g. `int()` on a header, §5.3)."""


class StreamAuthError(RuntimeError):
    """DingTalk refused the app key and secret (401 `authFailed`, §5.1): fatal at startup."""


class GatewayError(RuntimeError):
    """The gateway did not hand out a connection (5xx, garbage); retried with backoff."""


@dataclass(frozen=True)
class Backoff:
    """Exponential reconnect delays with jitter; half the step is fixed, so never a hot loop."""

    initial_s: float = 1.0
    max_s: float = 60.0

    def delay(self, attempt: int) -> float:
        """The pause before reconnect number `attempt` (0-based)."""
        step = min(self.max_s, self.initial_s * 2.0 ** min(attempt, 30))
        jitter: float = secrets.SystemRandom().uniform(0, step / 2)
        return step / 2 + jitter


def _ack(message_id: str | None, code: int, message: str, data: Any) -> str:
    ack = AckMessage()
    ack.code, ack.message, ack.data = code, message, data
    ack.headers.message_id = message_id
    ack.headers.content_type = "application/json"
    return json.dumps(ack.to_dict(), ensure_ascii=False)


_EVENT_OK = (200, "OK", {"status": "SUCCESS", "message": "OK"})
# §5.4: DingTalk redelivers on a non-200 code or status LATER (the Go SDK's failure ack).
_EVENT_LATER = (500, "LATER", {"status": "LATER", "message": "not recorded; redeliver"})


class StreamIntake:
    """Keeps one stream connection up, applies its events and hands robot messages on."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_base: str,
        client_id: str,
        client_secret: str,
        sink: EventSink,
        chat: ChatHandler | None = None,
        watchdog_s: float = 90.0,
        backoff: Backoff | None = None,
        stable_s: float = 60.0,
        timeout_s: float = 10.0,
        max_in_flight: int = 32,
    ) -> None:
        self._session = session
        self._open_url = api_base.rstrip("/") + OPEN_PATH
        self._client_id, self._client_secret = client_id, client_secret
        self._sink, self._chat = sink, chat
        self._watchdog_s, self._stable_s, self._timeout_s = watchdog_s, stable_s, timeout_s
        self._backoff = backoff or Backoff()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._chat_tasks: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self._served = False
        self.last_frame_at: float | None = None
        """`time.monotonic()` of the last frame (or connect): readiness and the watchdog."""
        self.connected_since: float | None = None
        """`time.monotonic()` when the current (or last) connection opened."""
        self.connections = 0
        self.watchdog_trips = 0

    @classmethod
    def from_config(
        cls,
        session: aiohttp.ClientSession,
        config: DingTalkConfig,
        sink: EventSink,
        chat: ChatHandler | None = None,
    ) -> StreamIntake:
        """The intake for `[dingtalk]`; raises StreamAuthError when the credentials are unset."""
        if not config.app_key or config.app_secret is None:
            raise StreamAuthError(
                "stream mode needs dingtalk.app_key and the secret "
                "APPROVAL_BRIDGE__DINGTALK__APP_SECRET"
            )
        return cls(
            session,
            api_base=config.api_base,
            client_id=config.app_key,
            client_secret=config.app_secret.get_secret_value(),
            sink=sink,
            chat=chat,
            watchdog_s=config.stream_watchdog_s,
            timeout_s=config.timeout_s,
        )

    @property
    def connected(self) -> bool:
        """Whether a websocket is open right now."""
        return self._connected

    def frame_age(self) -> float | None:
        """Seconds since the last frame; None before the first connection."""
        return None if self.last_frame_at is None else time.monotonic() - self.last_frame_at

    async def probe(self) -> str:
        """Get a ticket (our aiohttp with a timeout, §5.8) and the websocket URL; checks the app."""
        subscriptions = [{"type": "EVENT", "topic": "*"}]
        if self._chat is not None:
            subscriptions.append({"type": "CALLBACK", "topic": ROBOT_TOPIC})
        body = {
            "clientId": self._client_id,
            "clientSecret": self._client_secret,
            "subscriptions": subscriptions,
            "ua": "approval-bridge (dingtalk-stream frames)",
        }
        timeout = aiohttp.ClientTimeout(total=self._timeout_s)
        async with self._session.post(self._open_url, json=body, timeout=timeout) as response:
            text = await response.text()
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        answer = answer if isinstance(answer, dict) else {}
        if response.status == 401 or answer.get("code") == "authFailed":
            raise StreamAuthError(
                f"DingTalk refused the app credentials ({answer.get('code', response.status)}: "
                f"{answer.get('message', '')}); check dingtalk.app_key and the app secret"
            )
        endpoint, ticket = answer.get("endpoint"), answer.get("ticket")
        if response.status != 200 or not isinstance(endpoint, str) or not isinstance(ticket, str):
            raise GatewayError(f"open connection: HTTP {response.status}: {text[:200]}")
        # Single use, valid 90 s (§5.1); encoded as the SDK does (§5.2).
        return f"{endpoint}?ticket={quote_plus(ticket)}"

    async def __aenter__(self) -> Self:
        """Check the credentials (StreamAuthError stops startup), then run in a task."""
        first: str | None = None
        try:
            first = await self.probe()
        except (GatewayError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("dingtalk stream: gateway unavailable at startup (%s); retrying", exc)
        self._task = asyncio.create_task(self.run(first), name="dingtalk-stream")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the socket and wait for the task: quick, cancellation is honoured."""
        tasks = [t for t in (self._task, *self._chat_tasks) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._task = None

    async def run(self, uri: str | None = None) -> None:
        """Connect, serve, and reconnect with backoff, until cancelled."""
        attempt = 0
        while True:
            started = time.monotonic()
            self._served = False
            try:
                await self._serve(uri or await self.probe())
            except StreamAuthError as exc:
                log.error("dingtalk stream: %s", exc)
            except (GatewayError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.warning("dingtalk stream: cannot connect: %r", exc)
            except websockets.exceptions.WebSocketException as exc:
                log.warning("dingtalk stream: connection lost: %r", exc)
            except Exception:
                log.exception("dingtalk stream: unexpected failure")
            uri = None
            if self._served or time.monotonic() - started >= self._stable_s:
                # A connection that worked is not a failure streak: a network that cuts every
                # connection after a while must not leave us away longer each time (up to
                # `max_s`, with /readyz failing meanwhile).
                attempt = 0
            delay = self._backoff.delay(attempt)
            attempt += 1
            log.info("dingtalk stream: reconnecting in %.1f s", delay)
            await asyncio.sleep(delay)

    async def _serve(self, uri: str) -> None:
        """One connection, until closed, told to go, or silent for `watchdog_s`."""
        tasks: set[asyncio.Task[None]] = set()
        # close_timeout=1: a close (shutdown, watchdog) never waits long on a dead peer.
        async with connect(uri, open_timeout=self._timeout_s, close_timeout=1, proxy=None) as ws:
            self._connected, self.last_frame_at = True, time.monotonic()
            self.connected_since = self.last_frame_at
            self.connections += 1
            log.info("dingtalk stream: connected")
            try:
                while True:
                    try:
                        async with asyncio.timeout(self._watchdog_s):
                            raw = await ws.recv()
                    except TimeoutError:
                        # A dead TCP connection can hang reads forever (§5.8 [OBS]).
                        self.watchdog_trips += 1
                        log.warning(
                            "dingtalk stream: silent for %.0f s, replacing", self._watchdog_s
                        )
                        return
                    self.last_frame_at = time.monotonic()
                    if await self._frame(ws, raw, tasks):
                        log.info("dingtalk stream: server asked to reconnect")
                        break
                    # Any frame but `disconnect` (a ping, an event) shows the connection
                    # worked; a server that only ever says go away keeps the streak growing.
                    self._served = True
                if tasks:  # send the acks of events in flight before leaving (§5.5)
                    await asyncio.wait(tasks, timeout=5)
            except websockets.exceptions.ConnectionClosedOK:
                log.info("dingtalk stream: closed by the server")
            finally:
                self._connected = False
                for task in tasks:
                    task.cancel()  # not acked: DingTalk redelivers; the inbox dedupes
                if tasks:
                    await asyncio.wait(tasks)

    async def _frame(
        self, ws: ClientConnection, raw: str | bytes, tasks: set[asyncio.Task[None]]
    ) -> bool:
        """Route one frame; True for a `disconnect`."""
        try:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == SystemMessage.TYPE:
                msg = SystemMessage.from_dict(frame)
                if msg.headers.topic == SystemMessage.TOPIC_DISCONNECT:
                    return True  # §5.5: no answer needed; the server closes 10 s later
                await ws.send(_ack(msg.headers.message_id, 200, "OK", msg.data))  # ping echo
            elif kind == EventMessage.TYPE:
                await self._slots.acquire()  # backpressure: max_in_flight commits at once
                task = asyncio.create_task(self._event(ws, frame))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                task.add_done_callback(lambda _: self._slots.release())
            elif kind == CallbackMessage.TYPE:
                # Robot messages are fire-and-forget (§4.4): ack at once, then hand them on.
                msg = CallbackMessage.from_dict(frame)
                ours = msg.headers.topic == ROBOT_TOPIC and self._chat is not None
                code = 200 if ours else 404
                await ws.send(_ack(msg.headers.message_id, code, "", {"response": None}))
                if ours and self._chat is not None:
                    chat = asyncio.create_task(relay_chat(self._chat, msg.data))
                    self._chat_tasks.add(chat)
                    chat.add_done_callback(self._chat_tasks.discard)
            else:
                log.warning("dingtalk stream: unknown frame type %r", kind)
        except _FRAME_ERRORS:
            log.warning("dingtalk stream: dropped an unreadable frame")
        return False

    async def _event(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        """Apply an EVENT frame through the sink and ack only once it committed (DESIGN §3)."""
        headers = frame.get("headers")
        message_id = headers.get("messageId") if isinstance(headers, dict) else None
        try:
            msg = EventMessage.from_dict(frame)
            event = from_stream(msg.headers, msg.data)
            code, text, data = _EVENT_OK
            if event is not None:
                try:
                    await self._sink.apply(event)
                except Exception:
                    log.exception("dingtalk stream: applying %s failed; not acked", event.key)
                    code, text, data = _EVENT_LATER
        except (*_FRAME_ERRORS, EventError) as exc:
            # Redelivery cannot fix a malformed event; reconciliation finds its decision.
            log.error("dingtalk stream: dropped an unreadable event %s: %s", message_id, exc)
            code, text, data = _EVENT_OK
        failpoints.reach("stream.before_ack")
        try:
            await ws.send(_ack(message_id, code, text, data))
        except websockets.exceptions.ConnectionClosed:
            log.info("dingtalk stream: ack of %s lost with the connection", message_id)
