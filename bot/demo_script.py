"""The demo's script: the ERP submits, approvers act in the DingTalk sandbox, the ERP hears back."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from decimal import Decimal
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.db import repo
from approvals.db.tables import approval
from approvals.states import State
from bot.keys import DATABASE
from cards.forms import PURCHASE_ORDER_LABELS
from erp_adapter.reference.erp import ReferenceErp

MATERIALS = {
    "M-001": ("硬质合金刀片", "片", Decimal("11.20"), Decimal("12.40")),
    "M-002": ("六角螺栓 M8x30", "个", Decimal("0.38"), Decimal("0.45")),
    "M-003": ("切削液 20L", "桶", Decimal("260"), Decimal("300")),
}
APPROVER = ("王五", "manager1")
"""The sandbox's default approver: the user who acts on each task."""


class Say(Protocol):
    """Prints a timeline line after what the bridge did before it."""

    async def __call__(self, who: str, text: str) -> None: ...


def history_csv() -> str:
    """A year of purchases of the demo materials, as the price-history CSV."""
    today = dt.datetime.now(dt.UTC).date()
    rows = ["material_code,supplier_code,unit_price,currency,quantity,ordered_at,doc_no"]
    for code, (_, _, low, high) in MATERIALS.items():
        for month in range(12):
            price = low + (high - low) * Decimal(month % 5) / 4
            when = today - dt.timedelta(days=30 * (12 - month))
            rows.append(
                f"{code},S00{1 + month % 2},{price:.2f},CNY,{100 * (1 + month % 3)},{when},"
                f"HIST-{code}-{month}"
            )
    return "\n".join(rows) + "\n"


def order(doc_no: str, material: str, quantity: str, price: str) -> dict[str, Any]:
    """A purchase order as the reference ERP takes it."""
    name, unit, _, _ = MATERIALS[material]
    amount = Decimal(quantity) * Decimal(price)
    line = {
        "line_no": 1,
        "material_code": material,
        "material_name": name,
        "unit": unit,
        "quantity": quantity,
        "unit_price": price,
        "tax_rate": "0.13",
        "amount": f"{amount:.2f}",
    }
    return {
        "doc_no": doc_no,
        "buyer": {"erp_user": "u1001", "name": "张三"},
        "department": {"code": "D01", "name": "采购部"},
        "supplier": {"code": "S001", "name": "杭州某某五金有限公司"},
        "currency": "CNY",
        "total_amount": f"{amount:.2f}",
        "expected_date": (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=7)).isoformat(),
        "remark": "月度备料",
        "lines": [line],
    }


def form_lines(instance: dict[str, Any]) -> list[str]:
    """What the approver sees of each line's price in the DingTalk form."""
    values = {v["name"]: v["value"] for v in instance.get("formComponentValues", [])}
    table = values.get(PURCHASE_ORDER_LABELS["lines"])
    lines: list[str] = []
    for row in json.loads(table) if table else []:
        cells = {cell["name"]: cell["value"] for cell in row}
        material = cells.get(PURCHASE_ORDER_LABELS["line_material"], "")
        price = cells.get(PURCHASE_ORDER_LABELS["line_unit_price"], "")
        history = cells.get(PURCHASE_ORDER_LABELS["line_history"], "")
        warning = cells.get(PURCHASE_ORDER_LABELS["line_warnings"], "")
        lines.append(" ".join(f"{material} @ {price}: {history} {warning}".split()))
    return lines


class Actors:
    """The approvers and the timeline, acting through the sandbox's control API."""

    def __init__(
        self, say: Say, sandbox_url: str, http: aiohttp.ClientSession, app: web.Application
    ) -> None:
        self.say, self.sandbox_url, self.http, self.app = say, sandbox_url, http, app

    async def instance(self, doc_no: str | None, revision: int = 1, wait_s: float = 30) -> str:
        """Wait until the bridge has raised and recorded the instance (None: the replenishment)."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            async with self.app[DATABASE].read() as conn:
                name = doc_no or await _replenishment(conn)
                rows = await repo.revisions_of(conn, name) if name else []
            for row in rows:
                if row.revision == revision and row.state is State.PENDING and row.instance_id:
                    return row.instance_id
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no approval instance for {doc_no or 'the replenishment'} r{revision}")

    async def sandbox(self, method: str, path: str, body: Any = None) -> Any:
        """One call to the sandbox's control API, as its web page makes them."""
        async with self.http.request(method, self.sandbox_url + path, json=body) as response:
            response.raise_for_status()
            return await response.json()

    async def decide(self, instance_id: str, what: str, approve: bool, comment: str) -> None:
        """The approver acts in DingTalk; the bridge hears it over the stream."""
        name, user_id = APPROVER
        action = "approve" if approve else "refuse"
        path = f"/sandbox/instances/{instance_id}/{action}"
        await self.sandbox("POST", path, {"userId": user_id, "remark": comment})
        verb = "approved" if approve else "rejected"
        await self.say("approver", f"{name} {verb} {what} in DingTalk: “{comment}”")

    async def show_form(self, instance_id: str) -> None:
        """The price context the approver sees in the form."""
        for instance in await self.sandbox("GET", "/sandbox/instances"):
            if instance["instanceId"] == instance_id:
                for line in form_lines(instance):
                    await self.say("approver", f"sees {line}")


