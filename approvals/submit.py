"""Raising and terminating approval instances: the outbox handlers that talk to the gateway."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from approvals import failpoints
from approvals.config import PriceConfig
from approvals.db import jobs as job_repo
from approvals.db import price_repo, repo
from approvals.db.engine import Database
from approvals.db.jobs import JobRow
from approvals.db.repo import RevisionRow
from approvals.decisions import apply_held
from approvals.errors import Retryable, Throttled
from approvals.models import DocType, PurchaseOrder, StockAlert
from approvals.notices import enqueue_notice
from approvals.ports import ApprovalGateway, Clock, InstanceRequest, Notice, Window
from approvals.prices import PriceContext, price_context
from approvals.rules import TERMINATE_INSTANCE
from approvals.states import State, Trigger

log = logging.getLogger(__name__)

ACTOR = "bridge"
UNSURE, ACCOUNTED = "unsure", "accounted"
"""Payload keys of a create job: the windows of create calls whose outcome is unknown, and the
attempt through which they are complete (a crash in a later attempt leaves it behind)."""
LATE = dt.timedelta(seconds=10)
"""A request DingTalk received may complete a little after the caller stopped waiting for it."""


def unsure(job: JobRow) -> list[Window] | None:
    """Where an instance raised by an earlier attempt may be: the windows of its create calls
    whose outcome is unknown ([] when none), or None when that is not known (look everywhere).

    Each attempt notes its own before it fails; a crash leaves the note behind the attempt
    count, and an admin's retry asks to look first.
    """
    payload = job.payload
    if payload.get("look_first") or payload.get(ACCOUNTED, 0) != job.attempts - 1:
        return None
    return [
        (dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end))
        for start, end in payload.get(UNSURE, [])
    ]


class CreateInstanceHandler:
    """Raises the instance for a revision, never twice (DESIGN.md section 3)."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        gateway: ApprovalGateway,
        prices: PriceConfig,
        deadline: dt.timedelta,
    ) -> None:
        self._db = db
        self._clock = clock
        self._gateway = gateway
        self._prices = prices
        self.deadline = deadline

    async def run(self, job: JobRow) -> bool:
        """Mark the revision submitting, find or create its instance, record it."""
        assert job.approval_id is not None and job.revision is not None
        async with self._db.write() as conn:
            row = await repo.get_revision(conn, job.approval_id, job.revision)
            if row is None:
                return False
            if row.state is State.RECEIVED and not await repo.move(
                conn,
                row.approval_id,
                row.revision,
                State.RECEIVED,
                Trigger.SUBMIT,
                self._clock.now(),
                ACTOR,
            ):
                row = await repo.get_revision(conn, job.approval_id, job.revision)
                assert row is not None
        # The move above is committed before DingTalk is called: from here on a crash leaves a
        # `submitting` revision whose instance may exist, so later runs look before creating.
        search = unsure(job)
        if row.state not in (State.RECEIVED, State.SUBMITTING):
            if row.instance_id is None and search != []:
                await self._clean_up_orphan(job, row, search)
            return False
        request = await self._request(row)
        instance_id = None
        try:
            if search != []:
                instance_id = await self._gateway.find_instance(request, search)
            if instance_id is None:
                search = []  # nothing raised before: only this call may raise one
                started = self._clock.now()
                try:
                    instance_id = await self._gateway.create_instance(request)
                except Throttled:
                    raise  # refused before it ran: nothing raised
                except Retryable:
                    search = [(started, self._clock.now() + LATE)]
                    raise
                failpoints.reach("create.returned")
        except Retryable:
            if search is not None:
                await self._account(job, search)
            raise
        await self._record(job, row, instance_id)
        return True

    async def _account(self, job: JobRow, search: Sequence[Window]) -> None:
        """Note, for the next attempt, the create calls that may have raised an instance."""
        windows = [[start.isoformat(), end.isoformat()] for start, end in search]
        payload = {**job.payload, UNSURE: windows, ACCOUNTED: job.attempts}
        async with self._db.write() as conn:
            await job_repo.set_payload(conn, job.id, payload)

    async def _record(self, job: JobRow, row: RevisionRow, instance_id: str) -> None:
        now = self._clock.now()
        async with self._db.write() as conn:
            created = await repo.move(
                conn,
                row.approval_id,
                row.revision,
                State.SUBMITTING,
                Trigger.INSTANCE_CREATED,
                now,
                ACTOR,
                {"instance_id": instance_id},
                instance_id=instance_id,
            )
            if created:
                pending = await repo.get_revision(conn, row.approval_id, row.revision)
                assert pending is not None
                await apply_held(conn, pending, now, self._prices)
            else:
                # Superseded or cancelled while DingTalk was creating it: keep the id, terminate it.
                await _attach_and_terminate(conn, row, instance_id, now, self._prices)
            await job_repo.finish(conn, job.id)

    async def _clean_up_orphan(
        self, job: JobRow, row: RevisionRow, search: Sequence[Window] | None
    ) -> None:
        """A retired revision whose earlier create may have gone through unrecorded: end it."""
        instance_id = await self._gateway.find_instance(await self._request(row), search)
        if instance_id is not None:
            async with self._db.write() as conn:
                await _attach_and_terminate(conn, row, instance_id, self._clock.now(), self._prices)

    async def _request(self, row: RevisionRow) -> InstanceRequest:
        return await instance_request(self._db, row, self._prices, self._clock.now())

    async def parked(self, conn: AsyncConnection, job: JobRow, error: str) -> None:
        """The instance could not be raised: the revision fails visibly and admins are told."""
        assert job.approval_id is not None and job.revision is not None
        now = self._clock.now()
        row = await repo.get_revision(conn, job.approval_id, job.revision)
        if row is None or row.state is not State.SUBMITTING:
            return
        await repo.move(
            conn,
            row.approval_id,
            row.revision,
            State.SUBMITTING,
            Trigger.SUBMIT_FAILED,
            now,
            ACTOR,
            {"error": error},
            last_error=error,
        )
        text = f"Could not raise the approval for {row.doc_no} (revision {row.revision}): {error}"
        await enqueue_notice(conn, Notice("submit_failed", text, row.approval_id, row.doc_no), now)


