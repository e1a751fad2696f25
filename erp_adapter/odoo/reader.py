"""Reads purchase orders with their lines and master data in a few batched queries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from approvals.models import CodeName, OrderLine, Person, PurchaseOrder
from erp_adapter.native.base import Cursor, NativeOrder, unusable
from erp_adapter.odoo import mapping
from erp_adapter.odoo.client import OdooClient
from erp_adapter.odoo.config import OdooConfig

Row = dict[str, Any]
_LINE_FIELDS = [
    "order_id", "sequence", "product_id", "name", "product_qty", "price_unit",
    "price_subtotal", "price_total", "taxes_id", "display_type",
]  # fmt: skip


@dataclass(frozen=True)
class Schema:
    """Field names that differ between Odoo versions, detected with `fields_get`."""

    uom_field: str
    """`product_uom` (16-18.0) or `product_uom_id` (saas-18.1+, 19)."""
    has_locked: bool
    """18.3+/19 replaced the `done` state with a `locked` flag."""
    approved_states: tuple[str, ...]


class OrderReader:
    """Turns `purchase.order` rows into `NativeOrder`s."""

    def __init__(self, client: OdooClient, config: OdooConfig, schema: Schema) -> None:
        self._client = client
        self._config = config
        self._schema = schema
        self._zone = ZoneInfo(config.timezone)

    def order_fields(self) -> list[str]:
        """The `purchase.order` fields every read asks for."""
        fields = [
            "name", "state", "partner_id", "user_id", "company_id", "currency_id",
            "amount_total", "amount_untaxed", "date_order", "date_planned", "write_date",
            "order_line", self._config.remark_field,
        ]  # fmt: skip
        return [*fields, "locked"] if self._schema.has_locked else fields

    def company_domain(self) -> list[Any]:
        """The organisation filter."""
        ids = self._config.company_ids
        return [("company_id", "in", list(ids))] if ids else []

    async def changed(
        self, model: str, domain: list[Any], fields: list[str], after: Cursor, limit: int
    ) -> list[Row]:
        """Rows with (write second, id) after the cursor, in that order, at most `limit`.

        Odoo sorts by the stored microseconds, which it does not report: when the page is
        full, the last second is read again whole, by id, so no row of it is skipped.
        """
        order = "write_date asc, id asc"
        rows: list[Row] = await self._client.call(
            model, "search_read", domain=domain + mapping.after_domain(after),
            fields=fields, order=order, limit=limit,
        )  # fmt: skip
        if len(rows) >= limit:
            last = str(rows[-1]["write_date"])
            start = mapping.parse_utc(last)
            assert start is not None
            first_id = mapping.decode_key(after[1]) if start == mapping.second(after[0]) else 0
            end = mapping.to_odoo(start + dt.timedelta(seconds=1))
            same_second = [
                ("write_date", ">=", last),
                ("write_date", "<", end),
                ("id", ">", first_id),
            ]
            tail: list[Row] = await self._client.call(
                model, "search_read", domain=[*domain, *same_second], fields=fields, order="id asc"
            )
            rows = [r for r in rows if str(r["write_date"]) != last] + tail
        rows.sort(key=lambda r: (str(r["write_date"]), int(r["id"])))
        return rows[:limit]

    async def read_ids(self, model: str, ids: Iterable[int], fields: list[str]) -> dict[int, Row]:
        """Rows by id, in one `read` (nothing asked, nothing read)."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        rows: list[Row] = await self._client.call(model, "read", ids=wanted, fields=fields)
        return {int(row["id"]): row for row in rows}

    async def lines(self, orders: Sequence[Row]) -> dict[int, list[Row]]:
        """Each order's lines (sections and notes dropped), in sequence order."""
        line_ids = [i for order in orders for i in order.get("order_line") or []]
        fields = [*_LINE_FIELDS, self._schema.uom_field]
        by_id = await self.read_ids("purchase.order.line", line_ids, fields)
        result: dict[int, list[Row]] = {int(o["id"]): [] for o in orders}
        for line in by_id.values():
            ref = mapping.many2one(line.get("order_id"))
            if ref and ref[0] in result and not line.get("display_type") and line.get("product_id"):
                result[ref[0]].append(line)
        for rows in result.values():
            rows.sort(key=lambda r: (int(r.get("sequence") or 0), int(r["id"])))
        return result

    async def products(self, lines: Iterable[Row]) -> dict[int, Row]:
        """The lines' products (code and name)."""
        ids = [ref[0] for line in lines if (ref := mapping.many2one(line.get("product_id")))]
        return await self.read_ids("product.product", ids, ["default_code", "name"])

    async def partners(self, ids: Iterable[int]) -> dict[int, Row]:
        """Vendors with their code field."""
        return await self.read_ids("res.partner", ids, [self._config.supplier_code_field, "name"])

    def supplier(self, partner: Row | None, ref: tuple[int, str]) -> CodeName:
        """A vendor as a code and name (the partner id when the code field is empty)."""
        code = partner.get(self._config.supplier_code_field) if partner else None
        return CodeName(code=str(code) if code else str(ref[0]), name=ref[1])

    def material_code(self, product: Row | None, ref: tuple[int, str]) -> str:
        """A product's Internal Reference, or its id when it has none."""
        code = product.get("default_code") if product else None
        return str(code) if code else f"product-{ref[0]}"

    async def build(self, rows: Sequence[Row]) -> list[NativeOrder]:
        """`NativeOrder`s for order rows, with lines, products, vendors, buyers and taxes."""
        lines = await self.lines(rows)
        every_line = [line for group in lines.values() for line in group]
        products = await self.products(every_line)
        tax_ids = [t for line in every_line for t in line.get("taxes_id") or []]
        taxes = await self.read_ids("account.tax", tax_ids, ["amount", "amount_type"])
        partner_ids = [r[0] for row in rows if (r := mapping.many2one(row.get("partner_id")))]
        partners = await self.partners(partner_ids)
        user_ids = [r[0] for row in rows if (r := mapping.many2one(row.get("user_id")))]
        users = await self.read_ids("res.users", user_ids, ["login", "name"])
        return [
            self._native(row, lines[int(row["id"])], products, taxes, partners, users)
            for row in rows
        ]

    def _native(
        self,
        row: Row,
        lines: list[Row],
        products: dict[int, Row],
        taxes: dict[int, Row],
        partners: dict[int, Row],
        users: dict[int, Row],
    ) -> NativeOrder:
        user = mapping.many2one(row.get("user_id"))
        login = users.get(user[0], {}).get("login") if user else None
        buyer = Person(
            erp_user=str(login) if login else self._config.requester,
            name=user[1] if user else "",
        )
        planned = mapping.parse_utc(row.get("date_planned"))
        modified = mapping.parse_utc(row.get("write_date"))
        assert modified is not None
        key, status = mapping.encode_key(int(row["id"])), mapping.status(str(row.get("state")))
        try:
            order = self._order(row, buyer, lines, products, taxes, partners, planned)
        except ValueError as exc:  # an order the canonical model refuses (e.g. a negative price)
            return unusable(key, str(row["name"]), modified, status, exc)
        return NativeOrder(
            key=key, doc_no=order.doc_no, modified=modified, status=status, order=order
        )

    def _order(
        self,
        row: Row,
        buyer: Person,
        lines: list[Row],
        products: dict[int, Row],
        taxes: dict[int, Row],
        partners: dict[int, Row],
        planned: dt.datetime | None,
    ) -> PurchaseOrder:
        included = self._config.unit_price == "tax_included"
        partner = mapping.many2one(row.get("partner_id")) or (0, "")
        currency = mapping.many2one(row.get("currency_id"))
        return PurchaseOrder(
            doc_no=str(row["name"]),
            revision=0,
            buyer=buyer,
            supplier=self.supplier(partners.get(partner[0]), partner),
            currency=currency[1][:3] if currency else "CNY",
            total_amount=mapping.decimal(row["amount_total" if included else "amount_untaxed"]),
            expected_date=planned.astimezone(self._zone).date() if planned else None,
            remark=mapping.text(row.get(self._config.remark_field))[:4000],
            lines=[self._line(i, line, products, taxes) for i, line in enumerate(lines, 1)]
            or [OrderLine(line_no=1, material_code="-", quantity="0", unit_price="0")],
        )

    def _line(
        self, line_no: int, line: Row, products: dict[int, Row], taxes: dict[int, Row]
    ) -> OrderLine:
        ref = mapping.many2one(line.get("product_id")) or (0, "")
        product = products.get(ref[0])
        quantity = mapping.decimal(line.get("product_qty"))
        total = mapping.decimal(line.get("price_total"))
        if self._config.unit_price == "tax_included":
            price = (
                mapping.tidy(total / quantity) if quantity else mapping.decimal(line["price_unit"])
            )
            amount = total
        else:
            price, amount = (
                mapping.decimal(line["price_unit"]),
                mapping.decimal(line["price_subtotal"]),
            )
        rate = sum(
            (mapping.decimal(taxes[t]["amount"]) for t in line.get("taxes_id") or []
             if t in taxes and taxes[t].get("amount_type") == "percent"),
            Decimal(0),
        )  # fmt: skip
        uom = mapping.many2one(line.get(self._schema.uom_field))
        description = mapping.text(line.get("name"))
        return OrderLine(
            line_no=line_no,
            material_code=self.material_code(product, ref),
            material_name=str(product.get("name") or "") if product else ref[1],
            # Odoo puts the purchase description under the product's name in the line text
            spec="\n".join(description.splitlines()[1:])[:512],
            unit=uom[1] if uom else "",
            quantity=quantity,
            unit_price=price,
            tax_rate=mapping.tidy(rate / 100) if line.get("taxes_id") else None,
            amount=amount,
        )
