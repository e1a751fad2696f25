"""Scheduled jobs run on their interval, once per tick across processes."""

from __future__ import annotations

import asyncio

from approvals.db.engine import Database
from bot.scheduler import Scheduler


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
