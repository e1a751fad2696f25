"""`approval-bridge demo`: the whole flow on this machine as a timeline, with no credentials."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web
from pydantic import SecretStr
from sqlalchemy import select

from approvals.config import DatabaseConfig, JobConfig
from approvals.db import repo
from approvals.db.engine import Database
from approvals.db.migrate import upgrade
from approvals.db.tables import approval, audit
from approvals.memory import MemoryGateway, MemoryInstance, MemoryNotifier
from approvals.models import ApproverAction, Decision, DecisionReport
from approvals.price_import import import_prices
from approvals.prices import PriceContext
from approvals.states import State
from bot.app import Ports, create_app
from bot.keys import DATABASE, DECISIONS
from bot.settings import Settings
from cards.filters import money, percent
from erp_adapter.config import ErpConfig
from erp_adapter.reference.erp import ReferenceErp

MATERIALS = {
    "M-001": ("硬质合金刀片", "片", Decimal("11.20"), Decimal("12.40")),
    "M-002": ("六角螺栓 M8x30", "个", Decimal("0.38"), Decimal("0.45")),
    "M-003": ("切削液 20L", "桶", Decimal("260"), Decimal("300")),
}


class Timeline:
    """Prints what happens, as it happens, with the time since the start."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._start = time.monotonic()

    def say(self, who: str, text: str) -> None:
        """One line of the timeline."""
        print(
            f"{time.monotonic() - self._start:6.2f}s  {who:<9} {text}", file=self._out, flush=True
        )


def _history_csv(path: Path) -> None:
    """A year of purchases for the demo materials."""
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
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _order(
    doc_no: str, material: str, quantity: str, price: str, buyer: str = "u1001"
) -> dict[str, Any]:
    name, unit, _, _ = MATERIALS[material]
    amount = Decimal(quantity) * Decimal(price)
    return {
        "doc_no": doc_no,
        "buyer": {"erp_user": buyer, "name": "张三"},
        "department": {"code": "D01", "name": "采购部"},
        "supplier": {"code": "S001", "name": "杭州某某五金有限公司"},
        "currency": "CNY",
        "total_amount": f"{amount:.2f}",
        "expected_date": (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=7)).isoformat(),
        "remark": "月度备料",
        "lines": [
            {
                "line_no": 1,
                "material_code": material,
                "material_name": name,
                "unit": unit,
                "quantity": quantity,
                "unit_price": price,
                "tax_rate": "0.13",
                "amount": f"{amount:.2f}",
            }
        ],
    }


def _price_line(ctx: PriceContext) -> str:
    if ctx.count == 0:
        return f"{ctx.material_code} at {money(ctx.unit_price)}: no price history ⚠"
    warn = (
        "  ⚠ " + ", ".join(w.value.replace("_", " ") for w in ctx.warnings) if ctx.warnings else ""
    )
    return (
        f"{ctx.material_code} at {money(ctx.unit_price)}: avg {money(ctx.average)} "
        f"({percent(ctx.pct_vs_average)}), range {money(ctx.min)}–{money(ctx.max)} "
        f"over {ctx.count} buys, "
        f"last {money(ctx.last_price)} ({percent(ctx.pct_vs_last)}){warn}"
    )


