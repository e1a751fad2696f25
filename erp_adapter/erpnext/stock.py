"""Stock against reorder levels, and Material Requests raised for approved replenishments."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from approvals.errors import Permanent
from approvals.models import CodeName, Person, StockAlert
from approvals.ports import WriteBack
from erp_adapter.erpnext.client import ALL, Doc, FrappeClient
from erp_adapter.erpnext.config import ErpnextConfig
from erp_adapter.erpnext.feed import chunks
from erp_adapter.erpnext.mapping import money, number
from erp_adapter.native.base import StockLevel

MR = "Material Request"
REF_PREFIX = "approval-bridge:"


async def _rows(
    client: FrappeClient,
    doctype: str,
    fields: list[str],
    key: str,
    names: Sequence[str],
    parent: str | None = None,
) -> list[Doc]:
    rows: list[Doc] = []
    for part in chunks(names):
        rows += await client.get_list(
            doctype, fields, [[key, "in", part]], order_by="name asc", limit=ALL, parent=parent
        )
    return rows


async def levels(client: FrappeClient, config: ErpnextConfig) -> list[StockLevel]:
    """Item Reorder rows (type Purchase) joined with Bins, Items and default suppliers."""
    filters: list[list[object]] = [["material_request_type", "=", "Purchase"]]
    if config.warehouses:
        filters.append(["warehouse", "in", config.warehouses])
    fields = ["parent", "warehouse", "warehouse_reorder_level", "warehouse_reorder_qty"]
    rules = await client.get_list(
        "Item Reorder", fields, filters, order_by="parent asc", limit=ALL, parent="Item"
    )
    if config.company:
        ours = await client.get_list(
            "Warehouse", ["name"], [["company", "=", config.company]], order_by="name asc"
        )
        allowed = {str(w["name"]) for w in ours}
        rules = [r for r in rules if r["warehouse"] in allowed]
    codes = sorted({str(r["parent"]) for r in rules})
    items = {
        str(i["name"]): i
        for i in await _rows(
            client, "Item", ["name", "item_name", "stock_uom", "disabled"], "name", codes
        )
        if not i.get("disabled")
    }
    measure = f"{config.stock_measure}_qty"
    bins = {
        (str(b["item_code"]), str(b["warehouse"])): number(b.get(measure))
        for b in await _rows(client, "Bin", ["item_code", "warehouse", measure], "item_code", codes)
    }
    suppliers = await _suppliers(client, config, list(items))
    requester = Person(erp_user=config.requester)
    found: list[StockLevel] = []
    for rule in rules:
        code, warehouse = str(rule["parent"]), str(rule["warehouse"])
        item = items.get(code)
        if item is None:
            continue
        alert = StockAlert(
            material_code=code,
            material_name=str(item.get("item_name") or ""),
            unit=str(item.get("stock_uom") or ""),
            warehouse=warehouse,
            on_hand=money(bins.get((code, warehouse), number(0))),
            safety_stock=money(number(rule.get("warehouse_reorder_level"))),
            reorder_qty=money(number(rule.get("warehouse_reorder_qty"))),
            preferred_supplier=suppliers.get(code),
            requester=requester,
        )
        found.append(StockLevel(alert=alert))
    return sorted(found, key=lambda s: (s.alert.material_code, s.alert.warehouse))


async def _suppliers(
    client: FrappeClient, config: ErpnextConfig, codes: list[str]
) -> dict[str, CodeName]:
    """Item Defaults' default supplier per item (of the configured company, if any)."""
    rows = await _rows(
        client,
        "Item Default",
        ["parent", "company", "default_supplier"],
        "parent",
        codes,
        parent="Item",
    )
    chosen = {
        str(r["parent"]): str(r["default_supplier"])
        for r in rows
        if r.get("default_supplier") and (not config.company or r.get("company") == config.company)
    }
    names = {
        str(s["name"]): str(s.get("supplier_name") or "")
        for s in await _rows(
            client, "Supplier", ["name", "supplier_name"], "name", sorted(set(chosen.values()))
        )
    }
    return {code: CodeName(code=sup, name=names.get(sup, "")) for code, sup in chosen.items()}


async def requisition(
    client: FrappeClient, config: ErpnextConfig, result: WriteBack, zone: ZoneInfo
) -> str:
    """The Material Request for this decision: found by its key, else created and submitted."""
    if not result.material_code or not result.warehouse or result.quantity is None:
        raise Permanent(f"replenishment {result.approval_id} lacks material, warehouse or quantity")
    ref = f"{REF_PREFIX}{result.idempotency_key}"
    field = config.requisition_ref_field
    existing = await client.get_list(
        MR, ["name", "docstatus", "modified"], [[field, "=", ref]], order_by="creation asc", limit=1
    )
    if existing:
        doc = existing[0]
        if int(doc.get("docstatus") or 0) == 0:  # created earlier, submit lost
            await _submit(client, str(doc["name"]))
        return str(doc["name"])
    today = dt.datetime.now(zone).date()
    needed = (today + dt.timedelta(days=config.requisition_lead_days)).isoformat()
    data: Doc = {
        "material_request_type": "Purchase",
        "transaction_date": today.isoformat(),
        "schedule_date": needed,
        "set_warehouse": result.warehouse,
        field: ref,
        "items": [
            {
                "item_code": result.material_code,
                "qty": result.quantity,
                "warehouse": result.warehouse,
                "schedule_date": needed,
            }
        ],
    }
    if config.company:
        data["company"] = config.company
    created = await client.insert(MR, data)
    await client.call("frappe.client.submit", doc=created)
    return str(created["name"])


async def _submit(client: FrappeClient, name: str) -> None:
    doc = await client.get_doc(MR, name)
    if doc is not None and int(doc.get("docstatus") or 0) == 0:
        await client.call("frappe.client.submit", doc=doc)
