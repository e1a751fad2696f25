"""Save (new bills and updates) and View for the simulated bill forms."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from erp_adapter.simulators.kingdee.model import Bill, OpError, PoEntry, ReqEntry, Store
from erp_adapter.simulators.kingdee.query import get_key


def _ref(model: dict[str, Any], name: str) -> str | None:
    """A base-data reference `{"FNumber": "S001"}` (any case of FNumber), or None."""
    value = get_key(model, name)
    if value is None:
        return None
    if isinstance(value, dict):
        number = get_key(value, "FNumber")
        return None if number in (None, "") else str(number)
    return str(value)


def _decimal(model: dict[str, Any], name: str, default: Decimal | None = None) -> Decimal:
    value = get_key(model, name)
    if value is None:
        if default is None:
            raise OpError(f"字段“{name}”是必录项", 11, name)
        return default
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise OpError(f"字段“{name}”的值“{value}”不是数字", 8, name) from None


def _date(model: dict[str, Any], name: str, default: dt.datetime) -> dt.datetime:
    value = get_key(model, name)
    if value in (None, ""):
        return default
    try:
        return dt.datetime.fromisoformat(str(value).replace("T", " "))
    except ValueError:
        raise OpError(f"字段“{name}”的日期“{value}”格式不正确", 8, name) from None


def _known(store: Store, table: dict[str, Any], name: str, number: str | None) -> str:
    if number is None or number not in table:
        raise OpError(f"字段“{name}”的值“{number}”在基础资料中不存在", 9, name)
    return number


def save(store: Store, form: str, data: dict[str, Any]) -> Bill:
    """Save: a new bill (status A) or, with FID, an update of a bill not submitted nor audited."""
    model = get_key(data, "Model")
    if not isinstance(model, dict):
        raise OpError("Model 不能为空", 8)
    fid = int(get_key(model, "FID", 0) or 0)
    if fid:
        bill = store.bills.get(fid)
        if bill is None or bill.form != form:
            raise OpError(f"内码为“{fid}”的单据不存在", 10)
        if bill.status in ("B", "C"):
            raise OpError(f"单据编号为“{bill.number}”的单据已提交或已审核，不允许修改", 12)
        _fill(store, bill, model, update=True)
        store.touch(bill)
        return bill
    now = store.now()
    bill = Bill(form, 0, "", now, now, now)
    _fill(store, bill, model, update=False)  # validates before anything is stored
    bill.fid = store.new_id()
    number = get_key(model, "FBillNo")
    bill.number = str(number) if number else store.new_number(form)
    store.bills[bill.fid] = bill
    return bill


def _fill(store: Store, bill: Bill, model: dict[str, Any], update: bool) -> None:
    if bill.form == "PUR_PurchaseOrder":
        _fill_po(store, bill, model, update)
    else:
        _fill_req(store, bill, model, update)


def _fill_po(store: Store, bill: Bill, model: dict[str, Any], update: bool) -> None:
    if not update or get_key(model, "FSupplierId") is not None:
        bill.supplier = _known(store, store.suppliers, "FSupplierId", _ref(model, "FSupplierId"))
    if get_key(model, "FPurchaserId") is not None:
        bill.purchaser = _known(store, store.buyers, "FPurchaserId", _ref(model, "FPurchaserId"))
    if get_key(model, "FPurchaseDeptId") is not None:
        bill.dept = _known(store, store.depts, "FPurchaseDeptId", _ref(model, "FPurchaseDeptId"))
    bill.org = _ref(model, "FPurchaseOrgId") or bill.org
    bill.date = _date(model, "FDate", bill.date)
    finance = get_key(model, "FPOOrderFinance") or {}
    currency = _ref(finance, "FSettleCurrId")
    if currency is not None:
        bill.currency = _known(store, dict(store.currencies), "FSettleCurrId", currency)
    if get_key(model, "FRemarks") is not None:
        bill.note = str(get_key(model, "FRemarks"))
    entries = get_key(model, "FPOOrderEntry")
    if entries is None and update:
        return
    if not entries:
        raise OpError("采购订单至少需要一行明细", 11, "FPOOrderEntry")
    out: list[PoEntry] = []
    for seq, item in enumerate(entries, start=1):
        material = _known(store, store.materials, "FMaterialId", _ref(item, "FMaterialId"))
        rate = _decimal(item, "FEntryTaxRate", Decimal(13))
        if get_key(item, "FTaxPrice") is not None:
            tax_price = _decimal(item, "FTaxPrice")
        else:
            tax_price = (_decimal(item, "FPrice") * (1 + rate / 100)).quantize(Decimal("0.000001"))
        delivery = _date(item, "FDeliveryDate", bill.date)
        entry_id = int(get_key(item, "FEntryID", 0) or 0) or store.new_id()
        out.append(
            PoEntry(entry_id, seq, material, _decimal(item, "FQty"), tax_price, rate, delivery)
        )
    bill.po_entries = out


def _fill_req(store: Store, bill: Bill, model: dict[str, Any], update: bool) -> None:
    bill.date = _date(model, "FApplicationDate", bill.date)
    bill.org = _ref(model, "FApplicationOrgId") or bill.org
    if get_key(model, "FNote") is not None:
        bill.note = str(get_key(model, "FNote"))
    entries = get_key(model, "FEntity")
    if entries is None and update:
        return
    if not entries:
        raise OpError("采购申请单至少需要一行明细", 11, "FEntity")
    out: list[ReqEntry] = []
    for seq, item in enumerate(entries, start=1):
        material = _known(store, store.materials, "FMaterialId", _ref(item, "FMaterialId"))
        stock = _ref(item, "FStockId")
        if stock is not None:
            _known(store, store.stocks, "FStockId", stock)
        out.append(ReqEntry(store.new_id(), seq, material, _decimal(item, "FReqQty"), stock))
    bill.req_entries = out


def _ml(text: str | None) -> list[dict[str, Any]]:
    """A multilingual value as View returns it."""
    return [{"Key": 2052, "Value": text or ""}]


def view(store: Store, bill: Bill) -> dict[str, Any]:
    """View's model: ORM property names without the F prefix, multilingual names as lists."""
    model: dict[str, Any] = {
        "Id": bill.fid,
        "BillNo": bill.number,
        "DocumentStatus": bill.status,
        "CancelStatus": bill.cancel_status,
        "Date": bill.date.isoformat(),
        "ModifyDate": bill.modified.isoformat(),
    }
    if bill.form == "PUR_PurchaseOrder":
        model["SupplierId"] = {
            "Number": bill.supplier,
            "Name": _ml(store.suppliers.get(bill.supplier)),
        }
        model["POOrderEntry"] = [
            {
                "Id": e.entry_id,
                "Seq": e.seq,
                "MaterialId": {"Number": e.material, "Name": _ml(store.materials[e.material].name)},
                "Qty": float(e.qty),
                "TaxPrice": float(e.tax_price),
                "EntryTaxRate": float(e.tax_rate),
            }
            for e in bill.po_entries
        ]
    else:
        model["Note"] = bill.note
        model["Entity"] = [
            {
                "Id": e.entry_id,
                "Seq": e.seq,
                "MaterialId": {"Number": e.material},
                "ReqQty": float(e.qty),
            }
            for e in bill.req_entries
        ]
    return model
