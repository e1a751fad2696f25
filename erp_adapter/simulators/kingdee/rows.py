"""Query rows per form: field keys (dotted base-data paths, entry fields) and their values."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from erp_adapter.simulators.kingdee.filter import Row
from erp_adapter.simulators.kingdee.model import Bill, Material, PoEntry, ReqEntry, Store

Head = Callable[[Store, Bill], Any]
Line = Callable[[Store, Bill, Any], Any]


def _amount(entry: PoEntry) -> Decimal:
    return (entry.qty * entry.tax_price).quantize(Decimal("0.01"))


def _net_price(entry: PoEntry) -> Decimal:
    return (entry.tax_price / (1 + entry.tax_rate / 100)).quantize(Decimal("0.000001"))


def _bill_head() -> dict[str, Head]:
    return {
        "fid": lambda s, b: b.fid,
        "fbillno": lambda s, b: b.number,
        "fdate": lambda s, b: b.date,
        "fdocumentstatus": lambda s, b: b.status,
        "fcancelstatus": lambda s, b: b.cancel_status,
        "fclosestatus": lambda s, b: "A",
        "fcreatedate": lambda s, b: b.created,
        "fmodifydate": lambda s, b: b.modified,
        "fapprovedate": lambda s, b: b.approved,
        "fcreatorid.fuseraccount": lambda s, b: "bridge",
    }


def _po_head() -> dict[str, Head]:
    head = _bill_head()
    head.update(
        {
            "fbilltypeid.fnumber": lambda s, b: "CGDD01_SYS",
            "fsupplierid.fnumber": lambda s, b: b.supplier,
            "fsupplierid.fname": lambda s, b: s.suppliers.get(b.supplier),
            "fpurchaseorgid.fnumber": lambda s, b: b.org,
            "fpurchasedeptid.fnumber": lambda s, b: b.dept or None,
            "fpurchasedeptid.fname": lambda s, b: s.depts.get(b.dept),
            "fpurchaserid.fnumber": lambda s, b: b.purchaser or None,
            "fpurchaserid.fname": lambda s, b: s.buyers.get(b.purchaser),
            "fsettlecurrid.fnumber": lambda s, b: b.currency,
            "fsettlecurrid.fcode": lambda s, b: s.currencies[b.currency][0],
            "fsettlecurrid.fname": lambda s, b: s.currencies[b.currency][1],
            "fbillallamount": lambda s, b: sum((_amount(e) for e in b.po_entries), Decimal(0)),
            "fremarks": lambda s, b: b.note,
        }
    )
    return head


def _material(key: str) -> Callable[[Store, str], Any]:
    def get(store: Store, number: str) -> Any:
        mat = store.materials.get(number)
        if mat is None:
            return None
        return {"fnumber": mat.number, "fname": mat.name, "fspecification": mat.spec}[key]

    return get


def _po_entry() -> dict[str, Line]:
    return {
        "fpoorderentry_fentryid": lambda s, b, e: e.entry_id,
        "fpoorderentry_fseq": lambda s, b, e: e.seq,
        "fmaterialid.fnumber": lambda s, b, e: _material("fnumber")(s, e.material),
        "fmaterialid.fname": lambda s, b, e: _material("fname")(s, e.material),
        "fmaterialid.fspecification": lambda s, b, e: _material("fspecification")(s, e.material),
        "funitid.fnumber": lambda s, b, e: s.materials[e.material].unit,
        "funitid.fname": lambda s, b, e: s.units.get(s.materials[e.material].unit),
        "fqty": lambda s, b, e: e.qty,
        "fprice": lambda s, b, e: _net_price(e),
        "ftaxprice": lambda s, b, e: e.tax_price,
        "fentrytaxrate": lambda s, b, e: e.tax_rate,
        "fallamount": lambda s, b, e: _amount(e),
        "famount": lambda s, b, e: (e.qty * _net_price(e)).quantize(Decimal("0.01")),
        "fdeliverydate": lambda s, b, e: e.delivery,
    }


def _req_head() -> dict[str, Head]:
    head = _bill_head()
    head.update(
        {
            "fbilltypeid.fnumber": lambda s, b: "CGSQD01_SYS",
            "frequesttype": lambda s, b: "Material",
            "fapplicationdate": lambda s, b: b.date,
            "fapplicationorgid.fnumber": lambda s, b: b.org,
            "fnote": lambda s, b: b.note,
        }
    )
    return head


def _req_entry() -> dict[str, Line]:
    return {
        "fentity_fentryid": lambda s, b, e: e.entry_id,
        "fentity_fseq": lambda s, b, e: e.seq,
        "fmaterialid.fnumber": lambda s, b, e: e.material,
        "fmaterialid.fname": lambda s, b, e: _material("fname")(s, e.material),
        "freqqty": lambda s, b, e: e.qty,
        "fstockid.fnumber": lambda s, b, e: e.stock,
    }


def _material_rows(store: Store) -> list[Row]:
    def row(m: Material) -> Row:
        return {
            "fmaterialid": m.fid,
            "fnumber": m.number,
            "fname": m.name,
            "fspecification": m.spec,
            "fbaseunitid.fnumber": m.unit,
            "fbaseunitid.fname": store.units.get(m.unit),
            "fuseorgid.fnumber": m.org,
            "fcreateorgid.fnumber": m.org,
            "fisenablesafestock": m.safe_stock_enabled,
            "fsafestock": m.safe_stock,
            "feconreorderqty": m.reorder_qty,
            "fstockid.fnumber": m.default_stock,
            "fdocumentstatus": "C",
            "fforbidstatus": "A",
        }

    return [row(m) for m in store.materials.values()]


def _inventory_rows(store: Store) -> list[Row]:
    return [
        {
            "fmaterialid.fnumber": material,
            "fmaterialid.fname": store.materials[material].name,
            "fstockid.fnumber": stock,
            "fstockid.fname": store.stocks.get(stock),
            "fstockorgid.fnumber": store.materials[material].org,
            "fbaseqty": qty,
            "fqty": qty,
            "fbaseavbqty": qty,
            "favbqty": qty,
            "flot": None,
        }
        for (material, stock), qty in store.inventory.items()
    ]


def _named(items: dict[str, str], number_key: str = "fnumber") -> list[Row]:
    return [{number_key: k, "fname": v, "fdocumentstatus": "C"} for k, v in items.items()]


_BILL_FORMS = {
    "PUR_PurchaseOrder": (_po_head(), _po_entry(), "po_entries"),
    "PUR_Requisition": (_req_head(), _req_entry(), "req_entries"),
}
FORMS = (*_BILL_FORMS, "BD_MATERIAL", "STK_Inventory", "BD_Supplier", "BD_STOCK", "BD_BUYER")
FORMS += ("BD_Department", "SEC_User")


def canonical_form(form_id: str) -> str | None:
    """The form id as the server knows it (form ids are case-insensitive), or None."""
    return next((f for f in FORMS if f.lower() == form_id.lower()), None)


def known_fields(store: Store, form: str) -> tuple[set[str], set[str]]:
    """(head fields, entry fields) of a form, lower-cased."""
    if form in _BILL_FORMS:
        head, entry, _ = _BILL_FORMS[form]
        return set(head), set(entry)
    rows = flat_rows(store, form, False)
    sample = rows[0] if rows else _empty_sample(store, form)
    return set(sample), set()


def _empty_sample(store: Store, form: str) -> Row:
    probe = Store()
    probe.materials["_"] = Material(0, "_", "_", "Pcs")
    probe.inventory[("_", "_")] = Decimal(0)
    probe.suppliers["_"] = probe.buyers["_"] = probe.stocks["_"] = "_"
    probe.depts["_"] = probe.users["_"] = "_"
    return flat_rows(probe, form, False)[0]


def flat_rows(store: Store, form: str, with_entries: bool) -> list[Row]:
    """Every row of a form: one per entry when entry fields are asked for, else one per bill."""
    if form in _BILL_FORMS:
        head, entry, attr = _BILL_FORMS[form]
        out: list[Row] = []
        for bill in sorted(store.bills.values(), key=lambda b: b.fid):
            if bill.form != form:
                continue
            base = {k: f(store, bill) for k, f in head.items()}
            if not with_entries:
                out.append(base)
                continue
            lines: list[PoEntry] | list[ReqEntry] = getattr(bill, attr)
            for line in lines:
                out.append(base | {k: f(store, bill, line) for k, f in entry.items()})
        return out
    if form == "BD_MATERIAL":
        return _material_rows(store)
    if form == "STK_Inventory":
        return _inventory_rows(store)
    if form == "BD_Supplier":
        return _named(store.suppliers)
    if form == "BD_STOCK":
        return _named(store.stocks)
    if form == "BD_BUYER":
        return _named(store.buyers)
    if form == "BD_Department":
        return _named(store.depts)
    return [
        {"fuseraccount": k, "fname": v, "fuserid": i}
        for i, (k, v) in enumerate(store.users.items())
    ]
