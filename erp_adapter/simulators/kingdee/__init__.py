"""A Kingdee K3Cloud (金蝶云星空) WebAPI simulator: real endpoints, auth, state machine, quirks."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from aiohttp import web

from erp_adapter.simulators import SimLine
from erp_adapter.simulators.kingdee.app import Faults, HttpFront
from erp_adapter.simulators.kingdee.auth import App, Auth
from erp_adapter.simulators.kingdee.model import Bill, Material, PoEntry, Store
from erp_adapter.simulators.kingdee.query import run_query
from erp_adapter.simulators.kingdee.service import FormService
from erp_adapter.simulators.loopback import Loopback

__all__ = ["KingdeeSimulator"]

ACCT_ID = "5f0000000000aa"
USERNAME = "bridge"
PASSWORD = "bridge-password"  # noqa: S105 - a made-up test credential
APP_ID = "223344_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
APP_SECRET = "0123456789abcdef0123456789abcdef"  # noqa: S105 - a made-up test credential
ORG = "100"
SERVER_PATH = "/k3cloud"


class KingdeeSimulator:
    """The simulated server with seeded master data; tests steer it through plain methods."""

    name = "kingdee"

    def __init__(self) -> None:
        self.store = Store()
        self.auth = Auth(ACCT_ID)
        self.auth.apps[APP_ID] = App(APP_ID, APP_SECRET)
        self.auth.passwords[USERNAME] = PASSWORD
        self.forms = FormService(self.store)
        self.faults = Faults()
        self._front = HttpFront(self.auth, self.forms, self.faults)
        self._server = Loopback()
        self.url = ""
        self._seed()

    def _seed(self) -> None:
        s = self.store
        s.suppliers.update({"S001": "华东电子元件有限公司", "S002": "深圳精密五金厂"})
        s.buyers.update({"u1001": "李雷", "u1002": "韩梅梅"})
        s.users.update({USERNAME: "集成用户", "u1001": "李雷", "u1002": "韩梅梅"})
        s.depts.update({"D01": "采购部"})
        s.stocks.update({"CK001": "原材料仓", "CK002": "成品仓"})
        s.units.update({"Pcs": "个", "kg": "千克", "m": "米"})

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on loopback; returns `server_url` (…/k3cloud)."""
        root = web.Application()
        root.add_subapp(SERVER_PATH, self._front.app())
        self.url = await self._server.start(root, host, port) + SERVER_PATH
        return self.url

    async def stop(self) -> None:
        """Stop serving."""
        await self._server.stop()

    def bridge_section(self) -> dict[str, Any]:
        """`[erp.kingdee]` for this simulator, without the secret."""
        return {
            "server_url": self.url,
            "acct_id": ACCT_ID,
            "username": USERNAME,
            "app_id": APP_ID,
            "lcid": 2052,
            "org_number": ORG,
            "remark_field": "FRemarks",
        }

    def bridge_env(self) -> dict[str, str]:
        """The secret, as the bridge reads it."""
        return {"APPROVAL_BRIDGE__ERP__KINGDEE__APP_SECRET": APP_SECRET}

    def add_material(self, code: str, name: str, unit: str = "Pcs") -> None:
        """A material (BD_MATERIAL) in the seeded organisation."""
        self.store.units.setdefault(unit, unit)
        self.store.materials[code] = Material(self.store.new_id(), code, name, unit, org=ORG)

    def add_history(
        self,
        material_code: str,
        supplier_code: str,
        unit_price: Decimal,
        quantity: Decimal,
        ordered_on: dt.date,
    ) -> str:
        """A past, audited purchase order of one line; returns its number."""
        when = dt.datetime.combine(ordered_on, dt.time())
        number = self.create_order(
            supplier_code, "u1001", [SimLine(material_code, quantity, unit_price)]
        )
        bill = self.store.by_number("PUR_PurchaseOrder", number)
        bill.date = when
        self.store.submit(bill)
        self.store.audit(bill, verify_proc_inst=False)
        while bill.status != "C":  # 多级审核 configured: audit every level
            self.store.audit(bill, verify_proc_inst=False)
        return number

    def create_order(
        self, supplier_code: str, buyer: str, lines: list[SimLine], dept: str = "D01"
    ) -> str:
        """A purchase order saved (FDocumentStatus A), not submitted."""

        now = self.store.now()
        bill = Bill("PUR_PurchaseOrder", self.store.new_id(), "", now, now, now)
        bill.number = self.store.new_number(bill.form)
        bill.supplier, bill.purchaser, bill.dept, bill.org = supplier_code, buyer, dept, ORG
        for seq, line in enumerate(lines, start=1):
            delivery = now.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(7)
            entry = PoEntry(
                self.store.new_id(),
                seq,
                line.material_code,
                line.quantity,
                line.unit_price,
                Decimal(13),
                delivery,
            )
            bill.po_entries.append(entry)
        self.store.bills[bill.fid] = bill
        return bill.number

    def submit_order(self, supplier_code: str, buyer: str, lines: list[SimLine]) -> str:
        """A new purchase order, submitted (FDocumentStatus B, 审核中)."""
        number = self.create_order(supplier_code, buyer, lines)
        self.store.submit(self.store.by_number("PUR_PurchaseOrder", number))
        return number

    def change_order(self, doc_no: str, line_index: int, quantity: Decimal) -> None:
        """撤销, change a line's quantity, submit again (as a buyer does in the client)."""
        bill = self.store.by_number("PUR_PurchaseOrder", doc_no)
        if bill.status == "B":
            self.store.cancel_assign(bill)
        bill.po_entries[line_index].qty = quantity
        self.store.touch(bill)
        self.store.submit(bill)

    def set_stock(
        self,
        material_code: str,
        warehouse: str,
        on_hand: Decimal,
        safety_stock: Decimal,
        reorder_qty: Decimal,
    ) -> None:
        """STK_Inventory quantity, and the material's safety stock (SubHeadEntity1)."""
        material = self.store.materials[material_code]
        self.store.stocks.setdefault(warehouse, warehouse)
        self.store.inventory[(material_code, warehouse)] = on_hand
        material.safe_stock_enabled = True
        material.safe_stock = safety_stock
        material.reorder_qty = reorder_qty
        material.default_stock = material.default_stock or warehouse

    def order_state(self, doc_no: str) -> str:
        """FDocumentStatus, or `cancelled` once voided (FCancelStatus B)."""
        bill = self.store.by_number("PUR_PurchaseOrder", doc_no)
        return "cancelled" if bill.cancel_status == "B" else bill.status

    def requisitions(self) -> list[dict[str, Any]]:
        """PUR_Requisition bills as stored, with FNote (the bridge's idempotency key)."""
        keys, rows = run_query(
            self.store,
            {
                "FormId": "PUR_Requisition",
                "FieldKeys": "FBillNo,FDocumentStatus,FNote,FMaterialId.FNumber,FReqQty,"
                "FStockId.FNumber",
            },
        )
        return [dict(zip(keys, row, strict=True)) for row in rows]

    # Fault injection and workflow set-up.

    def expire_sessions(self) -> None:
        """Drop every session: the next session call answers 会话信息已丢失 (MsgCode 1)."""
        self.auth.sessions.clear()

    def forget_sessions(self, forget: bool = True) -> None:
        """Hand out session ids but keep none (every session call answers 会话信息已丢失)."""
        self.auth.keep_sessions = not forget

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer the next `count` calls with this HTTP status."""
        self.faults.fail_next, self.faults.fail_status = count, status

    def set_delay(self, seconds: float) -> None:
        """Answer every call after this many seconds."""
        self.faults.delay_s = seconds

    def deny(self, form: str, op: str) -> None:
        """Take a right away from the integration user (`op`: audit, save, executebillquery…)."""
        self.forms.denied.add((form.lower(), op.lower()))

    def start_workflow(self, doc_no: str) -> None:
        """Bind a submitted bill to a running workflow instance (Audit then refuses it)."""
        self.store.by_number("PUR_PurchaseOrder", doc_no).workflow = True

    def set_audit_levels(self, levels: int) -> None:
        """多级审核: an Audit call passes one level; the bill stays 审核中 until the last."""
        self.store.audit_levels = levels

    def freeze_clock(self, at: dt.datetime | None) -> None:
        """Stamp every change with this aware time (kept as server local time); None: real clock."""
        if at is None:
            self.store.clock = None
            return
        local = at.astimezone(self.store.tz).replace(tzinfo=None)
        self.store.clock = lambda: local