async def _attach_and_terminate(
    conn: AsyncConnection, row: RevisionRow, instance_id: str, now: dt.datetime, prices: PriceConfig
) -> None:
    """Record the instance of a retired revision and ask for it to be terminated."""
    await repo.set_instance(conn, row.approval_id, row.revision, instance_id, now)
    detail = {"instance_id": instance_id}
    await repo.append_audit(
        conn,
        [repo.audit_row(row.approval_id, row.revision, now, ACTOR, "late_instance", detail=detail)],
    )
    await job_repo.enqueue(conn, [(TERMINATE_INSTANCE, row.approval_id, row.revision, {})], now)
    retired = await repo.get_revision(conn, row.approval_id, row.revision)
    assert retired is not None
    # A decision already heard for it is audited as late, never written back.
    await apply_held(conn, retired, now, prices)


class TerminateHandler:
    """Terminates the instance of a superseded or cancelled revision."""

    def __init__(
        self, db: Database, clock: Clock, gateway: ApprovalGateway, deadline: dt.timedelta
    ) -> None:
        self._db = db
        self._clock = clock
        self._gateway = gateway
        self.deadline = deadline

    async def run(self, job: JobRow) -> bool:
        """Terminate, if there is an instance to terminate."""
        assert job.approval_id is not None and job.revision is not None
        async with self._db.read() as conn:
            row = await repo.get_revision(conn, job.approval_id, job.revision)
        if row is None or row.instance_id is None:
            return False
        default = (
            "superseded by a newer revision"
            if row.state is State.SUPERSEDED
            else "cancelled in the ERP"
        )
        reason = str(job.payload.get("reason") or default)
        await self._gateway.terminate_instance(row.instance_id, reason)
        return False

    async def parked(self, conn: AsyncConnection, job: JobRow, error: str) -> None:
        """A live instance of a retired revision is left: tell admins to withdraw it by hand."""
        text = f"Could not terminate the approval instance of approval {job.approval_id}: {error}"
        await enqueue_notice(
            conn, Notice("terminate_failed", text, job.approval_id), self._clock.now()
        )


async def instance_request(
    db: Database, row: RevisionRow, prices: PriceConfig, now: dt.datetime
) -> InstanceRequest:
    """The revision as its approvers see it, with each line's price context as of `now`."""
    document: PurchaseOrder | StockAlert
    contexts: tuple[PriceContext, ...] = ()
    if row.doc_type is DocType.PURCHASE_ORDER:
        document = PurchaseOrder.model_validate(row.document)
        since = now - dt.timedelta(days=prices.lookback_days)
        codes = sorted({line.material_code for line in document.lines})
        async with db.read() as conn:
            stats = await price_repo.load_stats(conn, codes, since)
        pct = prices.warn_above_average_pct
        contexts = tuple(
            price_context(line, stats.get(line.material_code), pct) for line in document.lines
        )
    else:
        document = StockAlert.model_validate(row.document)
    return InstanceRequest(
        approval_id=row.approval_id,
        revision=row.revision,
        doc_type=row.doc_type,
        doc_no=row.doc_no,
        document=document,
        prices=contexts,
        received_at=row.created_at,
    )
