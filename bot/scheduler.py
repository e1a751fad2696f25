"""Scheduled work (APScheduler 3): reconciliation, later reminders and digests; once per tick."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

from approvals.db.engine import Database

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[object]]


class Scheduler:
    """One AsyncIOScheduler with an explicit zone; each job runs in one replica per tick."""

    def __init__(self, db: Database, timezone: str) -> None:
        self._db = db
        self._scheduler = AsyncIOScheduler(
            timezone=timezone,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
        )

    def every(self, name: str, minutes: float, job: Job, run_now: bool = False) -> None:
        """Run `job` every `minutes`; retry timing of the work itself lives in the database."""

        async def guarded() -> None:
            async with self._db.singleton(f"scheduled:{name}") as mine:
                if not mine:
                    return  # another replica has this tick
                try:
                    await job()
                except Exception:
                    log.exception("scheduled job %s failed; it runs again next tick", name)

        trigger = IntervalTrigger(minutes=minutes)
        if run_now:
            first = dt.datetime.now(dt.UTC)
            self._scheduler.add_job(guarded, trigger, id=name, name=name, next_run_time=first)
        else:
            self._scheduler.add_job(guarded, trigger, id=name, name=name)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Scheduler]:
        """Start on entry, shut down (without waiting for a stuck job) on exit."""
        self._scheduler.start()
        try:
            yield self
        finally:
            self._scheduler.shutdown(wait=False)
