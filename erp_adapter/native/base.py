"""The interface every native ERP adapter (Kingdee, Odoo, ERPNext) implements."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from pydantic import ValidationError

from approvals.db.price_repo import PriceRow
from approvals.models import PurchaseOrder, StockAlert
from approvals.ports import WriteBack

Cursor = tuple[dt.datetime, str]
"""A position in an ERP's change feed: (last modified, aware UTC; document key as a tie-break)."""


class OrderStatus(StrEnum):
    """Where a purchase order stands in its ERP, as the bridge sees it."""

    PENDING = "pending"
    """Waiting for approval: the bridge raises (or keeps) a DingTalk approval for it."""
    OPEN = "open"
    """Not submitted for approval (draft, created, sent back); no approval while it stays so."""
    APPROVED = "approved"
    REJECTED = "rejected"
    """Refused or voided (Kingdee 作废, Odoo cancel, ERPNext cancelled or rejected)."""


@dataclass(frozen=True)
class NativeOrder:
    """One purchase order as read from its ERP."""

    key: str
    """The ERP's own stable id (Kingdee FID, Odoo id, ERPNext name)."""
    doc_no: str
    """The number people see (FBillNo, name); the bridge's `doc_no`."""
    modified: dt.datetime
    """Last modified, aware UTC."""
    status: OrderStatus
    order: PurchaseOrder | None
    """The canonical order; its `revision` is ignored (the poller numbers revisions). None when
    the ERP's document cannot be one (no lines, a negative quantity, ...): see `problem`."""
    problem: str = ""
    """Why `order` is None, for the admin who must fix the document in the ERP."""

    @property
    def canonical(self) -> PurchaseOrder:
        """The canonical order; raises `ValueError` (with the problem) for an unusable one."""
        if self.order is None:
            raise ValueError(f"{self.doc_no} cannot be mapped: {self.problem}")
        return self.order

    def fingerprint(self) -> str:
        """A digest of what approvers see: a change of it is a new revision."""
        if self.order is None:
            content = f"unusable:{self.problem}"
        else:
            content = self.order.model_copy(update={"revision": 0}).model_dump_json()
        return hashlib.sha256(content.encode()).hexdigest()


def unusable(
    key: str, doc_no: str, modified: dt.datetime, status: OrderStatus, error: ValueError
) -> NativeOrder:
    """An order whose ERP document cannot be mapped: polling goes on, an admin is told."""
    if isinstance(error, ValidationError):
        problem = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()[:3]
        )
    else:
        problem = str(error)
    return NativeOrder(key, doc_no, modified, status, None, problem[:500])


@dataclass(frozen=True)
class StockLevel:
    """One material in one warehouse against its safety stock."""

    alert: StockAlert
    """The canonical alert data (on hand, safety stock, reorder quantity, requester)."""

    @property
    def low(self) -> bool:
        """Below its safety stock."""
        return self.alert.on_hand < self.alert.safety_stock


@dataclass(frozen=True)
class PricePoint:
    """One approved purchase line from the ERP, for the price history."""

    cursor: Cursor
    row: PriceRow


@dataclass(frozen=True)
class CheckItem:
    """One thing `approval-bridge check` verified against the ERP."""

    what: str
    ok: bool
    detail: str = ""


class NativeErp(Protocol):
    """A native ERP: read its orders, stock and prices; act on its documents.

    Every call raises `approvals.errors.Retryable` (outage, timeout, 5xx, session lost twice),
    `Permanent` (refused: rights, validation) or `Conflict`; never returns None for an error.
    """

    name: str
    """Short name: the `source` of its price rows and the prefix of its event ids."""

    async def orders_since(self, after: Cursor, limit: int) -> Sequence[NativeOrder]:
        """Orders with (modified, key) after the cursor, in that order, at most `limit`."""
        ...

    async def order(self, doc_no: str) -> NativeOrder | None:
        """One order by its number, read fresh; None if the ERP has no such order."""
        ...

    async def approve(self, order: NativeOrder, result: WriteBack) -> None:
        """Approve a PENDING order in the ERP (the caller re-reads it afterwards)."""
        ...

    async def reject(self, order: NativeOrder, result: WriteBack) -> None:
        """Refuse a PENDING order in the ERP (the caller re-reads it afterwards)."""
        ...

    async def stock_levels(self) -> Sequence[StockLevel]:
        """Every watched material and warehouse with its safety stock and quantity on hand."""
        ...

    async def create_requisition(self, result: WriteBack) -> str:
        """Raise the native requisition for an approved replenishment; returns its number.

        Idempotent: carries `result.idempotency_key` on the document and looks for it first.
        """
        ...

    async def prices_since(self, after: Cursor, limit: int) -> Sequence[PricePoint]:
        """Approved purchase lines with (modified, key) after the cursor, in that order."""
        ...

    async def check(self) -> Sequence[CheckItem]:
        """Connectivity, credentials and the rights the bridge needs."""
        ...

    async def close(self) -> None:
        """Release sessions and connections."""
        ...


def quantize(value: Decimal | float | int | str) -> Decimal:
    """A decimal from an ERP number, via its text so a float's binary noise is not kept."""
    return Decimal(str(value)).normalize() if not isinstance(value, Decimal) else value
