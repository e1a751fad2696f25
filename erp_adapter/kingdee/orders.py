"""PUR_PurchaseOrder query rows -> canonical orders: field keys, times, keys, status."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from approvals.errors import Permanent
from approvals.models import CodeName, OrderLine, Person, PurchaseOrder
from erp_adapter.kingdee.config import KingdeeConfig
from erp_adapter.native.base import NativeOrder, OrderStatus, unusable

PO_FORM = "PUR_PurchaseOrder"
KEY_WIDTH = 12
"""FIDs are zero-padded to this width, so keys sort as text the way K3Cloud sorts FID."""


def fid_key(fid: int) -> str:
    """The NativeOrder key of an FID."""
    return f"{fid:0{KEY_WIDTH}d}"


def key_fid(key: str) -> int:
    """The FID a cursor's key stands for; an empty key (first poll) is 0."""
    key = key.strip()
    if not key:
        return 0
    if not key.isdigit():
        raise ValueError(f"not a Kingdee FID key: {key!r}")
    return int(key)


def quote(value: str) -> str:
    """A FilterString string literal."""
    return "'" + value.replace("'", "''") + "'"


def parse_local(value: Any, tz: ZoneInfo) -> dt.datetime | None:
    """A K3Cloud time (local, no zone, 0-7 fraction digits) as aware UTC."""
    if value in (None, ""):
        return None
    text = str(value).strip().replace(" ", "T")
    base, _, fraction = text.partition(".")
    try:
        naive = dt.datetime.fromisoformat(base)
    except ValueError:
        raise Permanent(f"Kingdee sent a time that does not parse: {value!r}") from None
    if fraction:
        naive = naive.replace(microsecond=int((fraction + "000000")[:6]))
    return naive.replace(tzinfo=tz).astimezone(dt.UTC)


def format_local(when: dt.datetime, tz: ZoneInfo) -> str:
    """An aware time as a FilterString literal in server time, to the millisecond (floored)."""
    local = when.astimezone(tz).replace(tzinfo=None)
    return local.strftime("%Y-%m-%d %H:%M:%S.") + f"{local.microsecond // 1000:03d}"


def after_filter(field: str, after: tuple[dt.datetime, str], tz: ZoneInfo) -> str:
    """(field, FID) strictly after the cursor."""
    at = quote(format_local(after[0], tz))
    fid = key_fid(after[1])
    return f"({field} > {at} or ({field} = {at} and FID > {fid}))"


def status_of(document: str, cancel: str) -> OrderStatus:
    """FCancelStatus B -> REJECTED; B -> PENDING; C -> APPROVED; Z/A/D -> OPEN."""
    if cancel == "B":
        return OrderStatus.REJECTED
    if document == "B":
        return OrderStatus.PENDING
    if document == "C":
        return OrderStatus.APPROVED
    return OrderStatus.OPEN


def decimal(value: Any) -> Decimal:
    """A number from the ERP (parsed from JSON text, never through a float)."""
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)


class OrderReader:
    """The field keys of an order query and the mapping of its rows."""

    def __init__(self, config: KingdeeConfig) -> None:
        self.config = config
        self.tz = ZoneInfo(config.timezone)
        buyer = config.buyer_field
        head = ["FID", "FBillNo", "FModifyDate", "FDocumentStatus", "FCancelStatus", "FDate"]
        head += ["FSupplierId.FNumber", "FSupplierId.FName"]
        head += ["FPurchaseDeptId.FNumber", "FPurchaseDeptId.FName"]
        head += [f"{buyer}.FNumber", f"{buyer}.FName", "FCreatorId.FUserAccount"]
        head += ["FSettleCurrId.FCode", "FBillAllAmount"]
        if config.remark_field:
            head.append(config.remark_field)
        amount = "FAllAmount" if config.price_field == "FTaxPrice" else "FAmount"
        entry = ["FPOOrderEntry_FSeq", "FMaterialId.FNumber", "FMaterialId.FName"]
        entry += ["FMaterialId.FSpecification", "FUnitId.FName", "FQty", config.price_field]
        entry += ["FEntryTaxRate", amount, "FDeliveryDate"]
        self.fields = head + entry
        self._head = len(head)

    def org_filter(self) -> str:
        """Only the configured purchasing organisation."""
        return f"FPurchaseOrgId.FNumber = {quote(self.config.org_number)}"

    def build(self, rows: Sequence[list[Any]]) -> list[NativeOrder]:
        """One NativeOrder per FID, in the rows' order (entry rows of one bill are adjacent)."""
        grouped: dict[int, list[list[Any]]] = {}
        for row in rows:
            grouped.setdefault(int(row[0]), []).append(row)
        return [self._order(bill_rows) for bill_rows in grouped.values()]

    def _order(self, rows: list[list[Any]]) -> NativeOrder:
        head = dict(zip(self.fields[: self._head], rows[0], strict=False))
        modified = parse_local(head["FModifyDate"], self.tz)
        if modified is None:
            raise Permanent(f"Kingdee order {head['FBillNo']} has no FModifyDate")
        key, doc_no = fid_key(int(head["FID"])), str(head["FBillNo"])
        status = status_of(str(head["FDocumentStatus"]), str(head["FCancelStatus"]))
        try:
            order = self._canonical(head, rows)
        except ValueError as exc:  # a bill the canonical model refuses (e.g. a negative quantity)
            return unusable(key, doc_no, modified, status, exc)
        return NativeOrder(key=key, doc_no=doc_no, modified=modified, status=status, order=order)

    def _canonical(self, head: dict[str, Any], rows: list[list[Any]]) -> PurchaseOrder:
        lines: list[OrderLine] = []
        dates: list[dt.date] = []
        for row in rows:
            e = row[self._head :]
            seq, code, name, spec, unit, qty, price, rate, amount, delivery = e
            lines.append(
                OrderLine(
                    line_no=int(seq),
                    material_code=str(code),
                    material_name=str(name or ""),
                    spec=str(spec or ""),
                    unit=str(unit or ""),
                    quantity=decimal(qty),
                    unit_price=decimal(price),
                    tax_rate=(decimal(rate) / 100).normalize() if rate is not None else None,
                    amount=decimal(amount),
                )
            )
            when = parse_local(delivery, self.tz)
            if when is not None:
                dates.append(when.astimezone(self.tz).date())
        buyer = self.config.buyer_field
        dept = head["FPurchaseDeptId.FNumber"]
        currency = str(head["FSettleCurrId.FCode"] or "CNY").upper()
        return PurchaseOrder(
            doc_no=str(head["FBillNo"]),
            revision=0,
            buyer=Person(
                # An order without a buyer falls back to its creator's login.
                erp_user=str(head[f"{buyer}.FNumber"] or head["FCreatorId.FUserAccount"]),
                name=str(head[f"{buyer}.FName"] or ""),
            ),
            department=CodeName(code=str(dept), name=str(head["FPurchaseDeptId.FName"] or ""))
            if dept
            else None,
            supplier=CodeName(
                code=str(head["FSupplierId.FNumber"]), name=str(head["FSupplierId.FName"] or "")
            ),
            currency=currency if len(currency) == 3 else "CNY",
            total_amount=decimal(head["FBillAllAmount"]),
            expected_date=min(dates) if dates else None,
            remark=str(head.get(self.config.remark_field or "", "") or ""),
            lines=lines,
        )
