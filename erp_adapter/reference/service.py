"""The reference ERP's operations, shared by its control API and its Python facade."""

from __future__ import annotations

import copy
from typing import Any

from erp_adapter.reference import validate
from erp_adapter.reference.emitter import Emitter
from erp_adapter.reference.errors import InputError, NotReadyError
from erp_adapter.reference.faults import FaultSwitch
from erp_adapter.reference.inbox import WriteBackInbox
from erp_adapter.reference.records import EventRecord, Order
from erp_adapter.reference.store import Store


class ErpService:
    """Changes documents and emits the matching events; receives write-backs."""

    def __init__(
        self, store: Store, emitter: Emitter, faults: FaultSwitch, inbox: WriteBackInbox
    ) -> None:
        self.store = store
        self.emitter = emitter
        self.faults = faults
        self.inbox = inbox

    def submit_order(self, raw: Any) -> tuple[Order, EventRecord]:
        """Create an order at revision 1 and emit `purchase_order.submitted`."""
        data = validate.purchase_order(raw, revision=1)
        self._check_ready()
        order = self.store.create_order(data)
        return order, self._emit("purchase_order.submitted", data, order.doc_no)

    def change_order(self, doc_no: str, raw: Any) -> tuple[Order, EventRecord]:
        """Store new data as the next revision and emit `purchase_order.changed`."""
        current = self.store.order(doc_no)
        data = dict(validate.obj(raw, "order"))
        if data.setdefault("doc_no", doc_no) != doc_no:
            raise InputError(f"order.doc_no must be {doc_no!r}, the order being changed")
        data = validate.purchase_order(data, revision=current.revision + 1)
        self._check_ready()
        order = self.store.change_order(doc_no, data)
        return order, self._emit("purchase_order.changed", data, doc_no)

    def cancel_order(self, doc_no: str, reason: Any = "") -> tuple[Order, EventRecord]:
        """Cancel an order and emit `purchase_order.cancelled` with its current revision."""
        if reason is None:
            reason = ""
        if not isinstance(reason, str):
            raise InputError("reason must be a string")
        self.store.order(doc_no)
        self._check_ready()
        order = self.store.cancel_order(doc_no, reason.strip())
        data = {"doc_no": doc_no, "revision": order.revision, "reason": order.cancel_reason}
        return order, self._emit("purchase_order.cancelled", data, doc_no)

    def stock_alert(self, raw: Any) -> EventRecord:
        """Emit `stock.below_safety` for a material in a warehouse."""
        data = validate.stock_alert(raw)
        self._check_ready()
        key = f"stock:{data['material_code']}@{data['warehouse']}"
        return self.emitter.emit("stock.below_safety", data, key)

    def _emit(self, type_: str, data: dict[str, Any], doc_no: str) -> EventRecord:
        return self.emitter.emit(type_, copy.deepcopy(data), f"po:{doc_no}")

    def _check_ready(self) -> None:
        if not self.emitter.ready:
            raise NotReadyError("no bridge URL is set (or the ERP is not started)")
