"""Read models: what chat commands and the dashboard show (frozen, plain data)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple

from approvals.models import ApproverAction, Decision, DocType
from approvals.states import State


class WriteBackStatus(StrEnum):
    """Where a revision's write-back to the ERP stands."""

    NONE = "none"
    """Nothing to write back: undecided, or retired before a decision."""
    WAITING = "waiting"
    """Decided; the ERP has not acknowledged yet (queued or retrying)."""
    DONE = "done"
    """The ERP acknowledged (see `erp_ref`)."""
    STALE = "stale"
    """The ERP answered 409: the document changed there; the decision was not applied."""
    FAILED = "failed"
    """Refused, or unreachable past the deadline; parked until an admin retries."""


_WRITE_BACK = {
    State.APPROVED: WriteBackStatus.WAITING,
    State.REJECTED: WriteBackStatus.WAITING,
    State.WRITING_BACK: WriteBackStatus.WAITING,
    State.DONE: WriteBackStatus.DONE,
    State.STALE: WriteBackStatus.STALE,
}


@dataclass(frozen=True)
class RevisionView:
    """One revision of an approval, as `status` shows it."""

    revision: int
    state: State
    instance_id: str | None
    decision: Decision | None
    decided_at: dt.datetime | None
    approvers: tuple[ApproverAction, ...]
    """Approvers' recorded actions (DingTalk task events, or a reconciliation's snapshot)."""
    received_at: dt.datetime
    updated_at: dt.datetime
    erp_ref: str | None
    last_error: str | None

    @property
    def write_back(self) -> WriteBackStatus:
        """The write-back's status, derived from the state."""
        if self.state is State.FAILED:
            return WriteBackStatus.FAILED if self.decision else WriteBackStatus.NONE
        return _WRITE_BACK.get(self.state, WriteBackStatus.NONE)

    @property
    def time_to_decision(self) -> dt.timedelta | None:
        """From receipt to the approvers' decision."""
        return None if self.decided_at is None else self.decided_at - self.received_at


@dataclass(frozen=True)
class AuditEntry:
    """One line of the append-only audit trail."""

    at: dt.datetime
    revision: int | None
    actor: str
    action: str
    from_state: State | None
    to_state: State | None
    detail: dict[str, Any] | None


@dataclass(frozen=True)
class StatusView:
    """One approval with every revision (newest first) and its latest audit entries."""

    approval_id: str
    doc_type: DocType
    doc_no: str
    current_revision: int
    created_at: dt.datetime
    revisions: tuple[RevisionView, ...]
    recent_audit: tuple[AuditEntry, ...]
    """The last entries, oldest first."""

    @property
    def current(self) -> RevisionView:
        """The revision the approval stands at."""
        return next(r for r in self.revisions if r.revision == self.current_revision)


@dataclass(frozen=True)
class PendingItem:
    """An approval waiting for a decision, and for how long."""

    approval_id: str
    doc_type: DocType
    doc_no: str
    revision: int
    state: State
    """received, submitting (the instance is being raised) or pending (approvers have it)."""
    instance_id: str | None
    received_at: dt.datetime
    waited: dt.timedelta
    subject: str
    """The supplier of a purchase order; the material and warehouse of a replenishment."""
    requester: str
    amount: Decimal | None
    """A purchase order's total; a replenishment's reorder quantity."""
    currency: str | None
    """None for a replenishment (its amount is a quantity)."""


class FailureKind(StrEnum):
    """What failed."""

    WRITE_BACK = "write_back"
    """A decided revision the ERP refused or could not be reached for; `retry` re-sends it."""
    SUBMIT = "submit"
    """A revision whose approval could not be raised; `retry` submits it again."""
    STALE = "stale"
    """The ERP answered 409 (the document changed there); resubmit it in the ERP."""
    JOB = "job"
    """A parked job with no failed revision: a notice not delivered, an instance not ended."""


@dataclass(frozen=True)
class FailedItem:
    """Something that needs an admin: a failed or stale revision, or a parked job."""

    kind: FailureKind
    approval_id: str | None
    doc_type: DocType | None
    doc_no: str | None
    revision: int | None
    error: str | None
    since: dt.datetime
    """When it failed (the revision's last change, or the job's)."""
    job_id: int | None = None
    job_kind: str | None = None
    attempts: int | None = None

    @property
    def retryable(self) -> bool:
        """Whether an admin's `retry` can act on it."""
        return self.kind in (FailureKind.WRITE_BACK, FailureKind.SUBMIT)


@dataclass(frozen=True)
class StatsView:
    """Outcomes over a window; decision times are from receipt of the revision to its decision.

    `approved`, `rejected` and the decision times count decisions made in the window; the other
    counts are revisions that reached that state in the window (from the audit trail).
    """

    since: dt.datetime
    until: dt.datetime
    received: int
    approved: int
    rejected: int
    written_back: int
    cancelled: int
    superseded: int
    stale: int
    write_back_failures: int
    submit_failures: int
    open_now: int
    median_decision_time: dt.timedelta | None
    """The middle decision time (the mean of the two middle ones for an even count)."""
    p90_decision_time: dt.timedelta | None
    """Nearest rank: 90% of decisions took at most this long."""

    @property
    def decided(self) -> int:
        """Approved plus rejected."""
        return self.approved + self.rejected


class DayCount(NamedTuple):
    """Decisions on one local calendar day."""

    day: dt.date
    approved: int
    rejected: int