async def _replenishment(conn: AsyncConnection) -> str | None:
    query = select(approval.c.doc_no).where(approval.c.doc_type == "replenishment").limit(1)
    doc_no: str | None = (await conn.execute(query)).scalar_one_or_none()
    return doc_no


async def scenario(actors: Actors, erp: ReferenceErp) -> bool:
    """Run the story; True when every document reached its expected end state."""
    say = actors.say
    await say("erp", "PO-DEMO-001 submitted: 1000 × M-001 at 12.00 (within its usual range)")
    erp.submit_order(order("PO-DEMO-001", "M-001", "1000", "12.00"))
    await say("erp", "PO-DEMO-002 submitted: 5000 × M-002 at 0.52 (dearer than ever before)")
    erp.submit_order(order("PO-DEMO-002", "M-002", "5000", "0.52"))
    await say("erp", "PO-DEMO-003 submitted: 10 × M-003 at 280")
    erp.submit_order(order("PO-DEMO-003", "M-003", "10", "280"))
    await say("erp", "PO-DEMO-004 submitted: 200 × M-002 at 0.40")
    erp.submit_order(order("PO-DEMO-004", "M-002", "200", "0.40"))
    for on_hand in ("80", "60", "40"):
        await say("erp", f"stock of M-003 in WH1 below safety stock (100): {on_hand} on hand")
        erp.stock_alert(
            {
                "material_code": "M-003",
                "material_name": "切削液 20L",
                "unit": "桶",
                "warehouse": "WH1",
                "on_hand": on_hand,
                "safety_stock": "100",
                "reorder_qty": "200",
                "preferred_supplier": {"code": "S002", "name": "上海某某化工"},
                "requester": {"erp_user": "u1002", "name": "李四"},
            }
        )
    await erp.wait_delivered()

    first = await actors.instance("PO-DEMO-001")
    await actors.show_form(first)
    await actors.decide(first, "PO-DEMO-001", True, "同意")
    second = await actors.instance("PO-DEMO-002")
    await actors.show_form(second)
    await actors.decide(second, "PO-DEMO-002", False, "价格高于历史最高价，请重新询价")

    await actors.instance("PO-DEMO-003")
    await say("erp", "PO-DEMO-003 changed: quantity 10 → 12 (revision 2)")
    erp.change_order("PO-DEMO-003", order("PO-DEMO-003", "M-003", "12", "280"))
    await actors.instance("PO-DEMO-004")
    await say("erp", "PO-DEMO-004 cancelled in the ERP")
    erp.cancel_order("PO-DEMO-004", "供应商停产")
    await erp.wait_delivered()
    third = await actors.instance("PO-DEMO-003", revision=2)
    await actors.show_form(third)
    await actors.decide(third, "PO-DEMO-003 r2", True, "同意")

    need = await actors.instance(None)
    await actors.decide(need, "the M-003 replenishment", True, "按再订货量采购")
    await say(
        "dingtalk",
        "the superseded and the cancelled instance are withdrawn once DingTalk allows it "
        "(never within 15 s of creation); the bridge retries until then",
    )
    return await settled(actors, erp)


EXPECTED = {
    "PO-DEMO-001": "approved",
    "PO-DEMO-002": "rejected",
    "PO-DEMO-003": "approved",
    "PO-DEMO-004": "cancelled",
}


async def withdrawn(actors: Actors) -> int:
    """Instances the bridge has terminated in the sandbox."""
    instances = await actors.sandbox("GET", "/sandbox/instances")
    return sum(1 for i in instances if i["status"] == "TERMINATED")


async def settled(actors: Actors, erp: ReferenceErp, wait_s: float = 60) -> bool:
    """Wait until the ERP and DingTalk show every expected end state; report each."""

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        orders = erp.orders
        done = all(orders[no].status == want for no, want in EXPECTED.items())
        if done and erp.requisitions and await withdrawn(actors) == 2:
            break
        await asyncio.sleep(0.1)
    ok = True
    for no, want in EXPECTED.items():
        found = erp.orders[no]
        good = found.status == want
        ok &= good
        mark = "✓" if good else f"✗ (expected {want})"
        await actors.say("erp", f"{no} r{found.revision} is {found.status} in the ERP {mark}")
    requisitions = erp.requisitions
    ok &= len(requisitions) == 1
    for req in requisitions:
        await actors.say(
            "erp",
            f"purchase requisition {req.number} raised: {req.quantity} × {req.material_code} "
            f"for {req.warehouse} ✓",
        )
    instances = await actors.sandbox("GET", "/sandbox/instances")
    ended = await withdrawn(actors)
    ok &= (len(instances), ended) == (6, 2)
    await actors.say(
        "dingtalk",
        f"{len(instances)} approval instances raised, {ended} withdrawn "
        "(one superseded, one cancelled)",
    )
    verdict = (
        "every document reached its end state"
        if ok
        else "some documents did not reach their end state"
    )
    await actors.say("result", verdict)
    return ok
