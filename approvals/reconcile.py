"""Reconciliation: find decisions whose events never arrived, with as few metered calls as we can.

DingTalk meters calls (5,000 a month for a standard organisation), so we never poll each
pending instance. A sweep lists the ids of instances of each process that are finished and were
started since a cutoff (20 ids a call), and fetches only those we still hold as pending. The
few pending instances older than the cutoff are fetched one by one instead: one forgotten
approval a week old would otherwise make every sweep relist a week of instances. Sweeps run
when there is reason to think events were lost (the stream reconnected), and otherwise at a
slow safety cadence; `sync` forces one.
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from approvals.config import ApprovalsConfig
from approvals.db import repo
from approvals.db.engine import Database
from approvals.decisions import DecisionOutcome, DecisionService
from approvals.models import Decision, DecisionReport, DocType
from approvals.ports import Clock, InstanceDirectory, InstanceSnapshot

log = logging.getLogger(__name__)

MARGIN = dt.timedelta(minutes=2)
"""Instances are created a moment after we record the revision: look this much further back."""
PAGE = 20
"""Instance ids per list call (spec section 3.6)."""
MAX_ONE_BY_ONE = 50
"""At most this many of the oldest pending instances are fetched one by one per sweep."""


def sweep_cost(pending: Sequence[dt.datetime], instances: Sequence[dt.datetime], k: int) -> int:
    """Calls to fetch the k oldest pending instances one by one and list from the next one.

    `pending` and `instances` (every instance of the process we raised since the oldest pending
    one, an estimate of what a listing returns) are sorted times; a list call returns 20 ids.
    """
    if k == len(pending):
        return k
    listed = len(instances) - bisect.bisect_left(instances, pending[k] - MARGIN)
    return k + max(1, -(-listed // PAGE))


def cheapest_cutoff(pending: Sequence[dt.datetime], instances: Sequence[dt.datetime]) -> int:
    """How many of the oldest pending instances to fetch one by one, for the fewest calls."""
    choices = range(min(len(pending), MAX_ONE_BY_ONE) + 1)
    return min(choices, key=lambda k: sweep_cost(pending, instances, k))


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
        # Cleared before, not after: a gap that opens while we sweep needs another sweep.
        self._gap = False
        try:
            return await self._sweep()
        except BaseException:
            # Not swept (DingTalk failing, its quota spent): the next tick tries again rather
            # than wait out the safety interval with the lost decisions unapplied.
            self._gap = True
            raise

    async def _sweep(self) -> SweepReport:
        now = self._clock.now()
        async with self._db.read() as conn:
            pending = await repo.pending_instances(conn)
        held = {instance_id for instance_id, _, _ in pending}
        listed = fetched = applied = 0
        for doc_type in DocType:
            mine = sorted((created, iid) for iid, kind, created in pending if kind is doc_type)
            code = self._process_code(doc_type)
            if not mine or not code:
                continue
            async with self._db.read() as conn:
                started = await repo.instance_times(conn, doc_type, mine[0][0] - MARGIN)
            k = cheapest_cutoff([created for created, _ in mine], started)
            one_by_one = [instance_id for _, instance_id in mine[:k]]
            if k < len(mine):
                ids = await self._directory.finished_ids(code, mine[k][0] - MARGIN)
                listed += len(ids)
                one_by_one += [i for i in ids if i in held and i not in one_by_one]
            for instance_id in one_by_one:
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
