"""Records the reference ERP keeps: orders, requisitions, emitted events, received write-backs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Clock = Callable[[], dt.datetime]
"""Returns the current time, timezone-aware."""
OrderStatus = Literal["submitted", "approved", "rejected", "cancelled"]
DeliveryStatus = Literal["pending", "delivered", "stale", "rejected", "failed"]
WriteBackOutcome = Literal[
    "applied", "replay", "conflicting_decision", "fault", "unauthorized", "invalid"
]
Answer = tuple[int, dict[str, Any]]
"""An HTTP status and its JSON body."""


def utc_now() -> dt.datetime:
    """The current time in UTC (the default clock)."""
    return dt.datetime.now(dt.UTC)


@dataclass
class Order:
    """A purchase order at its current revision."""

    doc_no: str
    revision: int
    status: OrderStatus
    data: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
    decided_by: dict[str, Any] | None = None
    erp_ref: str | None = None
    cancel_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The order as the control API shows it."""
        return {
            "doc_no": self.doc_no,
            "revision": self.revision,
            "status": self.status,
            "data": self.data,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "decided_by": self.decided_by,
            "erp_ref": self.erp_ref,
            "cancel_reason": self.cancel_reason,
        }


@dataclass(frozen=True)
class Requisition:
    """A purchase requisition raised from an approved replenishment write-back."""

    number: str
    reference: str
    material_code: str
    warehouse: str
    quantity: str
    approval_id: str
    created_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        """The requisition as the control API shows it."""
        return {
            "number": self.number,
            "reference": self.reference,
            "material_code": self.material_code,
            "warehouse": self.warehouse,
            "quantity": self.quantity,
            "approval_id": self.approval_id,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt of an event: its signed timestamp and the HTTP status or error."""

    at: dt.datetime
    timestamp: int
    status: int | None
    error: str | None = None


@dataclass
class EventRecord:
    """An event the reference ERP emitted, with its delivery state."""

    event_id: str
    type: str
    occurred_at: dt.datetime
    data: dict[str, Any]
    status: DeliveryStatus = "pending"
    attempts: list[Attempt] = field(default_factory=list)
    response: Any = None
    approval_id: str | None = None
    finished_at: dt.datetime | None = None

    @property
    def final(self) -> bool:
        """Whether delivery is over (delivered or finally refused)."""
        return self.status != "pending"

    def envelope(self) -> dict[str, Any]:
        """The JSON body sent to the bridge (CONTRACT §2)."""
        return {
            "event_id": self.event_id,
            "type": self.type,
            "occurred_at": self.occurred_at.isoformat(),
            "data": self.data,
        }

    def to_json(self) -> dict[str, Any]:
        """The event and its delivery state as the control API shows them."""
        return {
            **self.envelope(),
            "status": self.status,
            "attempts": [
                {
                    "at": a.at.isoformat(),
                    "timestamp": a.timestamp,
                    "status": a.status,
                    "error": a.error,
                }
                for a in self.attempts
            ],
            "response": self.response,
            "approval_id": self.approval_id,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


@dataclass(frozen=True)
class WriteBackRecord:
    """A request received on `/approval-results`, with what we answered."""

    received_at: dt.datetime
    idempotency_key: str | None
    body: Any
    status: int
    answer: dict[str, Any]
    outcome: WriteBackOutcome

    def to_json(self) -> dict[str, Any]:
        """The record as the control API shows it."""
        return {
            "received_at": self.received_at.isoformat(),
            "idempotency_key": self.idempotency_key,
            "body": self.body,
            "status": self.status,
            "answer": self.answer,
            "outcome": self.outcome,
        }
