"""Polls a native ERP and turns what changed into the canonical events of CONTRACT section 2."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from approvals.db import erp_state, price_repo, repo
from approvals.db.engine import Database
from approvals.db.erp_state import EPOCH, Tracked
from approvals.errors import BridgeError
from approvals.intake import IntakeResult
from approvals.models import (
    Cancellation,
    OrderCancelled,
    OrderSubmitted,
    StockBelowSafety,
)
from approvals.notices import enqueue_notice
from approvals.ports import Clock, Notice
from approvals.rules import Event, Outcome
from erp_adapter.native.base import Cursor, NativeErp, NativeOrder, OrderStatus, StockLevel

log = logging.getLogger(__name__)

UNUSABLE = "unusable"
"""Tracked status of a waiting order the bridge cannot raise (see `NativeOrder.problem`)."""

STOCK = "stock:"
"""Key prefix of tracked stock positions (orders are tracked by their ERP key)."""

_REASONS = {
    OrderStatus.OPEN: "sent back to draft in the ERP",
    OrderStatus.APPROVED: "approved in the ERP directly",
    OrderStatus.REJECTED: "cancelled in the ERP",
}


class Intake(Protocol):
    """Where polled events go (the same intake the webhook feeds)."""

    async def submit(self, event: Event) -> IntakeResult:
        """Store one event durably; raises `Overloaded` or `StorageUnavailable`."""
        ...


@dataclass(frozen=True)
class PollSettings:
    """How a poll reads: page size, and how far back each poll looks again."""

    page: int = 200
    overlap_s: float = 300.0
    """Re-read changes this far behind the cursor: an ERP transaction that commits late with an
    earlier modification time is still seen; repeats are recognised and send nothing."""


@dataclass
class PollReport:
    """What one poll did."""

    skipped: bool = False
    orders_read: int = 0
    events: dict[str, int] = field(default_factory=dict)
    prices: int = 0
    stock_positions: int = 0

    def count(self, kind: str) -> None:
        """One more event of this kind."""
        self.events[kind] = self.events.get(kind, 0) + 1


def position_key(material_code: str, warehouse: str) -> str:
    """The tracking key of one material in one warehouse."""
    return f"{STOCK}{material_code}\x1f{warehouse}"


class Poller:
    """One poll at a time across replicas: prices, then orders, then stock."""

    def __init__(
        self,
        erp: NativeErp,
        db: Database,
        intake: Intake,
        clock: Clock,
        settings: PollSettings = PollSettings(),
    ) -> None:
        self._erp = erp
        self._db = db
        self._intake = intake
        self._clock = clock
        self._settings = settings
        self._lock = asyncio.Lock()
        self._woken = asyncio.Event()
        self.last_error: str | None = None

    @property
    def source(self) -> str:
        """The ERP's short name."""
        return self._erp.name

    def wake(self) -> None:
        """Poll soon (an ERP webhook said something changed); hints close together share a poll."""
        self._woken.set()

    @contextlib.asynccontextmanager
    async def running(self, min_gap_s: float = 2.0) -> AsyncIterator[Poller]:
        """Serve `wake` with polls, at most one every `min_gap_s`, until the block ends."""
        task = asyncio.create_task(self._on_wake(min_gap_s), name=f"erp-poll-{self.source}")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _on_wake(self, min_gap_s: float) -> None:
        while True:
            await self._woken.wait()
            await asyncio.sleep(min_gap_s)
            self._woken.clear()
            await self.tick()

    async def tick(self) -> PollReport | None:
        """A scheduled poll: failures are logged and retried at the next tick, never raised."""
        try:
            report = await self.poll()
        except (BridgeError, OSError) as exc:
            # The cursor moved only past what was handled: the next tick goes on from there.
            if self.last_error is None:
                log.warning("%s poll failed, retried each tick: %s", self.source, exc)
            self.last_error = str(exc) or type(exc).__name__
            return None
        if self.last_error is not None:
            log.info("%s poll works again", self.source)
        self.last_error = None
        if report.events:
            log.info("%s poll: %s", self.source, report.events)
        return report

    async def poll(self) -> PollReport:
        """Read what changed since the last poll and report it; skipped if another replica is."""
        report = PollReport()
        async with self._lock, self._db.singleton(f"erp-poll:{self.source}") as mine:
            if not mine:
                report.skipped = True
                return report
            # Prices first: the approvals raised for this poll's orders show them.
            await self._prices(report)
            await self._orders(report)
            await self._stock(report)
        return report

    def _start(self, stored: Cursor) -> Cursor:
        at, _ = stored
        if at <= EPOCH:
            return stored
        return (at - dt.timedelta(seconds=self._settings.overlap_s), "")

    async def _orders(self, report: PollReport) -> None:
        async with self._db.read() as conn:
            stored = await erp_state.cursor(conn, self.source, "orders")
        after = self._start(stored)
        while True:
            page = await self._erp.orders_since(after, self._settings.page)
            if not page:
                break
            report.orders_read += len(page)
            await self._handle_orders(page, report)
            after = (page[-1].modified, page[-1].key)
            async with self._db.write() as conn:
                await erp_state.set_cursor(
                    conn, self.source, "orders", after[0], after[1], self._clock.now()
                )
            if len(page) < self._settings.page:
                break

    async def _handle_orders(self, page: Sequence[NativeOrder], report: PollReport) -> None:
        async with self._db.read() as conn:
            known = await erp_state.tracked(conn, self.source, [o.key for o in page])
        seen: list[Tracked] = []
        for order in page:
            change = await self._order_change(order, known.get(order.key), report)
            if change is not None:
                known[order.key] = change
                seen.append(change)
        async with self._db.write() as conn:
            await erp_state.remember(conn, self.source, seen, self._clock.now())

    async def _order_change(
        self, order: NativeOrder, was: Tracked | None, report: PollReport
    ) -> Tracked | None:
        """Report one order if it changed in a way approvers must hear of; what to remember."""
        if was is not None and order.modified < was.modified:
            return None  # a read older than what we know
        fingerprint = order.fingerprint()
        status = order.status
        if status is OrderStatus.PENDING and order.order is None:
            return await self._unusable(order, was, fingerprint, report)
        if status is OrderStatus.PENDING:
            fresh = was is None or was.status != OrderStatus.PENDING.value
            if fresh and was is not None and order.modified <= was.modified:
                # Waiting again, but no later than our own write-back recorded the decision: a
                # read from before it (a poll beside the write-back), not a new submission.
                return None
            if not fresh and was is not None and was.fingerprint == fingerprint:
                return _track(order, was.revision, fingerprint)
            revision = 1 if was is None else was.revision + 1
            revision = await self._submit_order(order, revision, fingerprint, report)
            return _track(order, revision, fingerprint)
        if was is None:
            return None  # never waiting for approval while we watched: not ours
        if was.status == OrderStatus.PENDING.value:
            reason = _REASONS[status]
            await self._submit(_cancellation(self.source, order, was.revision, reason), report)
        return _track(order, was.revision, was.fingerprint)

    async def _unusable(
        self, order: NativeOrder, was: Tracked | None, fingerprint: str, report: PollReport
    ) -> Tracked:
        """A waiting order the bridge cannot raise: tell admins once per state of the document.

        A pending approval for an earlier revision is withdrawn: approvers must not decide on
        what the ERP no longer holds. Fixed in the ERP, the order is raised as the next revision.
        """
        revision = 0 if was is None else was.revision
        if was is not None and was.fingerprint == fingerprint:
            return _track(order, revision, fingerprint, UNUSABLE)
        if was is not None and was.status == OrderStatus.PENDING.value:
            reason = f"cannot be raised any more: {order.problem}"
            await self._submit(_cancellation(self.source, order, revision, reason), report)
        notice = Notice(
            kind="erp_document_unusable",
            text=f"{self.source} purchase order {order.doc_no} waits for approval but cannot "
            f"be raised in DingTalk: {order.problem}. Fix it in {self.source}; the next poll "
            "raises it.",
            doc_no=order.doc_no,
        )
        async with self._db.write() as conn:
            await enqueue_notice(conn, notice, self._clock.now())
        log.warning("%s %s cannot be raised: %s", self.source, order.doc_no, order.problem)
        return _track(order, revision, fingerprint, UNUSABLE)

    async def _submit_order(
        self, order: NativeOrder, revision: int, fingerprint: str, report: PollReport
    ) -> int:
        """Submit a revision; if intake already knows a later one, number after it."""
        assert order.order is not None  # unusable orders are never submitted
        for _ in range(2):
            event = OrderSubmitted(
                # From the revision and the content: a poll repeated after a crash sends the
                # same id again, and intake answers it as a duplicate.
                event_id=f"{self.source}:{order.key}:r{revision}:{fingerprint[:16]}",
                type="purchase_order.submitted" if revision == 1 else "purchase_order.changed",
                occurred_at=order.modified,
                data=order.order.model_copy(update={"revision": revision}),
            )
            result = await self._submit(event, report)
            if result.outcome is not Outcome.STALE_REVISION or result.approval_id is None:
                return revision
            # Our record is behind intake's (restored from a backup, say): continue after it.
            async with self._db.read() as conn:
                rows = await repo.revisions_of(conn, result.approval_id)
            revision = max((r.revision for r in rows), default=revision) + 1
            log.warning("%s %s: revisions resume at %d", self.source, order.doc_no, revision)
        return revision

    async def _submit(self, event: Event, report: PollReport) -> IntakeResult:
        result = await self._intake.submit(event)
        report.count(f"{event.type}:{result.outcome.value}")
        return result

    async def _stock(self, report: PollReport) -> None:
        levels = await self._erp.stock_levels()
        report.stock_positions = len(levels)
        async with self._db.read() as conn:
            known = {t.key: t for t in await erp_state.tracked_prefix(conn, self.source, STOCK)}
        now = self._clock.now()
        changed: list[Tracked] = []
        for level in levels:
            alert = level.alert
            key = position_key(alert.material_code, alert.warehouse)
            was = known.get(key)
            episode = 0 if was is None else was.revision
            if level.low and (was is None or was.status != "low"):
                episode += 1
                await self._submit(_stock_event(self.source, level, episode, now), report)
                changed.append(Tracked(key, alert.material_code, episode, "", "low", now))
            elif not level.low and was is not None and was.status == "low":
                changed.append(Tracked(key, alert.material_code, episode, "", "ok", now))
        async with self._db.write() as conn:
            await erp_state.remember(conn, self.source, changed, now)

    async def _prices(self, report: PollReport) -> None:
        async with self._db.read() as conn:
            stored = await erp_state.cursor(conn, self.source, "prices")
        after = self._start(stored)
        while True:
            points = await self._erp.prices_since(after, self._settings.page)
            if not points:
                break
            after = points[-1].cursor
            async with self._db.write() as conn:
                report.prices += await price_repo.upsert(conn, [p.row for p in points])
                await erp_state.set_cursor(
                    conn, self.source, "prices", after[0], after[1], self._clock.now()
                )
            if len(points) < self._settings.page:
                break


def _track(
    order: NativeOrder, revision: int, fingerprint: str, status: str | None = None
) -> Tracked:
    return Tracked(
        order.key,
        order.doc_no,
        revision,
        fingerprint,
        status or order.status.value,
        order.modified,
    )


def _cancellation(source: str, order: NativeOrder, revision: int, reason: str) -> OrderCancelled:
    return OrderCancelled(
        event_id=f"{source}:{order.key}:r{revision}:cancel",
        type="purchase_order.cancelled",
        occurred_at=order.modified,
        data=Cancellation(doc_no=order.doc_no, revision=revision, reason=reason),
    )


def _stock_event(
    source: str, level: StockLevel, episode: int, now: dt.datetime
) -> StockBelowSafety:
    alert = level.alert
    return StockBelowSafety(
        # One id per time the position falls below its safety stock.
        event_id=f"{source}:stock:{alert.material_code}:{alert.warehouse}:{episode}",
        type="stock.below_safety",
        occurred_at=now,
        data=alert,
    )
