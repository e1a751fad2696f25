"""Outbound delivery of signed ERP events to the bridge, retried until acknowledged."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp

from erp_adapter.reference.records import Attempt, DeliveryStatus, EventRecord
from erp_adapter.reference.signing import signed_headers
from erp_adapter.reference.store import Store

log = logging.getLogger(__name__)
_RETRYABLE_4XX = frozenset({408, 429})
_FINAL: dict[int, DeliveryStatus] = {409: "stale"}


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter between attempts, and a timeout on each call."""

    initial: float = 0.2
    maximum: float = 5.0
    multiplier: float = 2.0
    request_timeout: float = 10.0
    max_attempts: int | None = None
    """None retries until acknowledged; a number gives up (status `failed`) after that many."""
    max_retry_after: float = 60.0
    """A `Retry-After` is honoured up to this many seconds."""

    def backoff(self, failures: int) -> float:
        """Seconds to wait after `failures` consecutive failures ("equal jitter")."""
        ceiling = min(self.maximum, self.initial * self.multiplier ** max(failures - 1, 0))
        return ceiling / 2 + secrets.SystemRandom().uniform(0, ceiling / 2)


def retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date), None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


class Emitter:
    """Emits events into the store and delivers each in a tracked task, in order per document."""

    def __init__(
        self,
        store: Store,
        secret: str,
        bridge_url: str | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        policy: RetryPolicy | None = None,
        event_prefix: str | None = None,
    ) -> None:
        self.bridge_url = bridge_url
        self.policy = policy or RetryPolicy()
        self._store = store
        self._secret = secret
        self._session = session
        self._owns_session = session is None
        self._prefix = event_prefix or f"erp-evt-{secrets.token_hex(3)}-"
        self._count = 0
        self._closed = True
        self._tasks: set[asyncio.Task[None]] = set()
        self._tails: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        """Open the HTTP session unless one was injected."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._closed = False

    async def close(self) -> None:
        """Cancel and await every delivery still running, then close an owned session."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
        self._closed = True

    @property
    def ready(self) -> bool:
        """Whether events can be emitted: started, with a bridge URL."""
        return not self._closed and self._session is not None and bool(self.bridge_url)

    def emit(self, type_: str, data: dict[str, Any], order_key: str) -> EventRecord:
        """Record an event and start delivering it after earlier events with the same key."""
        if not self.ready:
            raise RuntimeError("the emitter is not started or has no bridge_url")
        occurred_at = self._store.clock()
        if occurred_at.utcoffset() is None:
            raise ValueError("the clock must return timezone-aware datetimes")
        self._count += 1
        record = EventRecord(f"{self._prefix}{self._count:06d}", type_, occurred_at, data)
        self._store.events.append(record)
        task = asyncio.create_task(
            self._deliver(record, self._tails.get(order_key)), name=f"deliver {record.event_id}"
        )
        self._tasks.add(task)
        self._tails[order_key] = task
        task.add_done_callback(lambda t: self._forget(t, order_key))
        return record

    def _forget(self, task: asyncio.Task[None], order_key: str) -> None:
        self._tasks.discard(task)
        if self._tails.get(order_key) is task:
            del self._tails[order_key]

    async def wait_delivered(self, timeout: float = 10.0) -> list[EventRecord]:  # noqa: ASYNC109
        """Wait until every emitted event is delivered or finally refused; TimeoutError if not."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while pending := {t for t in self._tasks if not t.done()}:
            remaining = deadline - loop.time()
            if remaining <= 0:
                ids = sorted(r.event_id for r in self._store.events if not r.final)
                raise TimeoutError(f"events still undelivered after {timeout} s: {ids}")
            await asyncio.wait(pending, timeout=remaining)
        return list(self._store.events)

    async def _deliver(self, record: EventRecord, previous: asyncio.Task[None] | None) -> None:
        """Deliver one event until it is acknowledged or finally refused."""
        if previous is not None:
            await asyncio.wait({previous})
        body = json.dumps(record.envelope(), ensure_ascii=False, separators=(",", ":")).encode()
        failures = 0
        while True:
            try:
                delay = await self._attempt(record, body)
            except Exception as exc:
                log.exception("event %s: delivery failed for good", record.event_id)
                self._finish(record, "failed", f"{type(exc).__name__}: {exc}")
                return
            if delay is None:
                return
            failures += 1
            if self.policy.max_attempts is not None and failures >= self.policy.max_attempts:
                self._finish(record, "failed", "gave up after max_attempts")
                return
            await asyncio.sleep(delay if delay > 0 else self.policy.backoff(failures))

    async def _attempt(self, record: EventRecord, body: bytes) -> float | None:
        """One signed POST; None when final, else seconds to wait (not positive: use backoff)."""
        assert self._session is not None
        assert self.bridge_url is not None
        url = self.bridge_url.rstrip("/") + "/erp/events"
        now = self._store.clock()
        ts = int(now.timestamp())
        headers = {"Content-Type": "application/json", **signed_headers(self._secret, ts, body)}
        timeout = aiohttp.ClientTimeout(total=self.policy.request_timeout)
        try:
            async with self._session.post(
                url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as resp:
                status, raw = resp.status, await resp.read()
                wait = retry_after(resp.headers.get("Retry-After"), now)
        except aiohttp.InvalidURL:
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            record.attempts.append(Attempt(now, ts, None, error))
            log.info("event %s: %s, will retry", record.event_id, error)
            return -1.0
        record.attempts.append(Attempt(now, ts, status))
        record.response = _decode(raw)
        if 200 <= status < 300:
            approval_id = (
                record.response.get("approval_id") if isinstance(record.response, dict) else None
            )
            record.approval_id = approval_id if isinstance(approval_id, str) else None
            self._finish(record, "delivered")
            return None
        if status >= 500 or status in _RETRYABLE_4XX:
            log.info("event %s: bridge answered %s, will retry", record.event_id, status)
            return min(wait, self.policy.max_retry_after) if wait else -1.0
        self._finish(record, _FINAL.get(status, "rejected"), f"HTTP {status}")
        return None

    def _finish(self, record: EventRecord, status: DeliveryStatus, why: str = "") -> None:
        record.status = status
        record.finished_at = self._store.clock()
        log.log(
            logging.INFO if status == "delivered" else logging.WARNING,
            "event %s (%s): %s %s",
            record.event_id,
            record.type,
            status,
            why,
        )


def _decode(raw: bytes) -> Any:
    """The bridge's answer: JSON when it is JSON, else the text."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
