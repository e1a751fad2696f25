"""What ERPNext's document controllers do on validate: links, defaults, totals, status."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from erp_adapter.simulators.erpnext.errors import FrappeError, ValidationError
from erp_adapter.simulators.erpnext.site import Doc, Site

_CENT = Decimal("0.01")
MR_TYPES = ("Purchase", "Material Transfer", "Material Issue", "Manufacture", "Customer Provided")


class LinkValidationError(ValidationError):
    """417: a Link field names a record that does not exist."""

    exc_type = "LinkValidationError"


class MandatoryError(ValidationError):
    """417: a required field is empty."""

    exc_type = "MandatoryError"


def _money(value: Decimal) -> Decimal:
    return value.quantize(_CENT, ROUND_HALF_UP)


def _link(site: Site, doctype: str, name: Any, label: str) -> Doc:
    doc = site.table(doctype).get(str(name)) if name else None
    if doc is None:
        raise LinkValidationError(f"Could not find {label}: {name}")
    return doc


def _items(site: Site, doc: Doc, default_warehouse: Any) -> None:
    if not doc.get("items"):
        raise MandatoryError(f"[{doc['doctype']}, {doc['name']}]: items")
    for row in doc["items"]:
        item = _link(site, "Item", row.get("item_code"), f"Row #{row['idx']}: Item Code")
        row["item_name"] = row.get("item_name") or item["item_name"]
        row["description"] = row.get("description") or item["description"] or item["item_name"]
        row["stock_uom"] = item["stock_uom"]
        row["uom"] = row.get("uom") or item["stock_uom"]
        row["conversion_factor"] = row.get("conversion_factor") or Decimal(1)
        row["warehouse"] = row.get("warehouse") or default_warehouse
        row["schedule_date"] = row.get("schedule_date") or doc.get("schedule_date")
        if row.get("qty") is None or row["qty"] <= 0:
            raise ValidationError(f"Row #{row['idx']}: Quantity must be greater than zero")


def purchase_order(site: Site, doc: Doc) -> None:
    """`PurchaseOrder.validate` in short: supplier, items, taxes and totals, status."""
    supplier = _link(site, "Supplier", doc.get("supplier"), "Supplier")
    doc["supplier_name"] = supplier["supplier_name"]
    doc["title"] = doc.get("title") or supplier["supplier_name"]
    doc["transaction_date"] = doc.get("transaction_date") or site.now().date()
    doc["schedule_date"] = doc.get("schedule_date") or doc["transaction_date"]
    doc["currency"] = doc.get("currency") or "CNY"
    doc["conversion_rate"] = doc.get("conversion_rate") or Decimal(1)
    doc["naming_series"] = doc.get("naming_series") or "PUR-ORD-.YYYY.-"
    _items(site, doc, doc.get("set_warehouse"))
    net = Decimal(0)
    for row in doc["items"]:
        row["rate"] = row.get("rate") or Decimal(0)
        row["amount"] = _money(row["qty"] * row["rate"])
        row["net_rate"], row["net_amount"] = row["rate"], row["amount"]
        net += row["amount"]
    taxes = Decimal(0)
    for tax in doc.get("taxes", []):
        if tax.get("charge_type") == "On Net Total":
            tax["tax_amount"] = _money(net * (tax.get("rate") or Decimal(0)) / 100)
        amount = tax.get("tax_amount") or Decimal(0)
        taxes += -amount if tax.get("add_deduct_tax") == "Deduct" else amount
        tax["total"] = net + taxes
    doc["total_qty"] = sum((row["qty"] for row in doc["items"]), Decimal(0))
    doc["total"] = doc["net_total"] = net
    doc["total_taxes_and_charges"] = taxes
    doc["grand_total"] = net + taxes
    doc["rounded_total"] = doc["grand_total"].quantize(Decimal(1), ROUND_HALF_UP)
    doc["per_received"] = doc.get("per_received") or Decimal(0)
    doc["per_billed"] = doc.get("per_billed") or Decimal(0)
    doc["status"] = {0: "Draft", 1: "To Receive and Bill", 2: "Cancelled"}[doc["docstatus"]]


def material_request(site: Site, doc: Doc) -> None:
    """`MaterialRequest.validate` in short: type, items, dates, status."""
    if doc.get("material_request_type") not in MR_TYPES:
        raise ValidationError(f"Material Request Type must be one of {', '.join(MR_TYPES)}")
    if not doc.get("schedule_date"):
        raise MandatoryError(f"[Material Request, {doc['name']}]: schedule_date")
    doc["transaction_date"] = doc.get("transaction_date") or site.now().date()
    doc["company"] = doc.get("company") or default_company(site)
    doc["naming_series"] = doc.get("naming_series") or "MAT-MR-.YYYY.-"
    doc["title"] = doc.get("title") or f"{doc['material_request_type']} Request"
    _items(site, doc, doc.get("set_warehouse"))
    for row in doc["items"]:
        if row.get("warehouse"):
            _link(site, "Warehouse", row["warehouse"], f"Row #{row['idx']}: Warehouse")
    doc["per_ordered"] = doc.get("per_ordered") or Decimal(0)
    doc["status"] = {0: "Draft", 1: "Pending", 2: "Cancelled"}[doc["docstatus"]]


def comment(site: Site, user: str, doc: Doc) -> None:
    """A Comment needs a readable reference document."""
    ref_type, ref_name = doc.get("reference_doctype"), doc.get("reference_name")
    if not ref_type or not ref_name:
        raise MandatoryError("[Comment]: reference_doctype, reference_name")
    site.read(user, str(ref_type), str(ref_name))
    doc["comment_type"] = doc.get("comment_type") or "Comment"
    doc["comment_email"] = doc.get("comment_email") or user


def default_company(site: Site) -> str | None:
    """The site's first company, as Global Defaults would name it."""
    return next(iter(site.table("Company")), None)


def validate(site: Site, user: str, doc: Doc) -> None:
    """Run the doctype's controller, if it has one."""
    kind = doc["doctype"]
    if kind == "Purchase Order":
        doc["company"] = doc.get("company") or default_company(site)
        purchase_order(site, doc)
    elif kind == "Material Request":
        material_request(site, doc)
    elif kind == "Comment":
        comment(site, user, doc)


__all__ = ["FrappeError", "LinkValidationError", "MandatoryError", "validate"]
