"""Reconciliation: find decisions whose events never arrived, with as few metered calls as we can.

DingTalk meters calls (about 10,000 a month for a standard organisation), so we never poll each
pending instance. A sweep lists the ids of instances of each process that are finished and were
started since our oldest pending one (20 ids a call), and fetches only those we still hold as
pending. Sweeps run when there is reason to think events were lost (the stream reconnected),
and otherwise at a slow safety cadence; `sync` forces one.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from approvals.config import ApprovalsConfig
from approvals.db import repo
from approvals.db.engine import Database
from approvals.decisions import DecisionOutcome, DecisionService
from approvals.models import Decision, DecisionReport, DocType
from approvals.ports import Clock, InstanceDirectory, InstanceSnapshot

log = logging.getLogger(__name__)

# Instances are created a moment after we record the revision; look a little further back.
_MARGIN = dt.timedelta(minutes=2)


@dataclass(frozen=True)
class SweepReport:
    """What one sweep found."""

    pending: int
    listed: int
    fetched: int
    applied: int
    at: dt.datetime


class Reconciler:
    """Applies missed decisions through the same use cases as events."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        directory: InstanceDirectory,
        decisions: DecisionService,
        approvals: ApprovalsConfig,
        sweep_every: dt.timedelta,
    ) -> None:
        self._db = db
        self._clock = clock
        self._directory = directory
        self._decisions = decisions
        self._approvals = approvals
        self._sweep_every = sweep_every
        self._gap = True  # nothing is known about events before this process started
        self.last: SweepReport | None = None

    def events_may_be_missing(self) -> None:
        """Note a gap in event delivery (a reconnect): the next tick sweeps."""
        self._gap = True

    async def tick(self) -> SweepReport | None:
        """The scheduled check: sweep only after a gap or when the safety interval has passed."""
        due = (
            self._gap or self.last is None or self._clock.now() - self.last.at >= self._sweep_every
        )
        return await self.sweep() if due else None

    async def sweep(self) -> SweepReport:
        """List finished instances since the oldest pending one and apply what we missed."""
        now = self._clock.now()
        self._gap = False
        async with self._db.read() as conn:
            pending = await repo.pending_instances(conn)
        held = {instance_id for instance_id, _, _ in pending}
        listed = fetched = applied = 0
        for doc_type in DocType:
            times = [created for _, kind, created in pending if kind is doc_type]
            code = self._process_code(doc_type)
            if not times or not code:
                continue
            ids = await self._directory.finished_ids(code, min(times) - _MARGIN)
            listed += len(ids)
            for instance_id in ids:
                if instance_id not in held:
                    continue
                fetched += 1
                applied += await self._apply(await self._directory.snapshot(instance_id), now)
        report = SweepReport(len(pending), listed, fetched, applied, now)
        self.last = report
        if applied:
            log.info(
                "reconcile: applied %d missed outcomes (%d pending, %d listed)",
                applied,
                len(pending),
                listed,
            )
        return report

    def _process_code(self, doc_type: DocType) -> str:
        process = (
            self._approvals.purchase_order
            if doc_type is DocType.PURCHASE_ORDER
            else self._approvals.replenishment
        )
        return process.process_code

    async def _apply(self, snapshot: InstanceSnapshot, now: dt.datetime) -> int:
        key = f"reconcile:{snapshot.instance_id}"
        if snapshot.status == "TERMINATED":
            result = await self._decisions.terminated(snapshot.instance_id, key, actor="reconcile")
        elif snapshot.status == "COMPLETED" and snapshot.result in ("agree", "refuse"):
            report = DecisionReport(
                instance_id=snapshot.instance_id,
                decision=Decision.APPROVED if snapshot.result == "agree" else Decision.REJECTED,
                decided_at=snapshot.finished_at or now,
                approvers=snapshot.approvers,
                event_key=key,
            )
            result = await self._decisions.apply(report, actor="reconcile")
        else:
            return 0
        return 1 if result.outcome is DecisionOutcome.APPLIED else 0
