"""The doctypes the simulated ERPNext site knows: columns, child tables, role permissions."""

from __future__ import annotations


def _f(names: str) -> tuple[str, ...]:
    return tuple(names.split())


_PARENT = ("name", "owner", "creation", "modified", "modified_by", "docstatus", "idx", "_user_tags")
_CHILD = ("name", "parent", "parenttype", "parentfield", "idx", "docstatus", "owner", "creation")

_FIELDS: dict[str, tuple[str, ...]] = {
    "Purchase Order": _f(
        "title naming_series supplier supplier_name transaction_date "
        "schedule_date company currency conversion_rate set_warehouse total_qty "
        "total net_total total_taxes_and_charges grand_total rounded_total "
        "status workflow_state terms per_received per_billed amended_from"
    ),
    "Purchase Order Item": _f(
        "item_code item_name description uom stock_uom conversion_factor qty "
        "rate amount net_rate net_amount warehouse schedule_date "
        "item_tax_template item_tax_rate material_request"
    ),
    "Purchase Taxes and Charges": _f(
        "charge_type account_head description rate tax_amount total "
        "add_deduct_tax category included_in_print_rate"
    ),
    "Supplier": _f("supplier_name supplier_group disabled"),
    "Item": _f("item_code item_name item_group stock_uom description disabled is_stock_item"),
    "Item Reorder": _f(
        "warehouse warehouse_group warehouse_reorder_level "
        "warehouse_reorder_qty material_request_type"
    ),
    "Item Default": _f("company default_warehouse default_supplier"),
    "Bin": _f("item_code warehouse actual_qty projected_qty reserved_qty ordered_qty stock_uom"),
    "Warehouse": _f("warehouse_name company is_group disabled"),
    "Company": _f("company_name default_currency"),
    "Material Request": _f(
        "title naming_series material_request_type transaction_date "
        "schedule_date company set_warehouse status per_ordered"
    ),
    "Material Request Item": _f(
        "item_code item_name description qty uom stock_uom conversion_factor "
        "warehouse schedule_date"
    ),
    "Comment": _f("comment_type reference_doctype reference_name content comment_email comment_by"),
    "User": _f("email username full_name first_name enabled user_type api_key"),
    "Has Role": _f("role"),
    "Workflow": _f("workflow_name document_type is_active workflow_state_field"),
}

TABLES: dict[str, dict[str, str]] = {
    "Purchase Order": {"items": "Purchase Order Item", "taxes": "Purchase Taxes and Charges"},
    "Material Request": {"items": "Material Request Item"},
    "Item": {"reorder_levels": "Item Reorder", "item_defaults": "Item Default"},
    "User": {"roles": "Has Role"},
}
"""Parent doctype -> its table fields and their child doctypes."""

CHILD_OF = {child: parent for parent, tables in TABLES.items() for child in tables.values()}
"""Child doctype -> the parent doctype it belongs to."""

SUBMITTABLE = {"Purchase Order", "Material Request"}

NAMING = {"Purchase Order": "PUR-ORD-.YYYY.-", "Material Request": "MAT-MR-.YYYY.-"}
"""Naming series (`.YYYY.` is the year, then a 5-digit counter)."""

_BUY = {"Purchase User", "Purchase Manager"}
_STOCK = {"Stock User", "Stock Manager"}

DEFAULT_PERMS: dict[str, dict[str, set[str]]] = {
    "Purchase Order": {
        "read": _BUY | {"Stock User"},
        "write": set(_BUY),
        "create": set(_BUY),
        "submit": {"Purchase Manager"},
        "cancel": {"Purchase Manager"},
    },
    "Supplier": {"read": _BUY | _STOCK},
    "Item": {"read": _BUY | _STOCK | {"Item Manager"}},
    "Bin": {"read": _BUY | _STOCK},
    "Warehouse": {"read": _BUY | _STOCK},
    "Company": {"read": {"All"}},
    "Material Request": {
        "read": _BUY | _STOCK,
        "write": _BUY | _STOCK,
        "create": _BUY | _STOCK,
        "submit": _BUY | _STOCK,
        "cancel": {"Purchase Manager", "Stock Manager"},
    },
    "Comment": {"read": {"All"}, "create": {"All"}},
    "User": {"read": set()},
    "Workflow": {"read": set()},
}
"""Role permissions as a fresh ERPNext site has them (System Manager may do everything)."""


def ordered(doctype: str, custom: dict[str, set[str]]) -> list[str]:
    """Every column of a doctype's table in Frappe's order, then the site's custom fields."""
    base = _CHILD if doctype in CHILD_OF else _PARENT
    return [*base, *_FIELDS.get(doctype, ()), *sorted(custom.get(doctype, set()))]


def columns(doctype: str, custom: dict[str, set[str]]) -> set[str]:
    """Every column of a doctype's table, with the site's custom fields."""
    return set(ordered(doctype, custom))


def known(doctype: str) -> bool:
    """Whether the site has this doctype."""
    return doctype in _FIELDS


NUMERIC = set(
    _f(
        "qty rate amount net_rate net_amount conversion_factor conversion_rate "
        "total_qty total net_total total_taxes_and_charges grand_total "
        "rounded_total tax_amount warehouse_reorder_level warehouse_reorder_qty "
        "actual_qty projected_qty reserved_qty ordered_qty per_received "
        "per_billed per_ordered"
    )
)
"""Float/Currency fields: kept as Decimal here, sent as JSON numbers as Frappe does."""
INTEGER = set(_f("docstatus idx disabled is_group enabled is_stock_item included_in_print_rate"))
DATES = {"transaction_date", "schedule_date"}
DATETIMES = {"creation", "modified"}
