"""A per-API rate limiter: calls leave at the configured rate, in arrival order, without polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

DEFAULT_RATE = 20.0
"""DingTalk's standard edition allows 20 calls a second per app and API (spec section 8.2)."""


class RateLimiter:
    """GCRA (a token bucket in slot form): each call gets the next free slot of its API's schedule.

    Slots are handed out in the order `acquire` is called, so waiting callers are served
    first come, first served; each waits with one `sleep` until its slot, never spins.
    With `burst` 1 the calls are spaced exactly `1/rate` apart, so no one-second window holds
    more than `rate` calls. `guard_s` stretches every run of `rate` calls to `1 + guard_s`
    seconds: calls leave on time but arrive with network jitter, and DingTalk counts arrivals.
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

    def forget_idle(self) -> None:
        """Drop the schedules of APIs that have been idle (their next slot is already past)."""
        now = self._clock()
        for key in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[key]
