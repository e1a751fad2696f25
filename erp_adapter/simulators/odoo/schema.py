"""The models and fields the simulated Odoo knows, per server version (16 to 19)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    """One field as `fields_get` describes it."""

    type: str
    string: str
    relation: str = ""
    selection: tuple[tuple[str, str], ...] = ()
    readonly: bool = False


def _f(kind: str, label: str, relation: str = "") -> Field:
    return Field(kind, label, relation)


PO_STATES_16 = (
    ("draft", "RFQ"),
    ("sent", "RFQ Sent"),
    ("to approve", "To Approve"),
    ("purchase", "Purchase Order"),
    ("done", "Locked"),
    ("cancel", "Cancelled"),
)
PO_STATES_19 = tuple(item for item in PO_STATES_16 if item[0] != "done")

MODEL_LABELS = {
    "res.company": "Companies",
    "res.currency": "Currency",
    "res.users": "User",
    "res.groups": "Access Groups",
    "res.partner": "Contact",
    "uom.uom": "Product Unit of Measure",
    "product.product": "Product Variant",
    "product.supplierinfo": "Supplier Pricelist",
    "account.tax": "Tax",
    "stock.warehouse": "Warehouse",
    "stock.picking.type": "Picking Type",
    "stock.warehouse.orderpoint": "Minimum Inventory Rule",
    "purchase.order": "Purchase Order",
    "purchase.order.line": "Purchase Order Line",
    "mail.message": "Message",
}


def fields_for(model: str, version: int) -> dict[str, Field]:
    """The fields of `model` on Odoo `version` (KeyError for an unknown model)."""
    common = {
        "id": _f("integer", "ID"),
        "display_name": _f("char", "Display Name"),
        "create_date": _f("datetime", "Created on"),
        "write_date": _f("datetime", "Last Updated on"),
    }
    return common | _MODELS[model](version)


def _company(version: int) -> dict[str, Field]:
    return {
        "name": _f("char", "Company Name"),
        "currency_id": _f("many2one", "Currency", "res.currency"),
        "po_double_validation": Field(
            "selection", "Levels of Approvals", selection=(("one_step", "1"), ("two_step", "2"))
        ),
        "po_double_validation_amount": _f("monetary", "Double validation amount"),
        "po_lock": Field(
            "selection",
            "Purchase Order Modification",
            selection=(
                ("edit", "Allow to edit purchase orders"),
                ("lock", "Confirmed purchase orders are not editable"),
            ),
        ),
    }


def _currency(version: int) -> dict[str, Field]:
    return {"name": _f("char", "Currency"), "symbol": _f("char", "Symbol")}


def _users(version: int) -> dict[str, Field]:
    groups = "group_ids" if version >= 19 else "groups_id"
    return {
        "name": _f("char", "Name"),
        "login": _f("char", "Login"),
        "active": _f("boolean", "Active"),
        "company_id": _f("many2one", "Company", "res.company"),
        groups: _f("many2many", "Groups", "res.groups"),
    }


def _groups(version: int) -> dict[str, Field]:
    return {"name": _f("char", "Name"), "full_name": _f("char", "Group Name")}


def _partner(version: int) -> dict[str, Field]:
    return {
        "name": _f("char", "Name"),
        "ref": _f("char", "Reference"),
        "supplier_rank": _f("integer", "Supplier Rank"),
        "active": _f("boolean", "Active"),
    }


def _uom(version: int) -> dict[str, Field]:
    return {"name": _f("char", "Unit of Measure")}


def _product(version: int) -> dict[str, Field]:
    return {
        "name": _f("char", "Name"),
        "default_code": _f("char", "Internal Reference"),
        "uom_id": _f("many2one", "Unit of Measure", "uom.uom"),
        "uom_po_id": _f("many2one", "Purchase Unit of Measure", "uom.uom"),
        "description_purchase": _f("text", "Purchase Description"),
        "seller_ids": _f("one2many", "Vendors", "product.supplierinfo"),
        "active": _f("boolean", "Active"),
    }


def _supplierinfo(version: int) -> dict[str, Field]:
    return {
        "partner_id": _f("many2one", "Vendor", "res.partner"),
        "product_id": _f("many2one", "Product Variant", "product.product"),
        "price": _f("float", "Price"),
        "min_qty": _f("float", "Quantity"),
        "sequence": _f("integer", "Sequence"),
    }


def _tax(version: int) -> dict[str, Field]:
    return {
        "name": _f("char", "Tax Name"),
        "amount": _f("float", "Amount"),
        "amount_type": Field(
            "selection",
            "Tax Computation",
            selection=(("percent", "Percentage of Price"), ("fixed", "Fixed")),
        ),
        "price_include": _f("boolean", "Included in Price"),
        "type_tax_use": _f("char", "Tax Type"),
    }


def _warehouse(version: int) -> dict[str, Field]:
    return {
        "name": _f("char", "Warehouse"),
        "code": _f("char", "Short Name"),
        "company_id": _f("many2one", "Company", "res.company"),
        "in_type_id": _f("many2one", "In Type", "stock.picking.type"),
        "active": _f("boolean", "Active"),
    }


def _picking_type(version: int) -> dict[str, Field]:
    return {
        "name": _f("char", "Operation Type"),
        "warehouse_id": _f("many2one", "Warehouse", "stock.warehouse"),
    }


def _orderpoint(version: int) -> dict[str, Field]:
    return {
        "name": _f("char", "Name"),
        "product_id": _f("many2one", "Product", "product.product"),
        "warehouse_id": _f("many2one", "Warehouse", "stock.warehouse"),
        "company_id": _f("many2one", "Company", "res.company"),
        "product_min_qty": _f("float", "Min Quantity"),
        "product_max_qty": _f("float", "Max Quantity"),
        "qty_multiple": _f("float", "Multiple Quantity"),
        "qty_on_hand": _f("float", "On Hand"),
        "qty_forecast": _f("float", "Forecast"),
        "qty_to_order": _f("float", "To Order"),
        "trigger": Field(
            "selection", "Trigger", selection=(("auto", "Auto"), ("manual", "Manual"))
        ),
        "active": _f("boolean", "Active"),
    }


def _order(version: int) -> dict[str, Field]:
    fields = {
        "name": _f("char", "Order Reference"),
        "state": Field(
            "selection", "Status", selection=PO_STATES_19 if version >= 19 else PO_STATES_16
        ),
        "partner_id": _f("many2one", "Vendor", "res.partner"),
        "partner_ref": _f("char", "Vendor Reference"),
        "origin": _f("char", "Source Document"),
        "date_order": _f("datetime", "Order Deadline"),
        "date_approve": _f("datetime", "Confirmation Date"),
        "date_planned": _f("datetime", "Expected Arrival"),
        "currency_id": _f("many2one", "Currency", "res.currency"),
        "amount_untaxed": _f("monetary", "Untaxed Amount"),
        "amount_tax": _f("monetary", "Taxes"),
        "amount_total": _f("monetary", "Total"),
        "order_line": _f("one2many", "Order Lines", "purchase.order.line"),
        "user_id": _f("many2one", "Buyer", "res.users"),
        "company_id": _f("many2one", "Company", "res.company"),
        "picking_type_id": _f("many2one", "Deliver To", "stock.picking.type"),
        "notes": _f("html", "Terms and Conditions"),
        "invoice_status": _f("char", "Billing Status"),
    }
    if version >= 17:
        fields["receipt_status"] = _f("char", "Receipt Status")
    if version >= 19:
        fields["locked"] = _f("boolean", "Locked")
    return fields


def _order_line(version: int) -> dict[str, Field]:
    uom = "product_uom_id" if version >= 19 else "product_uom"
    return {
        "order_id": _f("many2one", "Order Reference", "purchase.order"),
        "sequence": _f("integer", "Sequence"),
        "product_id": _f("many2one", "Product", "product.product"),
        "name": _f("text", "Description"),
        "product_qty": _f("float", "Quantity"),
        "product_uom_qty": _f("float", "Total Quantity"),
        uom: _f("many2one", "Unit of Measure", "uom.uom"),
        "price_unit": _f("float", "Unit Price"),
        "discount": _f("float", "Discount (%)"),
        "taxes_id": _f("many2many", "Taxes", "account.tax"),
        "price_subtotal": _f("monetary", "Subtotal"),
        "price_tax": _f("float", "Tax"),
        "price_total": _f("monetary", "Total"),
        "date_planned": _f("datetime", "Expected Arrival"),
        "partner_id": _f("many2one", "Partner", "res.partner"),
        "state": Field(
            "selection", "Status", selection=PO_STATES_19 if version >= 19 else PO_STATES_16
        ),
        "date_order": _f("datetime", "Order Date"),
        "date_approve": _f("datetime", "Confirmation Date"),
        "currency_id": _f("many2one", "Currency", "res.currency"),
        "display_type": _f("char", "Display Type"),
    }


def _message(version: int) -> dict[str, Field]:
    return {
        "model": _f("char", "Related Document Model"),
        "res_id": _f("integer", "Related Document ID"),
        "body": _f("html", "Contents"),
        "message_type": _f("char", "Type"),
        "subtype_xmlid": _f("char", "Subtype"),
        "author_id": _f("many2one", "Author", "res.partner"),
    }


_MODELS = {
    "res.company": _company,
    "res.currency": _currency,
    "res.users": _users,
    "res.groups": _groups,
    "res.partner": _partner,
    "uom.uom": _uom,
    "product.product": _product,
    "product.supplierinfo": _supplierinfo,
    "account.tax": _tax,
    "stock.warehouse": _warehouse,
    "stock.picking.type": _picking_type,
    "stock.warehouse.orderpoint": _orderpoint,
    "purchase.order": _order,
    "purchase.order.line": _order_line,
    "mail.message": _message,
}
