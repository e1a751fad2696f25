"""The ports through which the core reaches the outside world; the edges implement them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from approvals.models import ApproverAction, Decision, DocType, PurchaseOrder, StockAlert
from approvals.prices import PriceContext


class Clock(Protocol):
    """Tells the time (aware UTC)."""

    def now(self) -> dt.datetime:
        """The current time, aware, in UTC."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> dt.datetime:
        """The current time, aware, in UTC."""
        return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class InstanceRequest:
    """What an approval instance is raised for: one revision of one document."""

    approval_id: str
    revision: int
    doc_type: DocType
    doc_no: str
    document: PurchaseOrder | StockAlert
    prices: tuple[PriceContext, ...]
    received_at: dt.datetime

    @property
    def reference(self) -> str:
        """The bridge's reference, carried in the form so a lost create can be found again."""
        return f"{self.approval_id}:{self.revision}"

    @property
    def originator(self) -> str:
        """The ERP user on whose behalf the instance is raised."""
        doc = self.document
        return doc.buyer.erp_user if isinstance(doc, PurchaseOrder) else doc.requester.erp_user


Window = tuple[dt.datetime, dt.datetime]
"""From when to when (our clock) a create call may have raised an instance."""


class ApprovalGateway(Protocol):
    """The approval system (DingTalk OA)."""

    async def create_instance(self, request: InstanceRequest) -> str:
        """Raise an instance; returns its id. Raises `Retryable` or `Permanent`."""
        ...

    async def find_instance(
        self, request: InstanceRequest, windows: Sequence[Window] | None = None
    ) -> str | None:
        """The id of an instance already raised for this request's reference, if any.

        `windows`: the create calls whose outcome is unknown, the only times to look at; None
        when that is not known (look at every instance since the request was received).
        """
        ...

    async def terminate_instance(self, instance_id: str, reason: str) -> None:
        """Terminate a running instance; one that already finished counts as done."""
        ...


@dataclass(frozen=True)
class InstanceSnapshot:
    """An instance as the approval system reports it on request (for reconciliation)."""

    instance_id: str
    status: str
    """RUNNING, COMPLETED or TERMINATED."""
    result: str | None
    """agree or refuse once COMPLETED; None otherwise."""
    finished_at: dt.datetime | None
    approvers: tuple[ApproverAction, ...] = ()


class InstanceDirectory(Protocol):
    """Looks instances up, for finding decisions whose events never arrived."""

    async def finished_ids(self, process_code: str, started_since: dt.datetime) -> list[str]:
        """Ids of instances of a process started since a time that are finished or terminated."""
        ...

    async def snapshot(self, instance_id: str) -> InstanceSnapshot:
        """One instance's status, result and approvers."""
        ...


@dataclass(frozen=True)
class WriteBack:
    """A decision to tell the ERP (CONTRACT section 3)."""

    approval_id: str
    doc_type: DocType
    doc_no: str
    revision: int
    decision: Decision
    process_instance_id: str
    decided_at: dt.datetime
    approvers: tuple[ApproverAction, ...]
    material_code: str | None = None
    warehouse: str | None = None
    quantity: Decimal | None = None

    @property
    def idempotency_key(self) -> str:
        """One key per revision: the ERP may see it again, never with another decision."""
        return f"{self.approval_id}:{self.revision}"


@dataclass(frozen=True)
class WriteBackReceipt:
    """The ERP's acknowledgement."""

    erp_ref: str | None = None


class ErpWriteBack(Protocol):
    """The ERP side of a decision."""

    async def write_back(self, result: WriteBack) -> WriteBackReceipt:
        """Deliver a decision. Raises `Conflict` (409), `Permanent` (4xx) or `Retryable`."""
        ...


@dataclass(frozen=True)
class Notice:
    """Something an admin must hear about."""

    kind: str
    text: str
    approval_id: str | None = None
    doc_no: str | None = None
    details: dict[str, str] = field(default_factory=dict)


class Notifier(Protocol):
    """Tells admins (and requesters) what needs their attention."""

    async def notify(self, notice: Notice) -> None:
        """Deliver one notice. Raises `Retryable` or `Permanent`."""
        ...