class Demo:
    """Drives the reference ERP and plays the approvers, while the bridge does its work."""

    def __init__(
        self,
        tl: Timeline,
        erp: ReferenceErp,
        gateway: MemoryGateway,
        app: web.Application,
        audit: AuditWatcher,
    ) -> None:
        self.tl, self.erp, self.gateway, self.app, self.audit = tl, erp, gateway, app, audit

    async def say(self, who: str, text: str) -> None:
        """A line of the demo's own, after what the bridge did before it."""
        await self.audit.catch_up()
        self.tl.say(who, text)

    async def instance(
        self, doc_no: str | None, revision: int = 1, wait_s: float = 20
    ) -> MemoryInstance:
        """Wait until the bridge has raised and recorded the instance (None: the replenishment)."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            for inst in list(self.gateway.instances.values()):
                request = inst.request
                wanted = (
                    request.doc_type.value == "replenishment"
                    if doc_no is None
                    else request.doc_no == doc_no
                )
                if wanted and request.revision == revision and await self._recorded(inst):
                    return inst
            await asyncio.sleep(0.02)
        raise TimeoutError(
            f"no approval instance for {doc_no or 'the replenishment'} revision {revision}"
        )

    async def _recorded(self, inst: MemoryInstance) -> bool:
        async with self.app[DATABASE].read() as conn:
            row = await repo.find_by_instance(conn, inst.instance_id)
        return row is not None and row.state is State.PENDING

    async def decide(
        self, inst: MemoryInstance, decision: str, approver: str, comment: str
    ) -> None:
        """An approver acts in the approval system; the bridge hears it."""
        result = "agree" if decision == "approved" else "refuse"
        self.gateway.finish(inst.instance_id, result)
        await self.say(
            "approver", f'{approver} {decision} {inst.request.doc_no} in DingTalk: "{comment}"'
        )
        now = dt.datetime.now(dt.UTC)
        action = ApproverAction(
            user_id="dt-user-2001", name=approver, result=result, comment=comment, at=now
        )
        report = DecisionReport(
            instance_id=inst.instance_id,
            decision=Decision(decision),
            decided_at=now,
            approvers=(action,),
            event_key=f"demo-{inst.instance_id}",
        )
        await self.app[DECISIONS].apply(report)

    async def show_form(self, inst: MemoryInstance) -> None:
        """What the approver sees next to the order."""
        for ctx in inst.request.prices:
            await self.say("approver", f"sees {_price_line(ctx)}")


class AuditWatcher:
    """Prints every audit entry as the bridge writes it, in order."""

    def __init__(self, db: Database, tl: Timeline) -> None:
        self._db, self._tl = db, tl
        self._last = 0
        self._lock = asyncio.Lock()

    async def catch_up(self) -> None:
        """Print what was written since the last look."""
        async with self._lock, self._db.read() as conn:
            query = (
                select(
                    audit.c.id,
                    approval.c.doc_no,
                    audit.c.revision,
                    audit.c.action,
                    audit.c.to_state,
                    audit.c.detail,
                )
                .join_from(audit, approval, audit.c.approval_id == approval.c.id)
                .where(audit.c.id > self._last)
                .order_by(audit.c.id)
            )
            rows = (await conn.execute(query)).all()
            for row_id, doc_no, rev, action, to_state, detail in rows:
                self._last = row_id
                details = ", ".join(f"{k}={v}" for k, v in (detail or {}).items() if v is not None)
                moved = f" → {to_state}" if to_state and to_state != action else ""
                self._tl.say(
                    "bridge",
                    f"{doc_no} r{rev}: {action}{moved}" + (f" ({details})" if details else ""),
                )

    async def follow(self) -> None:
        """Keep printing until cancelled."""
        while True:
            await self.catch_up()
            await asyncio.sleep(0.03)


@contextlib.asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def run_demo(keep_running: bool = False, out: TextIO = sys.stdout) -> int:
    """Run the demo; 0 when every document reached its expected end state."""
    tl = Timeline(out)
    with tempfile.TemporaryDirectory(prefix="approval-bridge-demo-") as folder:
        return await _demo(Path(folder), tl, keep_running)


async def _demo(folder: Path, tl: Timeline, keep_running: bool) -> int:
    secret = secrets.token_hex(16)
    url = f"sqlite+aiosqlite:///{folder / 'bridge.db'}"
    db = Database.from_config(DatabaseConfig(url=url))
    try:
        await upgrade(db)
        tl.say("setup", f"database created: {folder / 'bridge.db'}")
        csv = folder / "price-history.csv"
        _history_csv(csv)
        report = await import_prices(db, csv)
        tl.say(
            "setup",
            f"price history imported: {report.loaded} purchases of {len(MATERIALS)} materials",
        )
    finally:
        await db.dispose()
    async with ReferenceErp(secret=secret) as erp:
        settings = Settings(
            database=DatabaseConfig(url=url),
            erp=ErpConfig(base_url=erp.url, webhook_secret=SecretStr(secret)),
            jobs=JobConfig(poll_interval_s=0.1, backoff_initial_s=0.2),
        )
        gateway = MemoryGateway()
        app = create_app(settings, Ports(gateway, MemoryNotifier()))
        async with _serve(app) as bridge_url:
            erp.bridge_url = bridge_url
            tl.say("setup", f"bridge on {bridge_url}, reference ERP on {erp.url}")
            audit_watcher = AuditWatcher(app[DATABASE], tl)
            watcher = asyncio.create_task(audit_watcher.follow())
            try:
                ok = await _scenario(Demo(tl, erp, gateway, app, audit_watcher))
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            if keep_running:
                print(
                    f"\nbridge:        {bridge_url}  (POST /erp/events, GET /healthz, /readyz)",
                    flush=True,
                )
                print(f"reference ERP: {erp.url}/ref/orders  (control API: /ref/...)", flush=True)
                print("press Ctrl-C to stop", flush=True)
                with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
                    await asyncio.Event().wait()
    return 0 if ok else 1


async def _scenario(demo: Demo) -> bool:
    erp, say = demo.erp, demo.say
    await say("erp", "PO-DEMO-001 submitted: 1000 × M-001 at 12.00 (within its usual range)")
    erp.submit_order(_order("PO-DEMO-001", "M-001", "1000", "12.00"))
    await say("erp", "PO-DEMO-002 submitted: 5000 × M-002 at 0.52 (dearer than ever before)")
    erp.submit_order(_order("PO-DEMO-002", "M-002", "5000", "0.52"))
    await say("erp", "PO-DEMO-003 submitted: 10 × M-003 at 280")
    erp.submit_order(_order("PO-DEMO-003", "M-003", "10", "280"))
    await say("erp", "PO-DEMO-004 submitted: 200 × M-002 at 0.40")
    erp.submit_order(_order("PO-DEMO-004", "M-002", "200", "0.40"))
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

    first = await demo.instance("PO-DEMO-001")
    await demo.show_form(first)
    await demo.decide(first, "approved", "王五", "同意")
    second = await demo.instance("PO-DEMO-002")
    await demo.show_form(second)
    await demo.decide(second, "rejected", "王五", "价格高于历史最高价，请重新询价")

    await demo.instance("PO-DEMO-003")
    await say("erp", "PO-DEMO-003 changed: quantity 10 → 12 (revision 2)")
    erp.change_order("PO-DEMO-003", _order("PO-DEMO-003", "M-003", "12", "280"))
    await demo.instance("PO-DEMO-004")
    await say("erp", "PO-DEMO-004 cancelled in the ERP")
    erp.cancel_order("PO-DEMO-004", "供应商停产")
    await erp.wait_delivered()
    third = await demo.instance("PO-DEMO-003", revision=2)
    await demo.show_form(third)
    await demo.decide(third, "approved", "赵六", "同意")

    need = await demo.instance(None)
    await demo.decide(need, "approved", "王五", "按再订货量采购")
    return await _settled(demo)


async def _settled(demo: Demo, wait_s: float = 30) -> bool:
    """Wait until the ERP and DingTalk show every expected end state; report each."""
    expected = {
        "PO-DEMO-001": "approved",
        "PO-DEMO-002": "rejected",
        "PO-DEMO-003": "approved",
        "PO-DEMO-004": "cancelled",
    }

    def withdrawn() -> int:
        return sum(1 for i in demo.gateway.instances.values() if i.status == "TERMINATED")

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        orders = demo.erp.orders
        if (
            all(orders[no].status == want for no, want in expected.items())
            and demo.erp.requisitions
            and withdrawn() == 2
        ):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)
    ok = True
    for no, want in expected.items():
        order = demo.erp.orders[no]
        good = order.status == want
        ok &= good
        await demo.say(
            "erp",
            f"{no} r{order.revision} is {order.status} in the ERP "
            + ("✓" if good else f"✗ (expected {want})"),
        )
    requisitions = demo.erp.requisitions
    ok &= len(requisitions) == 1
    for req in requisitions:
        await demo.say(
            "erp",
            f"purchase requisition {req.number} raised: {req.quantity} × {req.material_code} "
            f"for {req.warehouse} ✓",
        )
    raised, ended = len(demo.gateway.instances), withdrawn()
    ok &= (raised, ended) == (6, 2)
    await demo.say(
        "dingtalk",
        f"{raised} approval instances raised, {ended} withdrawn (one superseded, one cancelled)",
    )
    await demo.say(
        "result",
        "every document reached its end state"
        if ok
        else "some documents did not reach their end state",
    )
    return ok
