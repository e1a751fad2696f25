"""What tests read back from the simulated Odoo: the RFQs the bridge created."""

from __future__ import annotations

from typing import Any

from erp_adapter.simulators.odoo.orm import Store


def _warehouse_code(store: Store, picking_type: int | None) -> str | None:
    if not picking_type:
        return None
    warehouse = store.get("stock.picking.type", picking_type)["warehouse_id"]
    return str(store.get("stock.warehouse", warehouse)["code"])


def api_rfqs(store: Store, bridge_uid: int) -> list[dict[str, Any]]:
    """Orders the integration user created with an `origin` (the bridge's reference)."""
    result = []
    for order in store.table("purchase.order").values():
        if order.get("user_id") != bridge_uid or not order.get("origin"):
            continue
        lines = [store.get("purchase.order.line", i) for i in order["order_line"]]
        result.append(
            {
                "name": order["name"],
                "origin": order["origin"],
                "reference": order["origin"],
                "state": order["state"],
                "supplier": store.get("res.partner", order["partner_id"]).get("ref"),
                "warehouse": _warehouse_code(store, order.get("picking_type_id")),
                "lines": [
                    {
                        "material_code": store.get("product.product", line["product_id"])[
                            "default_code"
                        ],
                        "quantity": line["product_qty"],
                    }
                    for line in lines
                ],
            }
        )
    return result
