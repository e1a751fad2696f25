"""In-memory state of the reference ERP, with the business rules that change it."""

from __future__ import annotations

import copy
from typing import Any

from erp_adapter.reference.errors import ConflictError, NotFoundError
from erp_adapter.reference.records import (
    Answer,
    Clock,
    EventRecord,
    Order,
    Requisition,
    WriteBackRecord,
    utc_now,
)
from erp_adapter.reference.validate import Decision, WriteBack


class Store:
    """The reference ERP's documents and logs, with the business rules that change them."""

    def __init__(self, clock: Clock = utc_now) -> None:
        self.clock = clock
        self.orders: dict[str, Order] = {}
        self.requisitions: list[Requisition] = []
        self.events: list[EventRecord] = []
        self.write_backs: list[WriteBackRecord] = []
        self._replenishments: dict[str, tuple[Decision, str | None]] = {}
        self._decisions = 0

    def order(self, doc_no: str) -> Order:
        """The order with this number, or NotFoundError."""
        try:
            return self.orders[doc_no]
        except KeyError:
            raise NotFoundError(f"no purchase order {doc_no!r}") from None

    def create_order(self, data: dict[str, Any]) -> Order:
        """Store a new order at revision 1 (data already validated)."""
        doc_no = data["doc_no"]
        if doc_no in self.orders:
            raise ConflictError(f"purchase order {doc_no!r} already exists; change it instead")
        now = self.clock()
        order = Order(doc_no, 1, "submitted", copy.deepcopy(data), now, now)
        self.orders[doc_no] = order
        return order

    def change_order(self, doc_no: str, data: dict[str, Any]) -> Order:
        """Replace an order's data with a new revision, which needs approval again."""
        order = self.order(doc_no)
        if order.status == "cancelled":
            raise ConflictError(f"purchase order {doc_no!r} is cancelled")
        order.revision = data["revision"]
        order.data = copy.deepcopy(data)
        order.status = "submitted"
        order.decided_by = order.erp_ref = None
        order.updated_at = self.clock()
        return order

    def cancel_order(self, doc_no: str, reason: str) -> Order:
        """Cancel an order at its current revision."""
        order = self.order(doc_no)
        if order.status == "cancelled":
            raise ConflictError(f"purchase order {doc_no!r} is already cancelled")
        order.status = "cancelled"
        order.cancel_reason = reason
        order.updated_at = self.clock()
        return order

    def decide(self, wb: WriteBack, body: dict[str, Any]) -> Answer:
        """Apply a checked write-back to its document; the answer the ERP gives."""
        if wb.doc_type == "replenishment":
            return self._replenish(wb)
        order = self.orders.get(wb.doc_no)
        if order is None:
            return 404, {"error": "not_found"}
        if order.status == "cancelled" or wb.revision != order.revision:
            return 409, {"error": "stale"}
        if order.status != "submitted":
            if order.status != wb.decision:
                return 409, {"error": "already_decided", "status": order.status}
            return 200, {"erp_ref": order.erp_ref}
        self._decisions += 1
        order.status = wb.decision
        order.decided_by = copy.deepcopy(body)
        order.erp_ref = f"AUD-{self._decisions:06d}"
        order.updated_at = self.clock()
        return 200, {"erp_ref": order.erp_ref}

    def _replenish(self, wb: WriteBack) -> Answer:
        """Raise a requisition for an approved replenishment, once per bridge reference."""
        known = self._replenishments.get(wb.doc_no)
        if known is not None:
            decision, number = known
            if decision != wb.decision:
                return 409, {"error": "already_decided", "status": decision}
            return 200, ({"erp_ref": number} if number else {})
        if wb.decision == "rejected":
            self._replenishments[wb.doc_no] = ("rejected", None)
            return 200, {}
        assert wb.material_code is not None
        assert wb.warehouse is not None
        assert wb.quantity is not None
        number = f"PR-{len(self.requisitions) + 1:06d}"
        self.requisitions.append(
            Requisition(
                number,
                wb.doc_no,
                wb.material_code,
                wb.warehouse,
                wb.quantity,
                wb.approval_id,
                self.clock(),
            )
        )
        self._replenishments[wb.doc_no] = ("approved", number)
        return 200, {"erp_ref": number}
