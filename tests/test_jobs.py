"""The outbox runner: retry with backoff and jitter, deadlines, parking, leases, safe claiming."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.config import JobConfig
from approvals.db import jobs as job_repo
from approvals.db.engine import Database
from approvals.db.jobs import JobRow
from approvals.db.tables import job
from approvals.errors import Permanent, Retryable, Throttled
from approvals.jobs import KIND_SHARE, JobRunner, backoff
from approvals.ports import SystemClock

FAST = JobConfig(poll_interval_s=0.02, backoff_initial_s=0.02, backoff_max_s=0.05, lease_s=5)


class Scripted:
    """A handler that fails as scripted, then succeeds; records every run and park."""

    def __init__(self, failures: list[Exception], deadline_s: float = 60) -> None:
        self.failures = list(failures)
        self.deadline = dt.timedelta(seconds=deadline_s)
        self.runs: list[int] = []
        self.parks: list[str] = []

    async def run(self, row: JobRow) -> bool:
        self.runs.append(row.attempts)
        if self.failures:
            raise self.failures.pop(0)
        return False

    async def parked(self, conn: AsyncConnection, row: JobRow, error: str) -> None:
        self.parks.append(error)


async def enqueue(db: Database, count: int = 1, kind: str = "k") -> None:
    async with db.write() as conn:
        await job_repo.enqueue(
            conn, [(kind, None, None, {"n": i}) for i in range(count)], SystemClock().now()
        )


async def rows(db: Database) -> list[tuple[str, int, str | None]]:
    async with db.read() as conn:
        result = await conn.execute(select(job.c.status, job.c.attempts, job.c.last_error))
        return [(r[0], r[1], r[2]) for r in result.all()]


async def until(predicate: Callable[[], object], wait_s: float = 5) -> None:
    deadline = time.monotonic() + wait_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def test_backoff_is_exponential_capped_and_jittered() -> None:
    config = JobConfig(backoff_initial_s=1, backoff_max_s=30)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (20, 30)]:
        delays = [backoff(attempt, config, rng) for _ in range(200)]
        assert min(delays) >= ceiling / 2
        assert max(delays) <= ceiling
        assert len(set(delays)) > 100  # jitter: retries of many jobs do not line up


async def test_retries_until_success_then_removes_the_job(db: Database) -> None:
    handler = Scripted([Retryable("500"), Throttled("slow down", retry_after=0.05)])
    await enqueue(db)
    async with JobRunner(db, SystemClock(), FAST, {"k": handler}).running():
        await until(lambda: len(handler.runs) == 3)
        await asyncio.sleep(0.05)
    assert handler.runs == [1, 2, 3]
    assert handler.parks == []
    assert await rows(db) == []


async def test_parks_when_the_deadline_passes(db: Database) -> None:
    handler = Scripted([Retryable("down")] * 1000, deadline_s=0.3)
    await enqueue(db)
    async with JobRunner(db, SystemClock(), FAST, {"k": handler}).running():
        await until(lambda: handler.parks)
    [(status, attempts, error)] = await rows(db)
    assert status == "parked"
    assert attempts == len(handler.runs) >= 3
    assert error is not None and "deadline passed" in error and "down" in error
    assert len(handler.parks) == 1


async def test_permanent_failure_parks_at_once(db: Database) -> None:
    handler = Scripted([Permanent("400 bad request")])
    await enqueue(db)
    async with JobRunner(db, SystemClock(), FAST, {"k": handler}).running():
        await until(lambda: handler.parks)
        await asyncio.sleep(0.1)
    assert handler.runs == [1]
    assert await rows(db) == [("parked", 1, "Permanent: 400 bad request")]


async def test_an_unknown_kind_is_parked_not_lost(db: Database) -> None:
    await enqueue(db, kind="mystery")
    async with JobRunner(db, SystemClock(), FAST, {}).running():
        await until(lambda: True)
        await asyncio.sleep(0.2)
    [(status, _, error)] = await rows(db)
    assert status == "parked"
    assert error == "no handler for job kind 'mystery'"


async def test_a_crashed_workers_lease_runs_out_and_the_job_runs_again(db: Database) -> None:
    await enqueue(db)
    now = SystemClock().now()
    async with db.write() as conn:
        [claimed] = await job_repo.claim(conn, 10, now, dt.timedelta(seconds=0.3))
    # The process that claimed it dies here. Another claimer sees nothing until the lease ends.
    async with db.write() as conn:
        assert await job_repo.claim(conn, 10, SystemClock().now(), dt.timedelta(seconds=5)) == []
    await asyncio.sleep(0.35)
    async with db.write() as conn:
        [again] = await job_repo.claim(conn, 10, SystemClock().now(), dt.timedelta(seconds=5))
    assert again.id == claimed.id
    assert again.attempts == 2  # so a handler knows an earlier run may have reached the outside


async def test_a_job_running_past_its_lease_is_not_taken_by_another_runner(db: Database) -> None:
    """Two replicas' runners; the job takes longer than the lease: it runs once, not twice."""
    if db.is_sqlite:
        pytest.skip("several replicas need PostgreSQL; SQLite serves one process")
    await enqueue(db)
    runs: list[int] = []

    class Slow(Scripted):
        async def run(self, row: JobRow) -> bool:
            runs.append(row.attempts)
            await asyncio.sleep(7)  # past the 5-s lease
            return False

    first, second = Slow([]), Slow([])
    async with JobRunner(db, SystemClock(), FAST, {"k": first}).running():
        await until(lambda: runs)
        async with JobRunner(db, SystemClock(), FAST, {"k": second}).running():
            await asyncio.sleep(7.5)
    assert runs == [1]
    assert await rows(db) == []


