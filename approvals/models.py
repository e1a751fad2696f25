"""Frozen domain models: the canonical ERP events and the documents they carry."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

MONEY_SCALE = 6
"""Decimal places kept for money and quantities (stored as scaled integers)."""

_MAX_ABS = Decimal(10) ** 12


def _decimal_from_string(value: Any) -> Any:
    """Accept decimal strings (and Decimals from Python callers), never floats."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            raise ValueError('must be a decimal string such as "12.50"') from None
    raise ValueError('must be a decimal string such as "12.50", not a JSON number')


def _check_decimal(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite number")
    if value.copy_abs() >= _MAX_ABS:  # abs() rounds in the context and can trap Overflow
        raise ValueError("is out of range")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MONEY_SCALE:
        raise ValueError(f"has more than {MONEY_SCALE} decimal places")
    return value


def _non_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError("must not be negative")
    return value


Amount = Annotated[Decimal, BeforeValidator(_decimal_from_string), AfterValidator(_check_decimal)]
"""An exact decimal from a decimal string (money, quantity, rate)."""
NonNegative = Annotated[Amount, AfterValidator(_non_negative)]

Code = Annotated[str, Field(min_length=1, max_length=128)]
Name = Annotated[str, Field(max_length=512)]


class Frozen(BaseModel):
    """Base for immutable models that reject unknown-typed input."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        """PostgreSQL text cannot hold U+0000: refuse it here rather than fail the whole batch."""
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain the NUL character")
        return value


class DocType(StrEnum):
    """What an approval is about."""

    PURCHASE_ORDER = "purchase_order"
    REPLENISHMENT = "replenishment"


class EventType(StrEnum):
    """Canonical ERP event types (CONTRACT section 2)."""

    PO_SUBMITTED = "purchase_order.submitted"
    PO_CHANGED = "purchase_order.changed"
    PO_CANCELLED = "purchase_order.cancelled"
    STOCK_BELOW_SAFETY = "stock.below_safety"


class Decision(StrEnum):
    """The outcome approvers reached."""

    APPROVED = "approved"
    REJECTED = "rejected"


class Person(Frozen):
    """An ERP user."""

    erp_user: Code
    name: Name = ""


class CodeName(Frozen):
    """A coded master-data reference (supplier, department)."""

    code: Code
    name: Name = ""


class OrderLine(Frozen):
    """One purchase-order line."""

    line_no: int = Field(ge=0, le=1_000_000)
    material_code: Code
    material_name: Name = ""
    spec: Name = ""
    unit: Name = ""
    quantity: NonNegative
    unit_price: NonNegative
    tax_rate: NonNegative | None = None
    amount: Amount | None = None


class PurchaseOrder(Frozen):
    """A purchase-order revision as the ERP submitted it."""

    doc_no: Code
    revision: int = Field(ge=0, le=2**31 - 1)
    buyer: Person
    department: CodeName | None = None
    supplier: CodeName
    currency: Annotated[str, Field(min_length=3, max_length=3)] = "CNY"
    total_amount: Amount
    expected_date: dt.date | None = None
    remark: Annotated[str, Field(max_length=4000)] = ""
    lines: Annotated[list[OrderLine], Field(min_length=1, max_length=500)]


class Cancellation(Frozen):
    """The ERP cancelled a purchase order."""

    doc_no: Code
    revision: int = Field(ge=0, le=2**31 - 1)
    reason: Annotated[str, Field(max_length=4000)] = ""


class StockAlert(Frozen):
    """A material fell below its safety stock in a warehouse."""

    material_code: Code
    material_name: Name = ""
    unit: Name = ""
    warehouse: Code
    on_hand: Amount
    safety_stock: NonNegative
    reorder_qty: NonNegative
    preferred_supplier: CodeName | None = None
    requester: Person


def _aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("must carry a UTC offset, e.g. 2026-11-25T10:00:00+08:00")
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-14:00 has no UTC datetime
        raise ValueError("is out of range") from None


AwareDatetime = Annotated[dt.datetime, AfterValidator(_aware)]


class _Envelope(Frozen):
    event_id: Annotated[str, Field(min_length=1, max_length=200)]
    occurred_at: AwareDatetime


class OrderSubmitted(_Envelope):
    """`purchase_order.submitted` or `purchase_order.changed`."""

    type: Literal["purchase_order.submitted", "purchase_order.changed"]
    data: PurchaseOrder


class OrderCancelled(_Envelope):
    """`purchase_order.cancelled`."""

    type: Literal["purchase_order.cancelled"]
    data: Cancellation


class StockBelowSafety(_Envelope):
    """`stock.below_safety`."""

    type: Literal["stock.below_safety"]
    data: StockAlert


ErpEvent = Annotated[
    OrderSubmitted | OrderCancelled | StockBelowSafety, Field(discriminator="type")
]
"""Any canonical ERP event."""


class ApproverAction(Frozen):
    """What one approver did, as written back to the ERP."""

    user_id: str
    name: str = ""
    result: str
    comment: str = ""
    at: dt.datetime | None = None


class DecisionReport(Frozen):
    """A decision heard from the approval system for one instance."""

    instance_id: str
    decision: Decision
    decided_at: AwareDatetime
    approvers: tuple[ApproverAction, ...] = ()
    event_key: str
    """The inbound event's identity, for deduplication."""
