"""Reordering rules as stock levels, and draft RFQs as the requisitions of approved refills."""

from __future__ import annotations

from typing import Any

from approvals.errors import Permanent
from approvals.models import CodeName, Person, StockAlert
from approvals.ports import WriteBack
from erp_adapter.native.base import StockLevel
from erp_adapter.odoo import mapping
from erp_adapter.odoo.client import OdooClient
from erp_adapter.odoo.config import OdooConfig

Row = dict[str, Any]
_RULE_FIELDS = [
    "product_id", "warehouse_id", "product_min_qty", "product_max_qty", "qty_multiple",
    "qty_on_hand", "qty_forecast",
]  # fmt: skip


class StockReader:
    """`stock.warehouse.orderpoint` (Odoo's safety stock) and `purchase.order` drafts."""

    def __init__(self, client: OdooClient, config: OdooConfig) -> None:
        self._client = client
        self._config = config

    async def _read(self, model: str, ids: list[int], fields: list[str]) -> dict[int, Row]:
        if not ids:
            return {}
        rows = await self._client.call(model, "read", ids=sorted(set(ids)), fields=fields)
        return {int(row["id"]): row for row in rows}

    async def warehouses(self, codes: list[str]) -> dict[str, Row]:
        """Warehouses by code; a configured code Odoo does not know is a configuration error."""
        domain = [("code", "in", codes)] if codes else []
        rows: list[Row] = await self._client.call(
            "stock.warehouse", "search_read", domain=domain, fields=["code", "name", "in_type_id"]
        )
        found = {str(row["code"]): row for row in rows}
        missing = sorted(set(codes) - set(found))
        if missing:
            raise Permanent(f"Odoo has no warehouse with code {', '.join(missing)}")
        return found

    async def levels(self) -> list[StockLevel]:
        """One level per active reordering rule, measured as configured (forecast or on hand)."""
        domain: list[Any] = []
        if self._config.warehouses:
            found = await self.warehouses(self._config.warehouses)
            domain.append(("warehouse_id", "in", [int(w["id"]) for w in found.values()]))
        if self._config.company_ids:
            domain.append(("company_id", "in", list(self._config.company_ids)))
        rules: list[Row] = await self._client.call(
            "stock.warehouse.orderpoint", "search_read", domain=domain, fields=_RULE_FIELDS,
            order="id asc",
        )  # fmt: skip
        product_ids = [r[0] for rule in rules if (r := mapping.many2one(rule.get("product_id")))]
        products = await self._read(
            "product.product", product_ids, ["default_code", "name", "uom_id", "seller_ids"]
        )
        seller_ids = [i for p in products.values() for i in p.get("seller_ids") or []]
        sellers = await self._read("product.supplierinfo", seller_ids, ["partner_id", "sequence"])
        partner_ids = [r[0] for s in sellers.values() if (r := mapping.many2one(s["partner_id"]))]
        partners = await self._read(
            "res.partner", partner_ids, [self._config.supplier_code_field, "name"]
        )
        warehouse_ids = [r[0] for rule in rules if (r := mapping.many2one(rule["warehouse_id"]))]
        warehouses = await self._read("stock.warehouse", warehouse_ids, ["code"])
        levels = []
        for rule in rules:
            product_ref = mapping.many2one(rule.get("product_id"))
            warehouse_ref = mapping.many2one(rule.get("warehouse_id"))
            if not product_ref or not warehouse_ref:
                continue
            product = products.get(product_ref[0], {})
            levels.append(
                self._level(
                    rule, product, product_ref, warehouses[warehouse_ref[0]], sellers, partners
                )
            )
        return levels

    def _level(
        self,
        rule: Row,
        product: Row,
        product_ref: tuple[int, str],
        warehouse: Row,
        sellers: dict[int, Row],
        partners: dict[int, Row],
    ) -> StockLevel:
        field = "qty_forecast" if self._config.stock_measure == "forecast" else "qty_on_hand"
        measure = mapping.decimal(rule.get(field))
        maximum = mapping.decimal(rule.get("product_max_qty"))
        reorder = mapping.ceil_to(maximum - measure, mapping.decimal(rule.get("qty_multiple")))
        uom = mapping.many2one(product.get("uom_id"))
        return StockLevel(
            alert=StockAlert(
                material_code=str(product.get("default_code") or f"product-{product_ref[0]}"),
                material_name=str(product.get("name") or product_ref[1]),
                unit=uom[1] if uom else "",
                warehouse=str(warehouse["code"]),
                on_hand=measure,
                safety_stock=max(mapping.decimal(rule.get("product_min_qty")), mapping.decimal(0)),
                reorder_qty=reorder,
                preferred_supplier=self._preferred(product, sellers, partners),
                requester=Person(erp_user=self._config.requester),
            )
        )

    def _preferred(
        self, product: Row, sellers: dict[int, Row], partners: dict[int, Row]
    ) -> CodeName | None:
        mine = [sellers[i] for i in product.get("seller_ids") or [] if i in sellers]
        mine.sort(key=lambda s: (int(s.get("sequence") or 0), int(s["id"])))
        for seller in mine:
            ref = mapping.many2one(seller.get("partner_id"))
            if ref:
                code = partners.get(ref[0], {}).get(self._config.supplier_code_field)
                return CodeName(code=str(code) if code else str(ref[0]), name=ref[1])
        return None

    async def requisition(self, result: WriteBack) -> str:
        """A draft RFQ for the refill, `origin` = the idempotency key; found again on a repeat."""
        key = result.idempotency_key
        existing: list[Row] = await self._client.call(
            "purchase.order", "search_read", domain=[("origin", "=", key)], fields=["name"],
            limit=1,
        )  # fmt: skip
        if existing:
            return str(existing[0]["name"])
        if not result.material_code or not result.warehouse or result.quantity is None:
            raise Permanent(f"replenishment {key} lacks a material, warehouse or quantity")
        products: list[Row] = await self._client.call(
            "product.product", "search_read", domain=[("default_code", "=", result.material_code)],
            fields=["seller_ids"], limit=1,
        )  # fmt: skip
        if not products:
            raise Permanent(f"Odoo has no product with Internal Reference {result.material_code!r}")
        warehouse = (await self.warehouses([result.warehouse]))[result.warehouse]
        vendor = await self._vendor(products[0])
        picking = mapping.many2one(warehouse.get("in_type_id"))
        values: dict[str, Any] = {
            "partner_id": vendor,
            "origin": key,
            "order_line": [[0, 0, {
                "product_id": int(products[0]["id"]),
                # Odoo takes quantities as JSON numbers; this is a count, not money
                "product_qty": float(result.quantity),
            }]],
        }  # fmt: skip
        if picking:
            values["picking_type_id"] = picking[0]
        created = await self._client.call("purchase.order", "create", vals_list=[values])
        new_id = int(created[0] if isinstance(created, list) else created)
        rows = await self._client.call("purchase.order", "read", ids=[new_id], fields=["name"])
        return str(rows[0]["name"])

    async def _vendor(self, product: Row) -> int:
        """The product's first vendor, else the configured default supplier."""
        sellers = await self._read(
            "product.supplierinfo",
            list(product.get("seller_ids") or []),
            ["partner_id", "sequence"],
        )
        ordered = sorted(
            sellers.values(), key=lambda s: (int(s.get("sequence") or 0), int(s["id"]))
        )
        for seller in ordered:
            ref = mapping.many2one(seller.get("partner_id"))
            if ref:
                return ref[0]
        code = self._config.default_supplier
        if code:
            rows: list[Row] = await self._client.call(
                "res.partner", "search_read",
                domain=[(self._config.supplier_code_field, "=", code)], fields=["id"], limit=1,
            )  # fmt: skip
            if rows:
                return int(rows[0]["id"])
            raise Permanent(
                f"Odoo has no partner whose {self._config.supplier_code_field} is {code!r}"
            )
        raise Permanent(
            "the product has no vendor (Purchase tab) and no default_supplier is configured"
        )
