"""Events: recorded once, delivered until acknowledged, redelivered, or dropped on purpose."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from bot.sandbox.options import Clock, FaultOptions, SandboxOptions
from bot.sandbox.records import EventRecord, ms

log = logging.getLogger(__name__)


class Target(Protocol):
    """Where events go: the stream gateway or the HTTP callback."""

    async def attempt(self, record: EventRecord) -> bool:
        """Push the event once; True when the receiver acknowledged it."""
        ...


@dataclass
class EventStats:
    """Event counters for `GET /sandbox/stats`."""

    emitted: int = 0
    delivered: int = 0
    dropped: int = 0
    redelivered: int = 0
    failed: int = 0
    duplicates: int = 0

    def to_json(self) -> dict[str, int]:
        """The counters."""
        return asdict(self)


class EventBus:
    """Records each event and runs one tracked delivery task per event."""

    def __init__(
        self,
        options: SandboxOptions,
        clock: Clock,
        rng: random.Random,
        faults: Callable[[], FaultOptions],
        target: Callable[[], Target],
    ) -> None:
        self._options = options
        self._clock = clock
        self._rng = rng
        self._faults = faults
        self._target = target
        self.events: list[EventRecord] = []
        self.stats = EventStats()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._changed = asyncio.Event()

    def emit(self, event_type: str, data: dict[str, Any]) -> EventRecord:
        """Record an event with a fresh eventId and start delivering it (unless dropped)."""
        record = EventRecord(uuid.uuid4().hex, event_type, ms(self._clock()), data)
        self.events.append(record)
        self.stats.emitted += 1
        drop_rate = self._faults().event_drop_rate
        if drop_rate and self._rng.random() < drop_rate:
            record.status = "dropped"
            self.stats.dropped += 1
            log.info("sandbox: dropped event %s (%s) on purpose", record.event_id, event_type)
        elif not self._closed:
            self._spawn(self._deliver(record), f"deliver {record.event_id}")
        self._notify()
        return record

    def duplicate(self, event_id: str) -> EventRecord:
        """Push an event once more, as DingTalk sometimes does even after an ACK (§4.4)."""
        record = next((e for e in self.events if e.event_id == event_id), None)
        if record is None:
            raise KeyError(event_id)
        self.stats.duplicates += 1
        self._spawn(self._target().attempt(record), f"duplicate {event_id}")
        return record

    async def wait_settled(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until no event is pending; TimeoutError otherwise."""
        async with asyncio.timeout(timeout):
            while any(e.status == "pending" for e in self.events):
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        """Cancel and await every delivery still running."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _deliver(self, record: EventRecord) -> None:
        """Push until acknowledged; redeliver after a delay, to a receiver chosen again."""
        limit = self._options.max_deliveries
        while True:
            if record.deliveries:
                self.stats.redelivered += 1
            try:
                acked = await self._target().attempt(record)
            except Exception:
                log.exception("sandbox: pushing event %s failed", record.event_id)
                acked = False
            record.deliveries += 1
            if acked:
                record.status, record.delivered_at = "delivered", self._clock()
                self.stats.delivered += 1
                self._notify()
                return
            if limit is not None and record.deliveries >= limit:
                record.status = "failed"
                self.stats.failed += 1
                log.warning("sandbox: event %s never acknowledged", record.event_id)
                self._notify()
                return
            await asyncio.sleep(self._options.redelivery_delay)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _notify(self) -> None:
        self._changed.set()
