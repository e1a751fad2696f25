"""`OdooAdapter`: the bridge's `NativeErp` over Odoo's external API."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal

from approvals.db.price_repo import PriceRow
from approvals.errors import Permanent
from approvals.models import Decision
from approvals.ports import WriteBack
from erp_adapter.native.base import CheckItem, Cursor, NativeOrder, PricePoint, StockLevel
from erp_adapter.odoo import mapping
from erp_adapter.odoo.checks import run_checks
from erp_adapter.odoo.client import OdooClient
from erp_adapter.odoo.config import OdooConfig
from erp_adapter.odoo.reader import OrderReader, Row, Schema
from erp_adapter.odoo.stock import StockReader

MANAGER_GROUP = "purchase.group_purchase_manager"
USER_GROUP = "purchase.group_purchase_user"


class OdooAdapter:
    """Polls `purchase.order` by `write_date`, acts with `button_*`, notes decisions in chatter."""

    name = "odoo"

    def __init__(self, config: OdooConfig, client: OdooClient) -> None:
        self._config = config
        self.client = client
        self._schema: Schema | None = None
        self._lock = asyncio.Lock()

    async def schema(self) -> Schema:
        """Version-dependent field names, detected once with `fields_get`."""
        async with self._lock:
            if self._schema is None:
                lines = await self.client.call(
                    "purchase.order.line", "fields_get", attributes=["type"]
                )
                orders = await self.client.call(
                    "purchase.order", "fields_get", attributes=["type", "selection"]
                )
                states = {s[0] for s in orders.get("state", {}).get("selection", [])}
                self._schema = Schema(
                    uom_field="product_uom_id" if "product_uom_id" in lines else "product_uom",
                    has_locked="locked" in orders,
                    approved_states=("purchase", "done") if "done" in states else ("purchase",),
                )
            return self._schema

    async def _reader(self) -> OrderReader:
        return OrderReader(self.client, self._config, await self.schema())

    async def orders_since(self, after: Cursor, limit: int) -> Sequence[NativeOrder]:
        """Orders with (write_date second, id) after the cursor; keys are zero-padded ids."""
        reader = await self._reader()
        rows = await reader.changed(
            "purchase.order", reader.company_domain(), reader.order_fields(), after, limit
        )
        return await reader.build(rows)

    async def order(self, doc_no: str) -> NativeOrder | None:
        """One order by its name, read fresh."""
        reader = await self._reader()
        rows: list[Row] = await self.client.call(
            "purchase.order", "search_read",
            domain=[("name", "=", doc_no), *reader.company_domain()],
            fields=reader.order_fields(), limit=1,
        )  # fmt: skip
        built = await reader.build(rows)
        return built[0] if built else None

    async def _state(self, order_id: int) -> str:
        rows: list[Row] = await self.client.call(
            "purchase.order", "read", ids=[order_id], fields=["state"]
        )
        if not rows:
            raise Permanent(f"Odoo purchase.order {order_id} no longer exists")
        return str(rows[0]["state"])

    async def approve(self, order: NativeOrder, result: WriteBack) -> None:
        """`button_approve`, then re-read: Odoo skips orders the user may not approve, silently."""
        order_id = mapping.decode_key(order.key)
        await self.client.call("purchase.order", "button_approve", ids=[order_id])
        state = await self._state(order_id)
        if state == "to approve":
            raise Permanent(
                f"Odoo left {order.doc_no} 'to approve' after button_approve: the integration "
                f"user {self._config.username!r} is not a Purchase Manager "
                f"({MANAGER_GROUP}); Odoo skips orders the caller may not approve without an "
                "error. Grant Purchase: Administrator to that user."
            )
        if state not in ("purchase", "done"):
            raise Permanent(f"Odoo did not approve {order.doc_no}: it is now {state!r}")
        await self._note(order_id, result)

    async def reject(self, order: NativeOrder, result: WriteBack) -> None:
        """`button_cancel` (or `button_draft`), re-read, then a chatter note with the reasons."""
        order_id = mapping.decode_key(order.key)
        draft = self._config.reject_action == "draft"
        await self.client.call(
            "purchase.order", "button_draft" if draft else "button_cancel", ids=[order_id]
        )
        state = await self._state(order_id)
        wanted = "draft" if draft else "cancel"
        if state != wanted:
            raise Permanent(
                f"Odoo left {order.doc_no} {state!r} after button_{wanted}: the integration user "
                f"{self._config.username!r} may lack write access to purchase orders, or a "
                "customisation blocks the change"
            )
        await self._note(order_id, result)

    async def _note(self, order_id: int, result: WriteBack) -> None:
        """The approvers and their comments as an internal note in the order's chatter."""
        verb = "approved" if result.decision is Decision.APPROVED else "rejected"
        people = "; ".join(
            f"{a.name or a.user_id} {a.result}" + (f": {a.comment}" if a.comment else "")
            for a in result.approvers
        )
        body = f"DingTalk approval {verb} ({result.process_instance_id})" + (
            f" by {people}" if people else ""
        )
        await self.client.call(
            "purchase.order", "message_post", ids=[order_id],
            body=body, message_type="comment", subtype_xmlid="mail.mt_note",
        )  # fmt: skip

    async def stock_levels(self) -> Sequence[StockLevel]:
        """Every active reordering rule in the configured companies and warehouses."""
        return await StockReader(self.client, self._config).levels()

    async def create_requisition(self, result: WriteBack) -> str:
        """A draft RFQ whose `origin` is the idempotency key; an existing one is returned."""
        return await StockReader(self.client, self._config).requisition(result)

    async def prices_since(self, after: Cursor, limit: int) -> Sequence[PricePoint]:
        """One point per (approved order, product), keyed `<padded order id>/<material>`."""
        reader = await self._reader()
        domain = [("state", "in", list((await self.schema()).approved_states))]
        domain += reader.company_domain()
        fields = ["name", "date_order", "currency_id", "partner_id", "write_date", "order_line"]
        start, wanted = after, limit
        if "/" in after[1]:  # resume inside the cursor's order: read it again, and `limit` more
            start = (after[0], mapping.encode_key(max(0, mapping.decode_key(after[1]) - 1)))
            wanted = limit + 1
        rows = await reader.changed("purchase.order", domain, fields, start, wanted)
        lines = await reader.lines(rows)
        products = await reader.products(line for group in lines.values() for line in group)
        partners = await reader.partners(
            r[0] for row in rows if (r := mapping.many2one(row.get("partner_id")))
        )
        points: list[PricePoint] = []
        for row in rows:
            points.extend(self._points(reader, row, lines[int(row["id"])], products, partners))
        points = [
            p
            for p in points
            if (mapping.second(p.cursor[0]), p.cursor[1]) > (mapping.second(after[0]), after[1])
        ]
        points.sort(key=lambda p: p.cursor)
        return points[:limit]

    def _points(
        self,
        reader: OrderReader,
        row: Row,
        lines: list[Row],
        products: dict[int, Row],
        partners: dict[int, Row],
    ) -> list[PricePoint]:
        modified = mapping.parse_utc(row["write_date"])
        ordered = mapping.parse_utc(row.get("date_order")) or modified
        assert modified is not None and ordered is not None
        partner = mapping.many2one(row.get("partner_id")) or (0, "")
        supplier = reader.supplier(partners.get(partner[0]), partner)
        currency = mapping.many2one(row.get("currency_id"))
        totals: dict[str, tuple[Decimal, Decimal]] = {}
        for line in lines:
            ref = mapping.many2one(line.get("product_id")) or (0, "")
            code = reader.material_code(products.get(ref[0]), ref)
            quantity = mapping.decimal(line.get("product_qty"))
            if self._config.unit_price == "tax_included":
                amount = mapping.decimal(line.get("price_total"))
            else:
                amount = quantity * mapping.decimal(line.get("price_unit"))
            qty, value = totals.get(code, (Decimal(0), Decimal(0)))
            totals[code] = (qty + quantity, value + amount)
        key = mapping.encode_key(int(row["id"]))
        return [
            PricePoint(
                cursor=(modified, f"{key}/{code}"),
                row=PriceRow(
                    material_code=code,
                    supplier_code=supplier.code,
                    unit_price=mapping.tidy(value / qty),
                    currency=currency[1][:3] if currency else "CNY",
                    quantity=qty,
                    ordered_at=ordered,
                    doc_no=str(row["name"]),
                    source="erp",
                ),
            )
            for code, (qty, value) in sorted(totals.items())
            if qty > 0
        ]

    async def check(self) -> Sequence[CheckItem]:
        """Reachability, login, and the rights the bridge needs, each with how to fix it."""
        return await run_checks(self.client, self._config)

    async def close(self) -> None:
        """Nothing to release: the HTTP session belongs to the caller."""

    def __repr__(self) -> str:
        return f"OdooAdapter({self._config.url!r}, db={self._config.db!r})"
