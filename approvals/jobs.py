"""Outbox workers: claim due jobs, run them, retry with backoff and jitter, park at the deadline."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Protocol

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.config import JobConfig
from approvals.db import jobs as job_repo
from approvals.db.engine import Database
from approvals.db.jobs import JobRow
from approvals.errors import Permanent, Retryable, Throttled
from approvals.ports import Clock

log = logging.getLogger(__name__)

KIND_SHARE = 0.75
"""The most of the workers one kind of job may run on at once (see `JobRunner._room`)."""


class JobHandler(Protocol):
    """Runs one kind of job."""

    deadline: dt.timedelta
    """How long after its creation a job of this kind is retried before it is parked."""

    async def run(self, job: JobRow) -> bool:
        """Do the job; True when it already removed the job in its own last transaction.

        Raises `Retryable` to be tried again, `Permanent` to be parked.
        """
        ...

    async def parked(self, conn: AsyncConnection, job: JobRow, error: str) -> None:
        """Record, in the parking transaction, that the job gave up."""
        ...


JobObserver = Callable[[JobRow, str], None]
"""Told how each run ended: `done`, `retry` or `parked` (metrics); must not block or raise."""


def backoff(attempt: int, config: JobConfig, rng: random.Random) -> float:
    """Seconds before try `attempt + 1`: exponential, capped, with 'equal jitter'."""
    ceiling: float = min(
        config.backoff_max_s, config.backoff_initial_s * 2.0 ** max(0, attempt - 1)
    )
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


class JobRunner:
    """Claims and runs jobs with bounded concurrency; woken after commits, else polls."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        config: JobConfig,
        handlers: Mapping[str, JobHandler],
        rng: random.Random | None = None,
        observer: JobObserver | None = None,
    ) -> None:
        self._db = db
        self.observer = observer
        """Observer hook (metrics), given by the composition root."""
        self._clock = clock
        self._config = config
        self._handlers = dict(handlers)
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._wake = asyncio.Event()
        self._tasks: dict[asyncio.Task[None], JobRow] = {}
        self._stopping = False
        self._renewed = 0.0
        self.idle = asyncio.Event()

    def wake(self) -> None:
        """Look for due jobs now (called after a commit that added some)."""
        self._wake.set()

    @contextlib.asynccontextmanager
    async def running(self, grace_s: float = 10.0) -> AsyncIterator[JobRunner]:
        """Run the claim loop; on exit, let jobs finish for `grace_s`, then hand them back."""
        if self._db.is_sqlite:
            async with self._db.write() as conn:
                released = await job_repo.release_all(conn, self._clock.now())
            if released:
                log.info("jobs: %d jobs left running by an earlier process handed back", released)
        loop_task = asyncio.create_task(self._loop(), name="job-runner")
        try:
            yield self
        finally:
            self._stopping = True
            self._wake.set()
            await loop_task
            await self._drain(grace_s)

    async def _drain(self, grace_s: float) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(list(self._tasks), timeout=grace_s)
        ids = [self._tasks[task].id for task in pending]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if ids:
            async with self._db.write() as conn:
                await job_repo.release(conn, ids, self._clock.now())

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            limit, full = self._room()
            take = min(self._config.workers - len(self._tasks), limit)
            claimed: list[JobRow] = []
            if take > 0:
                try:
                    claimed = await self._claim(take, full)
                except (DBAPIError, OSError) as exc:
                    log.warning("jobs: cannot claim: %s", exc)
                except Exception:
                    # Anything else (a pool timeout, a bug) must not end the one claim loop:
                    # every job would wait for ever. Try again at the next poll.
                    log.exception("jobs: claiming failed unexpectedly")
            await self._renew_leases()
            for job in claimed:
                task = asyncio.create_task(self._run(job), name=f"job-{job.kind}-{job.id}")
                self._tasks[task] = job
                task.add_done_callback(self._done)
            if not self._tasks and not claimed:
                self.idle.set()
            else:
                self.idle.clear()
            if claimed and len(claimed) == take:
                continue
            with contextlib.suppress(TimeoutError):
                # Woken at least a third of a lease apart, so leases are renewed in time.
                wait = min(self._config.poll_interval_s, self._config.lease_s / 3)
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _renew_leases(self) -> None:
        """Keep the leases of running jobs ahead of the clock, a third of a lease at a time.

        A job can run longer than its lease (waiting its turn under DingTalk's rate limit, a
        slow ERP): without renewal another replica would claim it while it is still running
        here, and both would raise an instance.
        """
        lease = self._config.lease_s
        now = time.monotonic()
        if not self._tasks or now - self._renewed < lease / 3:
            return
        self._renewed = now
        leases = [(job.id, job.attempts) for job in self._tasks.values()]
        until = self._clock.now() + dt.timedelta(seconds=lease)
        try:
            async with self._db.write() as conn:
                await job_repo.renew(conn, leases, until)
        except Exception:
            log.exception("jobs: could not renew %d leases", len(leases))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        self._wake.set()

    def _room(self) -> tuple[int, list[str]]:
        """How many jobs one claim may take, and the kinds already at their share of workers.

        No kind runs on more than `KIND_SHARE` of the workers: creates waiting their turn under
        DingTalk's rate limit would otherwise hold every worker, and a decision's write-back
        would wait behind the whole backlog of creates (about 250 s behind 5,000 alerts).
        """
        share = max(1, int(self._config.workers * KIND_SHARE))
        running = Counter(job.kind for job in self._tasks.values())
        full = sorted(kind for kind, count in running.items() if count >= share)
        # One claim must not carry a kind past its share: take no more than the least room left.
        room = [share - count for count in running.values() if count < share]
        return min([share, *room]), full

    async def _claim(self, limit: int, skip_kinds: list[str]) -> list[JobRow]:
        now = self._clock.now()
        async with self._db.write() as conn:
            return await job_repo.claim(
                conn, limit, now, dt.timedelta(seconds=self._config.lease_s), skip_kinds
            )

    async def _run(self, job: JobRow) -> None:
        try:
            await self._attempt(job)
        except (DBAPIError, OSError) as exc:
            # The outcome could not be recorded; the lease runs out and the job is tried again.
            log.warning("jobs: %s job %d: cannot record its outcome: %s", job.kind, job.id, exc)

    async def _attempt(self, job: JobRow) -> None:
        outcome = await self._outcome(job)
        # Observer hook (metrics): told once the run's outcome is recorded.
        if self.observer is not None:
            try:
                self.observer(job, outcome)
            except Exception:
                log.exception("jobs: the observer failed")

    async def _outcome(self, job: JobRow) -> str:
        """Run the job and record what happened: `done`, `retry` or `parked`."""
        handler = self._handlers.get(job.kind)
        if handler is None:
            await self._park(job, None, f"no handler for job kind {job.kind!r}")
            return "parked"
        try:
            finished = await handler.run(job)
        except Permanent as exc:
            await self._park(job, handler, f"{type(exc).__name__}: {exc}")
            return "parked"
        except Retryable as exc:
            return await self._retry(job, handler, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A bug or an unclassified failure: retried like a transient one, and logged loudly.
            log.exception("jobs: %s job %d failed unexpectedly", job.kind, job.id)
            return await self._retry(job, handler, Retryable(f"{type(exc).__name__}: {exc}"))
        if not finished:
            async with self._db.write() as conn:
                await job_repo.finish(conn, job.id)
        return "done"

    async def _retry(self, job: JobRow, handler: JobHandler, exc: Retryable) -> str:
        now = self._clock.now()
        delay = backoff(job.attempts, self._config, self._rng)
        if exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        # Whatever a peer asks for, never wait past the deadline: past it, the job is parked.
        delay = min(delay, handler.deadline.total_seconds() + 1)
        at = now + dt.timedelta(seconds=delay)
        error = f"{type(exc).__name__}: {exc}"
        if at > job.created_at + handler.deadline:
            await self._park(
                job, handler, f"deadline passed after {job.attempts} attempts; last: {error}"
            )
            return "parked"
        level = logging.DEBUG if isinstance(exc, Throttled) else logging.INFO
        log.log(
            level,
            "jobs: %s job %d attempt %d failed (%s); retry in %.1f s",
            job.kind,
            job.id,
            job.attempts,
            error,
            delay,
        )
        async with self._db.write() as conn:
            await job_repo.reschedule(conn, job.id, at, error, now)
        return "retry"

    async def _park(self, job: JobRow, handler: JobHandler | None, error: str) -> None:
        log.warning("jobs: %s job %d parked: %s", job.kind, job.id, error)
        async with self._db.write() as conn:
            await job_repo.park(conn, job.id, error, self._clock.now())
            if handler is not None:
                await handler.parked(conn, job, error)
