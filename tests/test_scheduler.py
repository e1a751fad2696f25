"""Scheduled jobs run on their interval, once per tick across processes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable

from approvals.db.engine import Database
from bot.scheduler import EPOCH, Scheduler, tick_of


async def test_singleton_is_granted_to_one_holder_at_a_time(db: Database) -> None:
    async with db.singleton("job") as first:
        assert first
        async with db.singleton("job") as second:
            # SQLite serves one process: always granted; on PostgreSQL the second is refused.
            assert second is db.is_sqlite
        async with db.singleton("another job") as other:
            assert other
    async with db.singleton("job") as again:
        assert again


async def test_a_job_runs_at_once_and_keeps_running_after_a_failure(db: Database) -> None:
    runs: list[int] = []

    async def job() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("first run fails")

    scheduler = Scheduler(db, "Asia/Shanghai")
    scheduler.every("test", minutes=0.01, job=job, run_now=True)
    async with scheduler.running():
        for _ in range(300):
            if len(runs) >= 2:
                break
            await asyncio.sleep(0.02)
    assert len(runs) >= 2


async def test_replicas_run_each_tick_once(db: Database) -> None:
    """Three schedulers on one database, started at different moments: one run per tick."""
    runs: list[tuple[int, int]] = []
    minutes = 0.01  # a tick every 0.6 s
    replicas = [Scheduler(db, "Asia/Shanghai") for _ in range(3)]

    def job_of(replica: int) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            runs.append((replica, tick_of(dt.datetime.now(dt.UTC), minutes)))
            await asyncio.sleep(0.05)

        return job

    for number, scheduler in enumerate(replicas):
        scheduler.every("shared", minutes, job_of(number), run_now=True)
    async with contextlib.AsyncExitStack() as stack:
        for scheduler in replicas:
            await stack.enter_async_context(scheduler.running())
            await asyncio.sleep(0.25)  # unaligned starts, as replicas have
        await asyncio.sleep(3)
    ticks = [tick for _, tick in runs]
    assert len(ticks) >= 4
    assert len(ticks) == len(set(ticks)), runs  # no tick ran twice
    assert max(ticks) - min(ticks) + 1 - len(ticks) <= 1, runs  # and hardly any was missed


def test_ticks_fall_on_shared_boundaries() -> None:
    start = EPOCH + dt.timedelta(minutes=5 * 1000)
    assert tick_of(start, 5) == 1000
    assert tick_of(start + dt.timedelta(minutes=4, seconds=58), 5) == 1000
    assert tick_of(start + dt.timedelta(minutes=4, seconds=59, microseconds=500_000), 5) == 1001


async def test_a_first_run_at_start_keeps_later_ticks_on_the_boundaries(db: Database) -> None:
    scheduler = Scheduler(db, "Asia/Shanghai")

    async def job() -> None:
        return None

    scheduler.every("aligned", minutes=5, job=job, run_now=True)
    async with scheduler.running():
        interval = scheduler._scheduler.get_job("aligned")
        seconds = (interval.next_run_time - EPOCH).total_seconds()
    assert seconds % 300 == 0


async def test_leaving_cancels_a_job_still_running(db: Database) -> None:
    started, unwound = asyncio.Event(), asyncio.Event()

    async def stuck() -> None:
        started.set()
        try:
            async with db.read():
                await asyncio.sleep(3600)  # holds a connection, as a long sweep would
        finally:
            unwound.set()

    scheduler = Scheduler(db, "Asia/Shanghai")
    async with scheduler.running():
        scheduler.every("stuck", 60, stuck, run_now=True)
        await asyncio.wait_for(started.wait(), 10)
    # Cancelled and unwound before the caller goes on to dispose of the database.
    assert unwound.is_set()
