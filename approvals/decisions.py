"""Decisions heard from the approval system, and admins' retries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.config import PriceConfig
from approvals.db import inbox, price_repo, repo
from approvals.db import jobs as job_repo
from approvals.db.engine import Database
from approvals.db.repo import RevisionRow
from approvals.errors import NotFound
from approvals.models import ApproverAction, Decision, DecisionReport, DocType, PurchaseOrder
from approvals.notices import enqueue_notice
from approvals.ports import Clock, Notice
from approvals.rules import CREATE_INSTANCE
from approvals.states import State, Trigger
from approvals.writeback import WRITE_BACK


class DecisionOutcome(StrEnum):
    """What became of a reported decision."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    LATE = "late"
    """For a superseded or cancelled revision: audited, never written back."""
    HELD = "held"
    """For an instance whose id we have not recorded yet: applied when we do."""
    IGNORED = "ignored"
    """About an instance that is not ours, or already retired."""


@dataclass(frozen=True)
class DecisionResult:
    """The outcome and the revision it concerned."""

    outcome: DecisionOutcome
    approval_id: str | None = None
    revision: int | None = None


async def apply_decision(
    conn: AsyncConnection,
    row: RevisionRow,
    report: DecisionReport,
    now: dt.datetime,
    actor: str,
    prices: PriceConfig,
) -> DecisionResult:
    """Apply a decision to the revision its instance belongs to, inside the caller's transaction."""
    if row.state is not State.PENDING:
        late = row.state in (State.SUPERSEDED, State.CANCELLED)
        detail = {"decision": report.decision.value, "instance_id": report.instance_id}
        action = "late_decision" if late else "repeated_decision"
        await repo.append_audit(
            conn, [repo.audit_row(row.approval_id, row.revision, now, actor, action, detail=detail)]
        )
        outcome = DecisionOutcome.LATE if late else DecisionOutcome.DUPLICATE
        return DecisionResult(outcome, row.approval_id, row.revision)
    trigger = Trigger.APPROVE if report.decision is Decision.APPROVED else Trigger.REJECT
    # Approvers' own actions, heard one by one as task events, unless the report carries them.
    approvers = [a.model_dump(mode="json") for a in report.approvers] or row.approvers or []
    await repo.move(
        conn,
        row.approval_id,
        row.revision,
        State.PENDING,
        trigger,
        now,
        actor,
        {"instance_id": report.instance_id},
        decision=report.decision.value,
        decided_at=report.decided_at,
        approvers=approvers,
    )
    await job_repo.enqueue(conn, [(WRITE_BACK, row.approval_id, row.revision, {})], now)
    if (
        report.decision is Decision.APPROVED
        and row.doc_type is DocType.PURCHASE_ORDER
        and prices.learn_from_approved
    ):
        order = PurchaseOrder.model_validate(row.document)
        await price_repo.upsert(conn, price_repo.rows_from_order(order, report.decided_at))
    return DecisionResult(DecisionOutcome.APPLIED, row.approval_id, row.revision)


async def apply_held(
    conn: AsyncConnection, row: RevisionRow, now: dt.datetime, prices: PriceConfig
) -> DecisionResult | None:
    """Apply a decision that arrived before the revision's instance id was recorded, if one did."""
    assert row.instance_id is not None
    held = await inbox.take_held(conn, row.instance_id)
    if held is None:
        return None
    report = DecisionReport.model_validate(held)
    return await apply_decision(conn, row, report, now, "dingtalk", prices)


