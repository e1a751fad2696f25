"""Bodies of CONTRACT section 2 webhooks for the load generator, built cheaply from templates."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

OCCURRED_AT = "2026-11-25T10:00:00+08:00"


def order_data(doc_no: str, lines: int = 3, revision: int = 1) -> dict[str, Any]:
    """A purchase order of a few lines, priced like the demo's history."""
    rows = [
        {
            "line_no": n,
            "material_code": f"M-{n:03d}",
            "material_name": f"物料{n}",
            "spec": "CNMG120408",
            "unit": "片",
            "quantity": "100",
            "unit_price": "12.00",
            "tax_rate": "0.13",
            "amount": "1200.00",
        }
        for n in range(1, lines + 1)
    ]
    return {
        "doc_no": doc_no,
        "revision": revision,
        "buyer": {"erp_user": "u1001", "name": "张三"},
        "department": {"code": "D01", "name": "采购部"},
        "supplier": {"code": "S001", "name": "杭州某某五金有限公司"},
        "currency": "CNY",
        "total_amount": f"{1200 * lines}.00",
        "expected_date": "2026-12-01",
        "remark": "bench",
        "lines": rows,
    }


def stock_data(material: str, warehouse: str = "WH1") -> dict[str, Any]:
    """A below-safety-stock alert for one material."""
    return {
        "material_code": material,
        "material_name": f"物料{material}",
        "unit": "片",
        "warehouse": warehouse,
        "on_hand": "80",
        "safety_stock": "500",
        "reorder_qty": "1000",
        "preferred_supplier": {"code": "S001", "name": "杭州某某五金有限公司"},
        "requester": {"erp_user": "u1002", "name": "李四"},
    }


class BodyFactory:
    """Unique event bodies by substitution into one serialized template (no JSON per request)."""

    _EVENT, _KEY = b"@@EVENT@@", b"@@KEY@@"

    def __init__(self, kind: str, prefix: str, lines: int = 3, materials: int = 1) -> None:
        self._prefix = prefix.encode()
        self._materials = materials
        if kind == "order":
            data: dict[str, Any] = order_data("@@KEY@@", lines)
            type_ = "purchase_order.submitted"
        elif kind == "stock":
            data = stock_data("@@KEY@@")
            type_ = "stock.below_safety"
        else:
            raise ValueError(f"unknown event kind {kind!r}")
        self._kind = kind
        envelope = {"event_id": "@@EVENT@@", "type": type_, "occurred_at": OCCURRED_AT}
        self._template = json.dumps(envelope | {"data": data}, ensure_ascii=False).encode()

    def body(self, n: int) -> bytes:
        """The n-th event: its own event id; its own order, or material n modulo the count."""
        event_id = self._prefix + b"-e%d" % n
        if self._kind == "order":
            key = self._prefix + b"-%d" % n
        else:
            key = self._prefix + b"-M%d" % (n % self._materials)
        return self._template.replace(self._EVENT, event_id).replace(self._KEY, key)


def signature(secret: bytes, timestamp: int, body: bytes) -> bytes:
    """`X-Bridge-Signature`, written out so the load generator shares no code with the service."""
    mac = hmac.new(secret, b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    return b"v1=" + mac.encode()
