"""Writing decisions back to the ERP: at least once, one key per revision, classified outcomes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from approvals import failpoints
from approvals.db import jobs as job_repo
from approvals.db import repo
from approvals.db.engine import Database
from approvals.db.jobs import JobRow
from approvals.db.repo import RevisionRow
from approvals.errors import Conflict
from approvals.models import ApproverAction, Decision, DocType, StockAlert
from approvals.notices import enqueue_notice
from approvals.outcomes import enqueue_outcome
from approvals.ports import Clock, ErpWriteBack, Notice, WriteBack
from approvals.states import State, Trigger

WRITE_BACK = "write_back"
ACTOR = "bridge"


def write_back_for(row: RevisionRow) -> WriteBack:
    """The write-back message for a decided revision."""
    assert row.decision is not None and row.decided_at is not None and row.instance_id is not None
    material_code: str | None = None
    warehouse: str | None = None
    quantity: Decimal | None = None
    if row.doc_type is DocType.REPLENISHMENT:
        alert = StockAlert.model_validate(row.document)
        material_code, warehouse, quantity = alert.material_code, alert.warehouse, alert.reorder_qty
    return WriteBack(
        approval_id=row.approval_id,
        doc_type=row.doc_type,
        doc_no=row.doc_no,
        revision=row.revision,
        decision=Decision(row.decision),
        process_instance_id=row.instance_id,
        decided_at=row.decided_at,
        approvers=tuple(ApproverAction.model_validate(a) for a in row.approvers or ()),
        material_code=material_code,
        warehouse=warehouse,
        quantity=quantity,
    )


class WriteBackHandler:
    """Tells the ERP a decision until it acknowledges, refuses, or the deadline passes."""

    def __init__(
        self, db: Database, clock: Clock, erp: ErpWriteBack, deadline: dt.timedelta
    ) -> None:
        self._db = db
        self._clock = clock
        self._erp = erp
        self.deadline = deadline

    async def run(self, job: JobRow) -> bool:
        """Move the revision to writing_back, deliver, then record the ERP's answer."""
        assert job.approval_id is not None and job.revision is not None
        async with self._db.write() as conn:
            row = await repo.get_revision(conn, job.approval_id, job.revision)
            if row is None:
                return False
            if row.state in (State.APPROVED, State.REJECTED):
                if not await repo.move(
                    conn,
                    row.approval_id,
                    row.revision,
                    row.state,
                    Trigger.WRITE_BACK,
                    self._clock.now(),
                    ACTOR,
                ):
                    return False
            elif row.state is not State.WRITING_BACK:
                # Superseded or cancelled before it went out; the decision stays in the audit.
                return False
        message = write_back_for(row)
        try:
            receipt = await self._erp.write_back(message)
            failpoints.reach("writeback.acknowledged")
        except Conflict as exc:
            await self._finish(job, row, Trigger.CONFLICT, {"error": str(exc)}, last_error=str(exc))
            return True
        await self._finish(
            job, row, Trigger.ACKNOWLEDGED, {"erp_ref": receipt.erp_ref}, erp_ref=receipt.erp_ref
        )
        return True

    async def _finish(
        self,
        job: JobRow,
        row: RevisionRow,
        trigger: Trigger,
        detail: dict[str, str | None],
        **fields: str | None,
    ) -> None:
        now = self._clock.now()
        async with self._db.write() as conn:
            moved = await repo.move(
                conn,
                row.approval_id,
                row.revision,
                State.WRITING_BACK,
                trigger,
                now,
                ACTOR,
                detail,
                **fields,
            )
            if moved and trigger is Trigger.CONFLICT:
                text = (
                    f"{row.doc_no} changed in the ERP after approvers decided on revision "
                    f"{row.revision}; "
                    "the decision was not applied (stale). Submit the document again."
                )
                await enqueue_notice(conn, Notice("stale", text, row.approval_id, row.doc_no), now)
            await enqueue_outcome(conn, row, now)
            await job_repo.finish(conn, job.id)

    async def parked(self, conn: AsyncConnection, job: JobRow, error: str) -> None:
        """Refused or unreachable past the deadline: the revision fails and admins are told."""
        assert job.approval_id is not None and job.revision is not None
        now = self._clock.now()
        row = await repo.get_revision(conn, job.approval_id, job.revision)
        if row is None or row.state is not State.WRITING_BACK:
            return
        if not await repo.move(
            conn,
            row.approval_id,
            row.revision,
            State.WRITING_BACK,
            Trigger.WRITE_BACK_FAILED,
            now,
            ACTOR,
            {"error": error},
            last_error=error,
        ):
            return  # another run of this job parked it (and told the admins) meanwhile
        text = (
            f"Write-back of {row.doc_no} (revision {row.revision}) failed: {error}. "
            f"Use `retry {row.doc_no}` once fixed."
        )
        await enqueue_notice(
            conn, Notice("write_back_failed", text, row.approval_id, row.doc_no), now
        )