class DecisionService:
    """Applies approvers' decisions exactly once per revision."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        prices: PriceConfig,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._prices = prices
        self._on_commit = on_commit

    async def apply(self, report: DecisionReport, actor: str = "dingtalk") -> DecisionResult:
        """Record a decision and ask for its write-back in one transaction; deduplicated."""
        now = self._clock.now()
        async with self._db.write() as conn:
            if not await inbox.first_sighting(conn, report.event_key, actor, now):
                return DecisionResult(DecisionOutcome.DUPLICATE)
            # Before looking the instance up: its recording may be committing in another replica.
            await inbox.lock_instance(conn, report.instance_id)
            row = await repo.find_by_instance(conn, report.instance_id)
            if row is None:
                await inbox.hold(conn, report.instance_id, report.model_dump(mode="json"), now)
                return DecisionResult(DecisionOutcome.HELD)
            result = await apply_decision(conn, row, report, now, actor, self._prices)
        self._on_commit()
        return result

    async def record_action(
        self, instance_id: str, action: ApproverAction, event_key: str, actor: str = "dingtalk"
    ) -> DecisionResult:
        """Keep one approver's action on a pending revision, for the write-back's `approvers`."""
        now = self._clock.now()
        async with self._db.write() as conn:
            if not await inbox.first_sighting(conn, event_key, actor, now):
                return DecisionResult(DecisionOutcome.DUPLICATE)
            row = await repo.find_by_instance(conn, instance_id)
            # Task events may come after the instance's own finish event: until the write-back
            # starts, the action still joins the approvers it reports.
            open_for_actions = (State.PENDING, State.APPROVED, State.REJECTED)
            if row is None or row.state not in open_for_actions:
                return DecisionResult(DecisionOutcome.IGNORED)
            actions = [*(row.approvers or []), action.model_dump(mode="json")]
            await repo.set_approvers(conn, row.approval_id, row.revision, actions, now)
            detail = {"user_id": action.user_id, "result": action.result}
            audit = repo.audit_row(
                row.approval_id, row.revision, now, actor, "task_done", detail=detail
            )
            await repo.append_audit(conn, [audit])
        return DecisionResult(DecisionOutcome.APPLIED, row.approval_id, row.revision)

    async def terminated(
        self, instance_id: str, event_key: str, actor: str = "dingtalk"
    ) -> DecisionResult:
        """An instance was withdrawn on the approval side: an open revision becomes cancelled."""
        now = self._clock.now()
        async with self._db.write() as conn:
            if not await inbox.first_sighting(conn, event_key, actor, now):
                return DecisionResult(DecisionOutcome.DUPLICATE)
            row = await repo.find_by_instance(conn, instance_id)
            if row is None:
                return DecisionResult(DecisionOutcome.IGNORED)
            if row.state is not State.PENDING:
                # We ended it ourselves (superseded, cancelled): nothing changes.
                return DecisionResult(DecisionOutcome.IGNORED, row.approval_id, row.revision)
            detail = {"instance_id": instance_id}
            await repo.move(
                conn,
                row.approval_id,
                row.revision,
                State.PENDING,
                Trigger.TERMINATED,
                now,
                actor,
                detail,
            )
            text = (
                f"The approval of {row.doc_no} (revision {row.revision}) was withdrawn in "
                "DingTalk; nothing is written back to the ERP."
            )
            await enqueue_notice(conn, Notice("withdrawn", text, row.approval_id, row.doc_no), now)
        self._on_commit()
        return DecisionResult(DecisionOutcome.APPLIED, row.approval_id, row.revision)

    async def retry(self, approval_id_or_doc_no: str, actor: str) -> RevisionRow:
        """Re-run a parked revision: its write-back if it was decided, else its submission."""
        now = self._clock.now()
        async with self._db.write() as conn:
            rows = await repo.revisions_of(conn, approval_id_or_doc_no)
            failed = next((r for r in rows if r.state is State.FAILED), None)
            if failed is None:
                raise NotFound(f"nothing parked for {approval_id_or_doc_no}")
            await job_repo.drop_parked(conn, failed.approval_id, failed.revision)
            if failed.decision is not None:
                trigger, kind = Trigger.RETRY_WRITE_BACK, WRITE_BACK
            else:
                trigger, kind = Trigger.RETRY_SUBMIT, CREATE_INSTANCE
            await repo.move(
                conn,
                failed.approval_id,
                failed.revision,
                State.FAILED,
                trigger,
                now,
                actor,
                last_error=None,
            )
            # A parked submission may have timed out after DingTalk created it: look first.
            payload = {} if kind == WRITE_BACK else {"look_first": True}
            await job_repo.enqueue(
                conn, [(kind, failed.approval_id, failed.revision, payload)], now
            )
        self._on_commit()
        return failed
