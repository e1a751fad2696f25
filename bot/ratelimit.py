"""A per-API rate limiter: calls leave at the configured rate, in arrival order, without polling."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

DEFAULT_RATE = 20.0
"""DingTalk's standard edition allows 20 calls a second per app and API (spec section 8.2)."""


class RateLimiter:
    """GCRA (a token bucket in slot form): each call gets the next free slot of its API's schedule.

    Slots are handed out in the order `acquire` is called, so waiting callers are served
    first come, first served; each waits with one `sleep` until its slot, never spins.
    With `burst` 1 the calls are spaced exactly `1/rate` apart, so no one-second window holds
    more than `rate` calls. `guard_s` stretches every run of `rate` calls to `1 + guard_s`
    seconds.

    Spacing alone cannot stop a refusal: DingTalk counts arrivals, and a call that leaves late
    (a busy loop) or travels slowly lands close to later ones. `slot` closes that gap: a call
    also waits until one second after the call `rate` places before it *finished*, the latest
    moment that call can have arrived; no one-second window of arrivals then holds more than
    `rate` calls, whatever the jitter, and the wait costs time only when the jitter was there.
    """

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        *,
        burst: int = 1,
        guard_s: float = 0.0,
        rates: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0 or any(r <= 0 for r in (rates or {}).values()):
            raise ValueError("rates must be positive")
        if burst < 1 or burst > max(1, int(rate)):
            # A burst above the rate would let more than `rate` calls into one second.
            raise ValueError(f"burst must be between 1 and the rate ({rate}), not {burst}")
        if not 0.0 <= guard_s < 1.0:
            raise ValueError("guard_s must be at least 0 and under 1 second")
        self._rate = rate
        self._stretch = 1.0 + guard_s
        self._rates = dict(rates or {})
        self._burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tat: dict[str, float] = {}  # theoretical arrival time of the next call, per API
        self._recent: dict[str, deque[_Call]] = {}  # the last `rate` calls through `slot`, per API

    def rate_for(self, key: str) -> float:
        """The calls per second allowed for one API."""
        return self._rates.get(key, self._rate)

    def reserve(self, key: str) -> float:
        """Claim the next slot for `key`; returns how many seconds from now it starts."""
        interval = self._stretch / self.rate_for(key)
        now = self._clock()
        tat = max(self._tat.get(key, now), now)
        self._tat[key] = tat + interval
        start = tat - (self._burst - 1) * interval
        return max(0.0, start - now)

    async def acquire(self, key: str) -> float:
        """Wait for this call's slot; returns the seconds waited."""
        delay = self.reserve(key)
        if delay > 0:
            await self._sleep(delay)
        return delay

    @contextlib.asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        """Wait for the call's turn, then make the call inside; its end is noted on exit."""
        per_second = max(1, int(self.rate_for(key)))
        recent = self._recent.setdefault(key, deque())
        earlier = recent[0] if len(recent) >= per_second else None
        mine = _Call()
        recent.append(mine)
        if len(recent) > per_second:
            recent.popleft()
        try:
            await self.acquire(key)
            if earlier is not None:
                await earlier.done.wait()
                wait = earlier.finished_at + 1.0 - self._clock()
                if wait > 0:
                    await self._sleep(wait)
            yield
        finally:
            # Also on failure or cancellation: the calls after this one must not wait forever.
            mine.finish(self._clock())

    def forget_idle(self) -> None:
        """Drop the schedules of APIs that have been idle (their next slot is already past)."""
        now = self._clock()
        for key in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[key]
        for key, recent in list(self._recent.items()):
            if all(c.done.is_set() and c.finished_at + 1.0 <= now for c in recent):
                del self._recent[key]


class _Call:
    """One call made through `slot`: whether it has finished, and when."""

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.finished_at = 0.0

    def finish(self, at: float) -> None:
        """Note that the call is over (its request can no longer arrive later than `at`)."""
        if not self.done.is_set():
            self.finished_at = at
            self.done.set()
