"""ERP event intake with group commit: concurrent events share one transaction, then answered."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from approvals import failpoints
from approvals.config import IntakeConfig
from approvals.db import repo
from approvals.db.effects import apply_effects
from approvals.db.engine import Database
from approvals.errors import ConcurrentChange, Overloaded, StorageUnavailable
from approvals.ids import new_id
from approvals.models import StockBelowSafety
from approvals.ports import Clock
from approvals.rules import DocView, Effect, Event, Outcome, Verdict, decide, fold_key

log = logging.getLogger(__name__)

ACTOR = "erp"


@dataclass(frozen=True)
class IntakeResult:
    """How one event was answered."""

    outcome: Outcome
    approval_id: str | None


_Item = tuple[Event, "asyncio.Future[IntakeResult]"]


class IntakeService:
    """Accepts ERP events and commits them in groups; one writer task per process."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        config: IntakeConfig,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._config = config
        self._on_commit = on_commit
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._accepting = False

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[IntakeService]:
        """Run the writer task; on exit, stop taking events and commit what was queued."""
        self._accepting = True
        task = asyncio.create_task(self._writer(), name="intake-writer")
        try:
            yield self
        finally:
            self._accepting = False
            await self._queue.join()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def queued(self) -> int:
        """Events waiting for the writer."""
        return self._queue.qsize()

    async def submit(self, event: Event) -> IntakeResult:
        """Store one event durably; raises `Overloaded` or `StorageUnavailable`."""
        if not self._accepting or self._queue.qsize() >= self._config.max_queue:
            raise Overloaded(self._config.retry_after_s)
        future: asyncio.Future[IntakeResult] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((event, future))
        return await future

    async def _writer(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._config.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit_batch(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit_batch(self, batch: list[_Item]) -> None:
        live = [(event, fut) for event, fut in batch if not fut.done()]
        if not live:
            return
        try:
            results = await self._apply_with_retry([event for event, _ in live])
        except (DBAPIError, OSError) as exc:  # OSError: TimeoutError (no turn to write) too
            log.warning("intake: %d events not stored: %s", len(live), exc)
            results = [StorageUnavailable(f"storage unavailable: {type(exc).__name__}")] * len(live)
        except Exception:
            # A bug must not kill the one writer task: every later event would wait forever.
            log.exception("intake: %d events not stored after an unexpected error", len(live))
            results = [StorageUnavailable("internal error; nothing stored")] * len(live)
        if any(isinstance(r, IntakeResult) for r in results):
            self._on_commit()
        for (_, fut), result in zip(live, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, IntakeResult):
                fut.set_result(result)
            else:
                fut.set_exception(result)

    async def _apply_with_retry(
        self, events: list[Event]
    ) -> list[IntakeResult | StorageUnavailable]:
        """Commit the batch; if that fails, one by one, so one bad event cannot sink the others.

        A lost race with another replica (a compare-and-set or a unique key) is retried; an
        event the database refuses (DataError) fails alone.
        """
        for _ in range(3):
            try:
                return list(await self._apply(events))
            except (ConcurrentChange, IntegrityError):
                continue
            except DataError:
                break
        return [await self._apply_one(event) for event in events]

    async def _apply_one(self, event: Event) -> IntakeResult | StorageUnavailable:
        for _ in range(5):
            try:
                [result] = await self._apply([event])
                return result
            except (ConcurrentChange, IntegrityError):
                continue
            except DataError as exc:
                log.warning("intake: event %s refused by the database: %s", event.event_id, exc)
                return StorageUnavailable("the database refused this event")
        return StorageUnavailable("write conflict persisted")

    async def _apply(self, events: Sequence[Event]) -> list[IntakeResult]:
        now = self._clock.now()
        lock = not self._db.is_sqlite
        # An ERP waits on the answer: never queue behind every other writer of a locked file.
        return await self._db.write_sync(
            lambda conn: _apply_batch(conn, events, now, lock), lock_wait_s=self._db.lock_timeout_s
        )


def _apply_batch(
    conn: Connection, events: Sequence[Event], now: dt.datetime, lock: bool
) -> list[IntakeResult]:
    """Decide and write one batch in one transaction; raises `ConcurrentChange` if a move lost."""
    doc_nos = sorted({e.data.doc_no for e in events if not isinstance(e, StockBelowSafety)})
    keys = sorted(
        {
            fold_key(e.data.material_code, e.data.warehouse)
            for e in events
            if isinstance(e, StockBelowSafety)
        }
    )
    seen = repo.seen_events(conn, sorted({e.event_id for e in events}))
    by_doc, by_fold = repo.load_views(conn, doc_nos, keys, lock=lock)
    results: list[IntakeResult] = []
    effects: list[Effect] = []
    recorded: list[dict[str, object]] = []
    for event in events:
        known = seen.get(event.event_id)
        if known is not None:
            results.append(IntakeResult(Outcome.DUPLICATE, known[0]))
            continue
        verdict = decide(event, _view_for(event, by_doc, by_fold), new_id)
        results.append(IntakeResult(verdict.outcome, verdict.approval_id))
        if verdict.outcome is not Outcome.ACCEPTED:
            continue
        effects.extend(verdict.effects)
        _remember(event, verdict, by_doc, by_fold)
        assert verdict.approval_id is not None and verdict.revision is not None
        seen[event.event_id] = (verdict.approval_id, verdict.revision)
        recorded.append(
            {
                "event_id": event.event_id,
                "type": event.type,
                "approval_id": verdict.approval_id,
                "revision": verdict.revision,
                "occurred_at": event.occurred_at,
                "received_at": now,
            }
        )
    if not apply_effects(conn, effects, now, ACTOR):
        raise ConcurrentChange("a revision changed while intake was deciding")
    repo.record_events(conn, recorded)
    failpoints.reach("intake.before_commit")
    return results


def _view_for(
    event: Event, by_doc: dict[str, DocView], by_fold: dict[str, DocView]
) -> DocView | None:
    if isinstance(event, StockBelowSafety):
        return by_fold.get(fold_key(event.data.material_code, event.data.warehouse))
    return by_doc.get(event.data.doc_no)


def _remember(
    event: Event, verdict: Verdict, by_doc: dict[str, DocView], by_fold: dict[str, DocView]
) -> None:
    """Let later events in the same batch see what this one did."""
    if verdict.view is None:
        return
    if isinstance(event, StockBelowSafety):
        by_fold[fold_key(event.data.material_code, event.data.warehouse)] = verdict.view
    else:
        by_doc[event.data.doc_no] = verdict.view
