"""Scheduled work (APScheduler 3): reconciliation, reminders and digests; once per tick.

Every replica's ticks fall on the same wall-clock boundaries (multiples of the interval since
`EPOCH`), and a tick runs only in the replica that claims it in the database first: an advisory
lock alone would let replicas started at different moments each run the job on their own
schedule. The claim is a row of the `reminder` table, the one mechanism for "exactly once
whatever the replicas".
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

from approvals.db import reminders
from approvals.db.engine import Database
from approvals.ports import Clock, SystemClock

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[object]]

EPOCH = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
"""Ticks are counted from here, so that every replica agrees on their boundaries."""
EARLY_S = 1.0
"""A run this close before a boundary belongs to the next tick (timers fire a little early)."""
KEEP_TICKS = 50
"""Claims older than this many ticks are deleted as new ones are taken."""
LEVEL = "tick"
STOP_WAIT_S = 5.0
"""How long shutting down waits for cancelled jobs to unwind."""


def tick_of(now: dt.datetime, minutes: float) -> int:
    """The number of the tick `now` falls in, for a job every `minutes`."""
    return math.floor(((now - EPOCH).total_seconds() + EARLY_S) / (minutes * 60))


class Scheduler:
    """One AsyncIOScheduler with an explicit zone; each tick of a job runs in one replica."""

    def __init__(self, db: Database, timezone: str, clock: Clock | None = None) -> None:
        self._db = db
        self._clock = clock or SystemClock()
        self._jobs: set[asyncio.Task[object]] = set()
        self._scheduler = AsyncIOScheduler(
            timezone=timezone,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
        )

    def every(self, name: str, minutes: float, job: Job, run_now: bool = False) -> None:
        """Run `job` every `minutes`, and at once if `run_now` (unless this tick already ran)."""

        async def guarded() -> None:
            task = asyncio.current_task()
            assert task is not None  # apscheduler runs coroutine jobs as tasks
            self._jobs.add(task)
            try:
                await run()
            finally:
                self._jobs.discard(task)

        async def run() -> None:
            # The lock keeps a long run from overlapping the next tick's in another replica.
            async with self._db.singleton(f"scheduled:{name}") as mine:
                if not mine:
                    return
                tick = tick_of(self._clock.now(), minutes)
                if not await self._claim(name, tick):
                    return  # another replica ran this tick
                log.info("scheduled %s: tick %d", name, tick)
                try:
                    await job()
                except Exception:
                    log.exception("scheduled job %s failed; it runs again next tick", name)

        trigger = IntervalTrigger(minutes=minutes, start_date=EPOCH, timezone=dt.UTC)
        self._scheduler.add_job(guarded, trigger, id=name, name=name)
        if run_now:
            # A job of its own: a first run time on the interval job would become the origin of
            # its later ticks, off the shared boundaries.
            self._scheduler.add_job(
                guarded, "date", run_date=self._clock.now(), id=f"{name}:now", name=name
            )

    async def _claim(self, name: str, tick: int) -> bool:
        """Take this tick of `name` for this replica; False when another took it first."""
        subject = f"tick:{name}"
        try:
            async with self._db.write() as conn:
                won = await reminders.claim(conn, (subject, tick, LEVEL), self._clock.now())
                if won:
                    await reminders.release_before(conn, subject, LEVEL, tick - KEEP_TICKS)
                return won
        except Exception:
            # The database is down: skip this tick rather than run unclaimed in every replica.
            log.exception("scheduled %s: could not claim tick %d; skipped", name, tick)
            return False

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Scheduler]:
        """Start on entry; on exit, shut down and cancel the jobs still running.

        A job left running would outlive the database it uses: its connection's close then
        waits forever on a driver thread that is gone, and so does the process's exit.
        """
        self._scheduler.start()
        try:
            yield self
        finally:
            self._scheduler.shutdown(wait=False)
            jobs = set(self._jobs)
            for job in jobs:
                job.cancel()
            if jobs:
                await asyncio.wait(jobs, timeout=STOP_WAIT_S)
