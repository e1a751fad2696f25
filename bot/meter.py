"""Counts metered DingTalk calls by API and UTC day, and flushes them to the database."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from types import TracebackType

from sqlalchemy.exc import DBAPIError

from approvals.db import meter as meter_repo
from approvals.db.engine import Database
from approvals.db.meter import CallCounts
from approvals.ports import Clock, SystemClock

log = logging.getLogger(__name__)

BudgetHook = Callable[[float], None]
"""Called with the used fraction when it first crosses a threshold in a month."""


class CallMeter:
    """In-memory call counts, flushed every few seconds and on close; knows the month's total.

    DingTalk meters calls per organisation and month (spec section 8.2, DESIGN section 3);
    token calls are exempt, so the client does not record them. A throttled call was refused
    before it ran, so it is kept apart and not counted against the budget.
    """

    def __init__(
        self,
        db: Database,
        *,
        budget: int,
        flush_every_s: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        self._db = db
        self.budget = budget
        self._flush_every_s = flush_every_s
        self._clock = clock or SystemClock()
        self._pending: dict[tuple[str, str], CallCounts] = {}
        self._inflight: dict[tuple[str, str], CallCounts] = {}  # being written right now
        self._stored: dict[str, CallCounts] = {}  # this month per API, as last read back
        self._stored_month = ""
        self._hooks: list[tuple[float, BudgetHook]] = []
        self._fired: set[tuple[str, float]] = set()
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()

    async def __aenter__(self) -> CallMeter:
        await self._reload(self._month())
        self._task = asyncio.create_task(self._flush_forever(), name="call-meter-flush")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    def record(self, api: str, *, throttled: bool = False, failed: bool = False) -> None:
        """Count one call to `api`, made now."""
        key = (api, self._clock.now().astimezone(dt.UTC).strftime("%Y-%m-%d"))
        self._pending[key] = self._pending.get(key, CallCounts()) + CallCounts(
            1, int(throttled), int(failed)
        )
        self._check_budget()

    def on_budget(self, threshold: float, hook: BudgetHook) -> None:
        """Call `hook` once a month when the used fraction reaches `threshold` (e.g. 0.8)."""
        self._hooks.append((threshold, hook))
        self._check_budget()

    def month_counts(self) -> dict[str, CallCounts]:
        """This month's counts per API: stored ones plus those not flushed yet."""
        month = self._month()
        counts = dict(self._stored) if self._stored_month == month else {}
        for (api, day), c in [*self._pending.items(), *self._inflight.items()]:
            if day.startswith(month):
                counts[api] = counts.get(api, CallCounts()) + c
        return counts

    def month_used(self) -> int:
        """Calls counted against this month's quota (throttled ones excluded)."""
        return sum(c.calls - c.throttled for c in self.month_counts().values())

    def used_fraction(self) -> float:
        """The share of the monthly budget already used (may exceed 1)."""
        return self.month_used() / self.budget

    async def flush(self) -> None:
        """Write pending counts to the database and read the month's totals back."""
        async with self._flush_lock:
            self._inflight, self._pending = self._pending, {}
            try:
                if self._inflight:
                    async with self._db.write() as conn:
                        await meter_repo.add(conn, self._inflight)
            except (DBAPIError, OSError) as exc:
                # Keep the counts for the next flush rather than lose them.
                for key, c in self._inflight.items():
                    self._pending[key] = self._pending.get(key, CallCounts()) + c
                self._inflight = {}
                log.warning("meter: cannot store call counts, will retry: %s", exc)
                return
            if not await self._reload(self._month()):
                # Stored, but not read back: count what was written as stored.
                for (api, day), c in self._inflight.items():
                    if day.startswith(self._stored_month):
                        self._stored[api] = self._stored.get(api, CallCounts()) + c
            self._inflight = {}

    async def _reload(self, month: str) -> bool:
        """Read back the stored month (it includes what other replicas counted)."""
        try:
            async with self._db.read() as conn:
                self._stored = await meter_repo.month(conn, month)
        except (DBAPIError, OSError) as exc:
            log.warning("meter: cannot read this month's call counts: %s", exc)
            return False
        self._stored_month = month
        self._check_budget()
        return True

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._flush_every_s)
            await self.flush()

    def _month(self) -> str:
        return self._clock.now().astimezone(dt.UTC).strftime("%Y-%m")

    def _check_budget(self) -> None:
        if not self._hooks:
            return
        month, fraction = self._month(), self.used_fraction()
        for threshold, hook in self._hooks:
            key = (month, threshold)
            if fraction >= threshold and key not in self._fired:
                self._fired.add(key)
                try:
                    hook(fraction)
                except Exception:
                    log.exception("meter: budget hook failed")
