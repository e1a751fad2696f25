"""`ErpnextSimulator`: a loopback ERPNext site with master data, drivable by tests and the demo."""

from __future__ import annotations

import datetime as dt
import secrets
from decimal import Decimal
from typing import Any

from erp_adapter.simulators import SimLine
from erp_adapter.simulators.erpnext import controllers
from erp_adapter.simulators.erpnext.docflow import DocFlow
from erp_adapter.simulators.erpnext.server import Api
from erp_adapter.simulators.erpnext.site import ADMIN, Doc, Site, to_json
from erp_adapter.simulators.erpnext.webhook import WebhookSender
from erp_adapter.simulators.loopback import Loopback

API_USER = "bridge@example.com"
BUYER = "u1001@example.com"
COMPANY = "Demo Co"
_ENV = "APPROVAL_BRIDGE__ERP__ERPNEXT__"


class ErpnextSimulator:
    """An ERPNext site (Frappe REST) on loopback, with the Purchase Order workflow on or off."""

    name = "erpnext"

    def __init__(self, *, workflow: bool = True, timezone: str = "Asia/Shanghai") -> None:
        self.site = Site(timezone)
        self.flow = DocFlow(self.site)
        if not workflow:
            self.flow.workflow = None
        self.api = Api(self.site, self.flow)
        self.faults = self.api.faults
        self.api_key = "bridge-" + secrets.token_hex(4)
        self.api_secret = secrets.token_hex(12)
        self.webhook: WebhookSender | None = None
        self.base_url = ""
        self._server = Loopback()
        self._seed()

    def _seed(self) -> None:
        site = self.site
        site.table("Company")[COMPANY] = {
            **site.create(
                ADMIN, "Company", {"company_name": COMPANY, "default_currency": "CNY"}, COMPANY
            )
        }
        self.add_warehouse("Stores - DC")
        self.add_supplier("S001", "Shanghai Steel Co.")
        site.add_user(
            API_USER,
            "bridge",
            "Approval Bridge",
            {"Purchase Manager", "Purchase User", "Stock User", "Approval Bridge"},
        )
        site.table("User")[API_USER]["api_key"] = self.api_key
        site.secrets[API_USER] = {"api_secret": self.api_secret, "password": "bridge-pass"}
        site.add_user(BUYER, "u1001", "Li Lei", {"Purchase User"})
        site.secrets[BUYER] = {"password": "u1001-pass"}
        site.secrets[ADMIN] = {"password": "admin"}
        # Role Permission Manager: the guide's read right on User for the integration's role
        site.perms["User"]["read"] = {"Approval Bridge"}

    # -- ErpSimulator ------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on loopback; returns the site URL."""
        self.base_url = await self._server.start(self.api.app(), host, port)
        return self.base_url

    async def stop(self) -> None:
        """Stop serving and finish webhook deliveries."""
        if self.webhook is not None:
            await self.webhook.close()
        await self._server.stop()

    def bridge_section(self) -> dict[str, Any]:
        """`[erp.erpnext]` for this site (the API secret goes in the environment)."""
        return {
            "url": self.base_url,
            "api_key": self.api_key,
            "workflow": self.flow.workflow is not None,
            "timezone": str(self.site.tz),
        }

    def bridge_env(self) -> dict[str, str]:
        """The API secret (and the webhook secret when a webhook is set)."""
        env = {f"{_ENV}API_SECRET": self.api_secret}
        if self.webhook is not None:
            env[f"{_ENV}WEBHOOK_SECRET"] = self.webhook.secret
        return env

    def add_material(self, code: str, name: str, unit: str = "Pcs") -> None:
        """An Item (stock item, no reorder levels yet)."""
        data = {"item_code": code, "item_name": name, "stock_uom": unit, "description": name}
        doc = self.site.create(ADMIN, "Item", {**data, "item_group": "Raw Material"}, code)
        doc.update(is_stock_item=1, disabled=0)
        self.site.table("Item")[code] = doc

    def add_history(
        self,
        material_code: str,
        supplier_code: str,
        unit_price: Decimal,
        quantity: Decimal,
        ordered_on: dt.date,
    ) -> str:
        """A submitted (approved) purchase order of one line dated `ordered_on`."""
        line = SimLine(material_code, quantity, unit_price)
        doc = self._order(supplier_code, BUYER, [line], ordered_on)
        doc["docstatus"] = 1
        if self.flow.workflow is not None:
            doc["workflow_state"] = "Approved"
        controllers.validate(self.site, ADMIN, doc)
        self.site.touch(doc, ADMIN)
        return str(doc["name"])

    def submit_order(self, supplier_code: str, buyer: str, lines: list[SimLine]) -> str:
        """A draft order put to approval (workflow: Pending Approval; else left a draft)."""
        doc = self._order(supplier_code, self.user(buyer), lines, self.site.now().date())
        if self.flow.workflow is not None:
            doc["workflow_state"] = "Pending Approval"
        self.site.touch(doc, doc["owner"])
        return str(doc["name"])

    def change_order(self, doc_no: str, line_index: int, quantity: Decimal) -> None:
        """The buyer edits a line of a waiting order; it waits for approval again."""
        doc = self.site.get("Purchase Order", doc_no)
        if doc["docstatus"] != 0:
            raise ValueError(f"{doc_no} is submitted or cancelled; ERPNext cannot edit it")
        doc["items"][line_index]["qty"] = Decimal(quantity)
        if self.flow.workflow is not None:
            doc["workflow_state"] = "Pending Approval"
        controllers.validate(self.site, doc["owner"], doc)
        self.site.touch(doc, doc["owner"])

    def set_stock(
        self,
        material_code: str,
        warehouse: str,
        on_hand: Decimal,
        safety_stock: Decimal,
        reorder_qty: Decimal,
    ) -> None:
        """The Bin's quantities and the Item's reorder level for that warehouse."""
        self.add_warehouse(warehouse)
        self.set_bin(material_code, warehouse, on_hand, on_hand)
        item = self.site.get("Item", material_code)
        rows = [r for r in item["reorder_levels"] if r["warehouse"] != warehouse]
        level = {
            "warehouse": warehouse,
            "warehouse_reorder_level": safety_stock,
            "warehouse_reorder_qty": reorder_qty,
            "material_request_type": "Purchase",
        }
        item["reorder_levels"] = [*rows, self.site._child(item, "reorder_levels", len(rows), level)]
        self.site.touch(item, ADMIN)

    def order_state(self, doc_no: str) -> str:
        """`workflow_state` when the workflow runs, else `status` ("Rejected" if so tagged)."""
        doc = self.site.get("Purchase Order", doc_no)
        if self.flow.workflow is not None and doc.get("workflow_state"):
            return str(doc["workflow_state"])
        tags = str(doc.get("_user_tags") or "").split(",")
        if doc["docstatus"] == 0 and "Rejected" in tags:
            return "Rejected"
        return str(doc["status"])

    def requisitions(self) -> list[dict[str, Any]]:
        """Material Requests as stored (the bridge's reference is in `title`)."""
        lead = ("name", "title", "material_request_type", "status", "set_warehouse")
        docs: list[dict[str, Any]] = []
        for doc in self.site.table("Material Request").values():
            shown = to_json({key: doc[key] for key in lead})
            shown.update({k: v for k, v in to_json(doc).items() if k not in lead})
            docs.append(shown)
        return docs

    # -- master data and faults --------------------------------------------------------------
    def _order(self, supplier: str, owner: str, lines: list[SimLine], on: dt.date) -> Doc:
        items = [
            {"item_code": ln.material_code, "qty": ln.quantity, "rate": ln.unit_price}
            for ln in lines
        ]
        taxes = [
            {
                "charge_type": "On Net Total",
                "account_head": "VAT 13% - DC",
                "description": "VAT 13%",
                "rate": Decimal(13),
                "add_deduct_tax": "Add",
                "category": "Total",
            }
        ]
        data = {"supplier": supplier, "items": items, "taxes": taxes, "transaction_date": on}
        data["schedule_date"] = on + dt.timedelta(days=14)
        data["set_warehouse"] = "Stores - DC"
        doc = self.site.create(owner, "Purchase Order", data)
        if self.flow.workflow is not None:
            doc["workflow_state"] = "Draft"
        controllers.validate(self.site, owner, doc)
        self.site.table("Purchase Order")[doc["name"]] = doc
        return doc

    def user(self, login: str) -> str:
        """A User's name from its name or username."""
        for name, doc in self.site.table("User").items():
            if login in (name, doc.get("username")):
                return name
        raise ValueError(f"no ERPNext user {login!r}")

    def add_supplier(self, code: str, name: str) -> None:
        """A Supplier (named by its code, as with naming by Supplier Name off)."""
        doc = self.site.create(ADMIN, "Supplier", {"supplier_name": name, "disabled": 0}, code)
        self.site.table("Supplier")[code] = doc

    def add_warehouse(self, name: str, company: str = COMPANY) -> None:
        """A Warehouse of a company, if it is not there yet."""
        if name not in self.site.table("Warehouse"):
            data = {"warehouse_name": name, "company": company, "is_group": 0, "disabled": 0}
            self.site.table("Warehouse")[name] = self.site.create(ADMIN, "Warehouse", data, name)

    def set_bin(self, item: str, warehouse: str, actual: Decimal, projected: Decimal) -> None:
        """The Bin of an item in a warehouse (actual and projected quantity)."""
        bins = self.site.table("Bin")
        doc = next(
            (b for b in bins.values() if (b["item_code"], b["warehouse"]) == (item, warehouse)),
            None,
        )
        if doc is None:
            data = {
                "item_code": item,
                "warehouse": warehouse,
                "stock_uom": self.site.get("Item", item)["stock_uom"],
            }
            doc = self.site.create(ADMIN, "Bin", data)
            bins[doc["name"]] = doc
        doc.update(actual_qty=Decimal(actual), projected_qty=Decimal(projected))
        self.site.touch(doc, ADMIN)

    def set_default_supplier(self, item: str, supplier: str, company: str = COMPANY) -> None:
        """Item Defaults: the default supplier of an item for a company."""
        doc = self.site.get("Item", item)
        row = {"company": company, "default_supplier": supplier}
        doc["item_defaults"] = [self.site._child(doc, "item_defaults", 0, row)]

    def set_roles(self, user: str, roles: set[str]) -> None:
        """Replace a user's roles (e.g. take Purchase Manager away)."""
        doc = self.site.get("User", self.user(user))
        doc["roles"] = [self.site._child(doc, "roles", i, {"role": r}) for i, r in enumerate(roles)]

    def regenerate_api_secret(self) -> str:
        """User > API Access > Generate Keys: the old secret stops working at once."""
        self.api_secret = secrets.token_hex(12)
        self.site.secrets[API_USER]["api_secret"] = self.api_secret
        return self.api_secret

    def expire_sessions(self) -> None:
        """Every `sid` session ends (logout everywhere, or a restart with a new secret)."""
        self.api.sessions.clear()

    def fail_next(self, *statuses: int) -> None:
        """The next requests answer these HTTP statuses, one each."""
        self.faults.fail_statuses.extend(statuses)

    def freeze_clock(self, when: dt.datetime | None) -> None:
        """Stamp every change with this instant, kept site-local (None: the real clock again)."""
        self.site.frozen = when.astimezone(self.site.tz).replace(tzinfo=None) if when else None

    def set_webhook(self, url: str, secret: str) -> None:
        """An enabled Webhook on Purchase Order changes with security (HMAC) on."""
        self.webhook = WebhookSender(url, secret)
        self.site.on_change.append(self.webhook.fire)

    def add_custom_field(self, doctype: str, fieldname: str) -> None:
        """Customize Form: a new field on a doctype."""
        self.site.custom.setdefault(doctype, set()).add(fieldname)
        for doc in self.site.table(doctype).values():
            doc.setdefault(fieldname, None)

    def edit_order(self, doc_no: str, **values: Any) -> None:
        """A user saves header fields of a draft order (`modified` moves)."""
        doc = self.site.get("Purchase Order", doc_no)
        doc.update(values)
        controllers.validate(self.site, doc["owner"], doc)
        self.site.touch(doc, doc["owner"])

    def comments(self, doc_no: str) -> list[str]:
        """The contents of the Comments on an order, oldest first."""
        return [
            str(c["content"])
            for c in self.site.table("Comment").values()
            if c["reference_doctype"] == "Purchase Order" and c["reference_name"] == doc_no
        ]
