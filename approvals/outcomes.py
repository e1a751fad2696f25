"""Notices that must go out once: the buyer's outcome when an approval ends, the budget warning.

Both ride the `notify` outbox job, claimed in the `reminder` table in the same transaction, so a
repeated write-back run, a second replica or a restart never sends them twice.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.db import reminders as reminder_repo
from approvals.db import repo
from approvals.db.repo import RevisionRow
from approvals.models import DocType
from approvals.notices import enqueue_notice
from approvals.ports import Notice
from approvals.states import State

OUTCOME = "outcome"
"""Notice kind for the person who raised the document; `details["erp_user"]` names them."""
BUDGET = "budget"
"""Notice kind for admins: the month's DingTalk call budget passed a threshold."""

_OUTCOME_TEXT = {
    "approved": "已审批通过，结果已写回ERP / approved, and the ERP has it",
    "rejected": "已被驳回，结果已写回ERP / rejected, and the ERP has it",
    "stale": "审批结果未生效：单据已在ERP中变更，请重新提交 / "
    "not applied: the document changed in the ERP meanwhile, submit it again",
}


def _raised_by(row: RevisionRow) -> str | None:
    """The ERP user who raised the document: the buyer, or a replenishment's requester."""
    who = row.document.get("buyer" if row.doc_type is DocType.PURCHASE_ORDER else "requester")
    user = who.get("erp_user") if isinstance(who, dict) else None
    return user if isinstance(user, str) and user else None


async def enqueue_outcome(conn: AsyncConnection, row: RevisionRow, now: dt.datetime) -> bool:
    """Tell the buyer how the approval ended, once; call after the write-back's final move.

    Reads the revision again in the caller's transaction: only `done` and `stale` are endings
    the buyer hears about, whichever run of the write-back got there first.
    """
    current = await repo.get_revision(conn, row.approval_id, row.revision)
    if current is None or current.state not in (State.DONE, State.STALE):
        return False
    outcome = "stale" if current.state is State.STALE else current.decision or ""
    erp_user = _raised_by(current)
    if outcome not in _OUTCOME_TEXT or erp_user is None:
        return False
    if not await reminder_repo.claim(conn, (row.approval_id, row.revision, OUTCOME), now):
        return False
    text = f"{current.doc_no}（第{current.revision}版）{_OUTCOME_TEXT[outcome]}"
    details = {"outcome": outcome, "erp_user": erp_user, "revision": str(current.revision)}
    notice = Notice(OUTCOME, text, current.approval_id, current.doc_no, details)
    await enqueue_notice(conn, notice, now)
    return True


async def enqueue_budget_warning(
    conn: AsyncConnection, used: float, threshold: float, now: dt.datetime
) -> bool:
    """Warn admins once a month (UTC, as DingTalk counts) that the call budget passed a mark."""
    month = now.astimezone(dt.UTC).strftime("%Y-%m")
    key = (f"budget:{month}", round(threshold * 100), BUDGET)
    if not await reminder_repo.claim(conn, key, now):
        return False
    text = (
        f"本月钉钉接口调用已用 {used:.0%}（阈值 {threshold:.0%}）。"
        f"用到 95% 后提醒将暂停，审批不受影响。 / {used:.0%} of this month's DingTalk call "
        f"budget is used (warning at {threshold:.0%}); from 95% reminders wait, approvals do not."
    )
    details = {"used_pct": f"{used * 100:.1f}", "month": month}
    await enqueue_notice(conn, Notice(BUDGET, text, details=details), now)
    return True
