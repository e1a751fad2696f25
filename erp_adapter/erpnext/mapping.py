"""Pure mapping from ERPNext documents to the bridge's models: times, status, money, lines."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from approvals.models import CodeName, OrderLine, Person, PurchaseOrder
from erp_adapter.erpnext.config import ErpnextConfig
from erp_adapter.native.base import OrderStatus, quantize

Doc = dict[str, Any]
_SCALE = Decimal("0.000001")
_HUNDRED = Decimal(100)


def to_utc(local: Any, zone: ZoneInfo) -> dt.datetime:
    """A site-local `modified` ("2026-11-25 10:00:00[.123456]", no zone) as aware UTC."""
    naive = dt.datetime.fromisoformat(str(local))
    return naive.replace(tzinfo=zone).astimezone(dt.UTC)


def to_local(when: dt.datetime, zone: ZoneInfo) -> str:
    """An aware instant as the site-local text Frappe filters `modified` with."""
    return when.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S.%f")


def day_start_utc(day: Any, zone: ZoneInfo) -> dt.datetime:
    """Midnight of a site-local date (`transaction_date`), as aware UTC."""
    start = dt.datetime.combine(dt.date.fromisoformat(str(day)[:10]), dt.time())
    return start.replace(tzinfo=zone).astimezone(dt.UTC)


def money(value: Decimal) -> Decimal:
    """Rounded half-even to the bridge's six places, without trailing zeros."""
    exact = value.quantize(_SCALE, ROUND_HALF_EVEN)
    return exact.quantize(Decimal(1)) if exact == exact.to_integral_value() else exact.normalize()


def number(value: Any) -> Decimal:
    """An ERPNext number (already Decimal from the JSON parser; None as zero)."""
    return Decimal(0) if value is None or value == "" else quantize(value)


def status_of(head: Doc, config: ErpnextConfig) -> OrderStatus:
    """Where an order stands: workflow state, else docstatus (and the reject tag on drafts)."""
    docstatus = int(head.get("docstatus") or 0)
    if docstatus == 2:
        return OrderStatus.REJECTED
    if config.workflow:
        state = head.get("workflow_state")
        if state == config.rejected_state:
            return OrderStatus.REJECTED
        if docstatus == 1 or state == config.approved_state:
            return OrderStatus.APPROVED
        return OrderStatus.PENDING if state == config.pending_state else OrderStatus.OPEN
    if docstatus == 1:
        return OrderStatus.APPROVED
    tags = str(head.get("_user_tags") or "").split(",")
    return OrderStatus.REJECTED if config.reject_tag in tags else OrderStatus.PENDING


def tax_fraction(item: Doc, taxes: Sequence[Doc]) -> tuple[Decimal | None, bool]:
    """(tax rate as a fraction, whether `rate` already includes it) for one line.

    An Item Tax Template on the line (`item_tax_rate`, JSON {account: percent}) wins over the
    order's "On Net Total" taxes; other charge types (actual, on previous row) are not per unit.
    """
    try:
        own = json.loads(item.get("item_tax_rate") or "{}", parse_float=Decimal)
    except ValueError:
        own = {}
    if isinstance(own, dict) and own:
        return sum((quantize(v) for v in own.values()), Decimal(0)) / _HUNDRED, False
    rows = [t for t in taxes if t.get("charge_type") == "On Net Total"]
    if not rows:
        return None, False
    percent = sum(
        (-number(t.get("rate")) if t.get("add_deduct_tax") == "Deduct" else number(t.get("rate")))
        for t in rows
    )
    inclusive = any(int(t.get("included_in_print_rate") or 0) for t in rows)
    return Decimal(percent) / _HUNDRED, inclusive


def line(item: Doc, taxes: Sequence[Doc], config: ErpnextConfig) -> OrderLine:
    """A Purchase Order Item as an order line (unit price tax-inclusive unless configured)."""
    qty = number(item.get("qty"))
    rate = number(item.get("rate"))
    amount = number(item.get("amount"))
    fraction, inclusive = tax_fraction(item, taxes)
    if config.unit_price == "tax_inclusive" and fraction and not inclusive:
        rate, amount = rate * (1 + fraction), amount * (1 + fraction)
    return OrderLine(
        line_no=int(item.get("idx") or 0),
        material_code=str(item["item_code"]),
        material_name=str(item.get("item_name") or ""),
        spec=str(item.get(config.spec_field) or "") if config.spec_field else "",
        unit=str(item.get("uom") or ""),
        quantity=money(qty),
        unit_price=money(rate),
        tax_rate=money(fraction) if fraction is not None and fraction >= 0 else None,
        amount=money(amount),
    )


def purchase_order(
    head: Doc, items: Sequence[Doc], taxes: Sequence[Doc], buyer: Person, config: ErpnextConfig
) -> PurchaseOrder:
    """The canonical order (revision 0) from an order's head, lines and taxes."""
    department = head.get(config.department_field) if config.department_field else None
    remark = head.get(config.remark_field) if config.remark_field else None
    expected = head.get("schedule_date")
    return PurchaseOrder(
        doc_no=str(head["name"]),
        revision=0,
        buyer=buyer,
        department=CodeName(code=str(department)) if department else None,
        supplier=CodeName(code=str(head["supplier"]), name=str(head.get("supplier_name") or "")),
        currency=str(head.get("currency") or "CNY"),
        total_amount=money(number(head.get("grand_total"))),
        expected_date=dt.date.fromisoformat(str(expected)[:10]) if expected else None,
        remark=str(remark or "")[:4000],
        lines=[line(item, taxes, config) for item in sorted(items, key=lambda i: int(i["idx"]))],
    )