async def test_concurrent_claimers_never_share_a_job(db: Database) -> None:
    await enqueue(db, 300)
    seen: list[int] = []

    async def claimer() -> None:
        while True:
            async with db.write() as conn:
                got = await job_repo.claim(conn, 7, SystemClock().now(), dt.timedelta(seconds=60))
            if not got:
                return
            seen.extend(r.id for r in got)

    await asyncio.gather(*(claimer() for _ in range(4)))
    assert len(seen) == 300
    assert len(set(seen)) == 300


async def test_shutdown_hands_running_jobs_back(db: Database) -> None:
    started = asyncio.Event()

    class Stuck(Scripted):
        async def run(self, row: JobRow) -> bool:
            started.set()
            await asyncio.sleep(3600)
            return False

    await enqueue(db)
    runner = JobRunner(db, SystemClock(), FAST, {"k": Stuck([])})
    async with runner.running(grace_s=0.1):
        await asyncio.wait_for(started.wait(), 5)
    [(status, attempts, _)] = await rows(db)
    assert (status, attempts) == ("ready", 1)
    async with db.read() as conn:
        due = await conn.execute(select(func.count()).where(job.c.run_after <= SystemClock().now()))
        assert due.scalar_one() == 1  # ready at once for the next process


async def test_a_backlog_of_one_kind_leaves_workers_for_the_others(db: Database) -> None:
    """Creates waiting on DingTalk's rate limit must not hold every worker from write-backs."""
    release = asyncio.Event()
    running: list[str] = []

    class Slow(Scripted):
        async def run(self, row: JobRow) -> bool:
            running.append(row.kind)
            await release.wait()
            return False

    class Quick(Scripted):
        async def run(self, row: JobRow) -> bool:
            running.append(row.kind)
            return False

    await enqueue(db, 40, kind="slow")  # enqueued first: first in line
    await enqueue(db, 3, kind="quick")
    config = JobConfig(workers=8, poll_interval_s=0.02, lease_s=5)
    async with JobRunner(db, SystemClock(), config, {"slow": Slow([]), "quick": Quick([])}).running(
        grace_s=0.1
    ):
        await until(lambda: running.count("quick") == 3)
        # Six of eight workers (KIND_SHARE) hold slow jobs; the quick ones ran beside them.
        assert running.count("slow") == int(8 * KIND_SHARE)
        release.set()
        await until(lambda: running.count("slow") == 40)


async def test_the_claim_loop_outlives_any_failure_to_claim(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim that fails with no DBAPI error (a pool timeout, a bug) must not end the loop:
    every job would then wait for ever, with nothing but a log line at shutdown to tell."""
    failures: list[Exception] = [
        sa_exc.TimeoutError("QueuePool limit of size 10 overflow 10 reached"),
        RuntimeError("a bug in claiming"),
    ]
    real_claim = job_repo.claim

    async def flaky_claim(*args: Any, **kwargs: Any) -> list[JobRow]:
        if failures:
            raise failures.pop(0)
        return await real_claim(*args, **kwargs)

    monkeypatch.setattr(job_repo, "claim", flaky_claim)
    handler = Scripted([])
    await enqueue(db)
    async with JobRunner(db, SystemClock(), FAST, {"k": handler}).running():
        await until(lambda: handler.runs == [1])
    assert failures == []
    assert await rows(db) == []
