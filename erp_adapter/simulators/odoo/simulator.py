"""`OdooSimulator`: a loopback Odoo 16-19 with seeded master data, driven by tests and the demo."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from erp_adapter.simulators import SimLine
from erp_adapter.simulators.loopback import Loopback
from erp_adapter.simulators.odoo import orm, purchase
from erp_adapter.simulators.odoo.orm import Env, Store
from erp_adapter.simulators.odoo.report import api_rfqs
from erp_adapter.simulators.odoo.server import Faults, OdooHttp
from erp_adapter.simulators.odoo.service import OdooService

_LOCAL = ZoneInfo("Asia/Shanghai")
_GROUPS = (
    orm.GROUP_USER,
    orm.GROUP_PURCHASE_USER,
    orm.GROUP_PURCHASE_MANAGER,
    orm.GROUP_STOCK_USER,
    "base.group_system",
)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class OdooSimulator:
    """An Odoo of a given major version (16, 17, 18 or 19) on loopback."""

    name = "odoo"

    def __init__(self, version: int = 17, db: str = "odoo") -> None:
        if version not in (16, 17, 18, 19):
            raise ValueError("version must be 16, 17, 18 or 19")
        self.version = version
        self.db = db
        self.login = "bridge"
        self.password = "bridge-password"  # noqa: S105 (a simulator's seeded user)
        self.api_key = secrets.token_hex(20)
        self.store = Store(version=version, clock=_utc_now)
        self.service = OdooService(self.store, db)
        self.faults = Faults()
        self.http = OdooHttp(self.service, self.faults)
        self._server = Loopback()
        self.base_url = ""
        self._seed()

    # -- serving ---------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on loopback; returns the base URL."""
        self.base_url = await self._server.start(self.http.app(), host, port)
        return self.base_url

    async def stop(self) -> None:
        """Stop serving."""
        await self._server.stop()

    def bridge_section(self) -> dict[str, Any]:
        """`[erp.odoo]` for this simulator (the API key is in `bridge_env`)."""
        return {
            "url": self.base_url,
            "db": self.db,
            "username": self.login,
            "poll_interval_s": 1.0,
            "requester": "u1001",
            "timezone": "Asia/Shanghai",
            "company_ids": [],
            "warehouses": [],
            "reject_action": "cancel",
            "stock_measure": "forecast",
            "unit_price": "tax_included",
            "remark_field": "notes",
            "supplier_code_field": "ref",
            "default_supplier": "S001",
            "api": "auto",
        }

    def bridge_env(self) -> dict[str, str]:
        """The integration user's API key."""
        return {"APPROVAL_BRIDGE__ERP__ODOO__API_KEY": self.api_key}

    # -- master data -----------------------------------------------------------------------

    def _insert(self, model: str, values: dict[str, Any]) -> int:
        return self.store.insert(model, values, self.store.clock())

    def _seed(self) -> None:
        for xmlid in _GROUPS:
            self.store.xmlids[xmlid] = self._insert(
                "res.groups", {"name": orm.GROUP_LABELS.get(xmlid, xmlid), "full_name": xmlid}
            )
        currency = self._insert("res.currency", {"name": "CNY", "symbol": "¥"})
        self._insert(
            "res.company",
            {
                "name": "YourCompany",
                "currency_id": currency,
                "po_double_validation": "two_step",
                # every order needs a manager: `amount_total < 0` never holds
                "po_double_validation_amount": Decimal(0),
                "po_lock": "edit",
            },
        )
        self.add_user("admin", "Administrator", manager=True, password="admin")  # noqa: S106
        self.add_user(self.login, "Approval Bridge", manager=True, password=self.password)
        self.store.get("res.users", self.uid(self.login))["api_keys"] = [self.api_key]
        self.add_user("u1001", "Li Lei")
        self._insert("uom.uom", {"name": "Pcs"})
        self.tax_13 = self._insert(
            "account.tax",
            {
                "name": "13%",
                "amount": Decimal(13),
                "amount_type": "percent",
                "price_include": False,
                "type_tax_use": "purchase",
            },
        )
        self.add_warehouse("WH", "Main Warehouse")
        self.add_supplier("S001", "Shenzhen Parts Co.")

    def uid(self, login: str) -> int:
        """The id of the user with this login."""
        for user in self.store.table("res.users").values():
            if user["login"] == login:
                return int(user["id"])
        raise KeyError(login)

    def add_user(
        self, login: str, name: str, *, manager: bool = False, password: str | None = None
    ) -> int:
        """An internal user, Purchase User (and Manager when `manager`) and Inventory User."""
        partner = self._insert("res.partner", {"name": name, "active": True, "supplier_rank": 0})
        groups = [orm.GROUP_USER, orm.GROUP_PURCHASE_USER, orm.GROUP_STOCK_USER]
        if manager:
            groups.append(orm.GROUP_PURCHASE_MANAGER)
        groups_field = "group_ids" if self.version >= 19 else "groups_id"
        ids = [self.store.xmlids[g] for g in groups]
        return self._insert(
            "res.users",
            {
                "login": login,
                "name": name,
                "active": True,
                "company_id": 1,
                "partner_id": partner,
                "password": password or f"{login}-password",
                "api_keys": [],
                "groups": ids,
                groups_field: ids,
            },
        )

    def set_groups(self, login: str, *xmlids: str) -> None:
        """Replace a user's groups (e.g. drop `purchase.group_purchase_manager`)."""
        user = self.store.get("res.users", self.uid(login))
        user["groups"] = [self.store.xmlids[x] for x in xmlids]
        user["group_ids" if self.version >= 19 else "groups_id"] = list(user["groups"])

    def revoke_api_key(self) -> None:
        """The integration user's API key is deleted (or expired)."""
        self.store.get("res.users", self.uid(self.login))["api_keys"] = []

    def restore_api_key(self) -> None:
        """The integration user's API key works again."""
        self.store.get("res.users", self.uid(self.login))["api_keys"] = [self.api_key]

    def drop_sessions(self) -> None:
        """Every web session (`/web/session/authenticate` cookie) expires."""
        self.http.sessions.clear()

    def set_clock(self, clock: Callable[[], dt.datetime]) -> None:
        """Naive-UTC time source for `write_date` and friends."""
        self.store.clock = clock

    def set_company(self, **values: Any) -> None:
        """Company settings: `po_double_validation`, `po_double_validation_amount`, `po_lock`."""
        company = self.store.get("res.company", 1)
        for key, value in values.items():
            company[key] = Decimal(str(value)) if key.endswith("amount") else value

    def add_supplier(self, code: str, name: str) -> int:
        """A vendor (`res.partner` with `ref` = code)."""
        return self._insert(
            "res.partner", {"name": name, "ref": code, "supplier_rank": 1, "active": True}
        )

    def add_warehouse(self, code: str, name: str) -> int:
        """A warehouse with its receipt operation type."""
        warehouse = self._insert(
            "stock.warehouse", {"name": name, "code": code, "company_id": 1, "active": True}
        )
        receipts = self._insert(
            "stock.picking.type", {"name": "Receipts", "warehouse_id": warehouse}
        )
        self.store.get("stock.warehouse", warehouse)["in_type_id"] = receipts
        return warehouse

    def add_material(self, code: str, name: str, unit: str = "Pcs") -> None:
        """A storable product with `default_code` = code."""
        uoms = [u for u in self.store.table("uom.uom").values() if u["name"] == unit]
        uom = uoms[0]["id"] if uoms else self._insert("uom.uom", {"name": unit})
        self._insert(
            "product.product",
            {
                "name": name,
                "default_code": code,
                "uom_id": uom,
                "uom_po_id": uom,
                "description_purchase": None,
                "active": True,
            },
        )

    def add_seller(self, material_code: str, supplier_code: str, price: Decimal) -> None:
        """A vendor price list line (`product.supplierinfo`)."""
        self._insert(
            "product.supplierinfo",
            {
                "partner_id": self._partner(supplier_code),
                "product_id": self._product(material_code),
                "price": price,
                "min_qty": Decimal(0),
                "sequence": 1,
            },
        )

    def _partner(self, code: str) -> int:
        for partner in self.store.table("res.partner").values():
            if partner.get("ref") == code:
                return int(partner["id"])
        return self.add_supplier(code, code)

    def _product(self, code: str) -> int:
        for product in self.store.table("product.product").values():
            if product.get("default_code") == code:
                return int(product["id"])
        raise KeyError(f"no material {code!r}: add_material first")

    def _warehouse(self, code: str) -> int:
        for warehouse in self.store.table("stock.warehouse").values():
            if warehouse["code"] == code:
                return int(warehouse["id"])
        return self.add_warehouse(code, code)

    def order_id(self, doc_no: str) -> int:
        """The id of the order with this name."""
        for order in self.store.table("purchase.order").values():
            if order["name"] == doc_no:
                return int(order["id"])
        raise KeyError(doc_no)

    def env(self, login: str | None = None) -> Env:
        """A transaction as `login` (the integration user by default), at the clock's time."""
        return Env(self.store, self.uid(login or self.login), self.store.clock())

    # -- documents -------------------------------------------------------------------------

    def _lines(self, lines: list[SimLine], taxes: list[int]) -> list[Any]:
        return [
            [
                0,
                0,
                {
                    "product_id": self._product(line.material_code),
                    "product_qty": line.quantity,
                    "price_unit": line.unit_price,
                    "taxes_id": [[6, 0, taxes]],
                },
            ]
            for line in lines
        ]

    def add_history(
        self,
        material_code: str,
        supplier_code: str,
        unit_price: Decimal,
        quantity: Decimal,
        ordered_on: dt.date,
    ) -> str:
        """A confirmed (`purchase`) order of one untaxed line, ordered at 10:00 Shanghai time."""
        env = self.env("admin")
        at = dt.datetime.combine(ordered_on, dt.time(10), _LOCAL).astimezone(dt.UTC)
        stamp = at.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S")
        order_id = purchase.create_order(
            env,
            {
                "partner_id": self._partner(supplier_code),
                "date_order": stamp,
                "order_line": self._lines([SimLine(material_code, quantity, unit_price)], []),
            },
        )
        purchase.write_order(env, [order_id], {"state": "purchase", "date_approve": stamp})
        return str(self.store.get("purchase.order", order_id)["name"])

    def submit_order(
        self, supplier_code: str, buyer: str, lines: list[SimLine], *, tax: bool = False
    ) -> str:
        """An RFQ by `buyer`, confirmed by them: it stops at `to approve` (two-step approval)."""
        try:
            self.uid(buyer)
        except KeyError:
            self.add_user(buyer, buyer)
        env = self.env(buyer)
        order_id = purchase.create_order(
            env,
            {
                "partner_id": self._partner(supplier_code),
                "order_line": self._lines(lines, [self.tax_13] if tax else []),
            },
        )
        purchase.button_confirm(self.env(buyer), [order_id])
        return str(self.store.get("purchase.order", order_id)["name"])

    def change_order(self, doc_no: str, line_index: int, quantity: Decimal) -> None:
        """The buyer edits a line quantity; an order sent back to draft is confirmed again."""
        order = self.store.get("purchase.order", self.order_id(doc_no))
        buyer = self.store.get("res.users", order["user_id"])["login"]
        line_id = order["order_line"][line_index]
        purchase.write_order(
            self.env(buyer),
            [order["id"]],
            {"order_line": [[1, line_id, {"product_qty": quantity}]]},
        )
        if order["state"] in ("draft", "sent"):
            purchase.button_confirm(self.env(buyer), [order["id"]])

    def set_state(self, doc_no: str, state: str, **values: Any) -> None:
        """Force an order's native state (and e.g. `locked=True` on 19), bumping `write_date`."""
        purchase.write_order(self.env("admin"), [self.order_id(doc_no)], {"state": state} | values)

    def order_state(self, doc_no: str) -> str:
        """The order's `state`."""
        return str(self.store.get("purchase.order", self.order_id(doc_no))["state"])

    def order_record(self, doc_no: str) -> dict[str, Any]:
        """The stored order row (internal values)."""
        return self.store.get("purchase.order", self.order_id(doc_no))

    def messages(self, doc_no: str) -> list[str]:
        """Chatter message bodies posted on an order, oldest first."""
        order_id = self.order_id(doc_no)
        return [
            str(m["body"])
            for m in self.store.table("mail.message").values()
            if m["model"] == "purchase.order" and m["res_id"] == order_id
        ]

    def set_stock(
        self,
        material_code: str,
        warehouse: str,
        on_hand: Decimal,
        safety_stock: Decimal,
        reorder_qty: Decimal,
    ) -> None:
        """A reordering rule: min = safety stock, max = on hand + reorder qty."""
        product, warehouse_id = self._product(material_code), self._warehouse(warehouse)
        values = {
            "product_min_qty": safety_stock,
            "product_max_qty": on_hand + reorder_qty,
            "qty_multiple": Decimal(1),
            "qty_on_hand": on_hand,
            "qty_forecast": on_hand,
        }
        for point in self.store.table("stock.warehouse.orderpoint").values():
            if point["product_id"] == product and point["warehouse_id"] == warehouse_id:
                point.update(values, write_date=self.store.clock())
                return
        self._insert(
            "stock.warehouse.orderpoint",
            {
                "name": f"OP/{material_code}/{warehouse}",
                "product_id": product,
                "warehouse_id": warehouse_id,
                "company_id": 1,
                "trigger": "auto",
                "active": True,
            }
            | values,
        )

    def requisitions(self) -> list[dict[str, Any]]:
        """RFQs created through the API by the integration user, with their `origin`."""
        return api_rfqs(self.store, self.uid(self.login))
