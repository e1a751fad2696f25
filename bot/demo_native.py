"""`approval-bridge demo --erp kingdee|odoo|erpnext`: the loop against a native ERP's simulator.

The bridge polls the simulator as it would poll the real ERP: nothing in the ERP is told about
the bridge. Prices come from the ERP's own purchase history; decisions land on its documents.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bot.demo_script import MATERIALS, Actors, withdrawn
from erp_adapter.config import ErpConfig
from erp_adapter.simulators import ErpSimulator, SimLine
from erp_adapter.simulators.erpnext import ErpnextSimulator
from erp_adapter.simulators.kingdee import KingdeeSimulator
from erp_adapter.simulators.odoo import OdooSimulator

SIMULATORS = ("kingdee", "odoo", "erpnext")


@dataclass(frozen=True)
class Ends:
    """What the native states of one ERP mean, for telling whether the story ended well."""

    approved: frozenset[str]
    rejected: frozenset[str]


ENDS = {
    "kingdee": Ends(frozenset({"C"}), frozenset({"A", "D", "Z", "cancelled"})),
    "odoo": Ends(frozenset({"purchase", "done"}), frozenset({"cancel", "draft"})),
    "erpnext": Ends(
        frozenset({"Approved", "To Receive and Bill"}), frozenset({"Rejected", "Cancelled"})
    ),
}


def simulator(name: str) -> ErpSimulator:
    """A fresh simulator of the named ERP."""
    if name == "kingdee":
        return KingdeeSimulator()
    if name == "odoo":
        return OdooSimulator()
    if name == "erpnext":
        return ErpnextSimulator()
    raise ValueError(f"no simulator for {name!r}; choose one of {', '.join(SIMULATORS)}")


def native_erp_config(sim: ErpSimulator, poll_interval_s: float = 1.0) -> ErpConfig:
    """`[erp]` for a running simulator: its section, with its secrets as the environment gives."""
    section: dict[str, Any] = dict(sim.bridge_section())
    prefix = f"APPROVAL_BRIDGE__ERP__{sim.name.upper()}__"
    for name, value in sim.bridge_env().items():
        if name.startswith(prefix):
            section[name.removeprefix(prefix).lower()] = value
    section["poll_interval_s"] = poll_interval_s
    return ErpConfig.model_validate({"adapter": sim.name, sim.name: section})


def seed(sim: ErpSimulator) -> int:
    """Master data and a year of approved purchases in the ERP itself; returns how many."""
    today = dt.datetime.now(dt.UTC).date()
    count = 0
    for code, (name, unit, low, high) in MATERIALS.items():
        sim.add_material(code, name, unit)
        for month in range(12):
            price = low + (high - low) * Decimal(month % 5) / 4
            quantity = Decimal(100 * (1 + month % 3))
            sim.add_history(
                code, "S001", price, quantity, today - dt.timedelta(days=30 * (12 - month))
            )
            count += 1
    return count


async def native_scenario(actors: Actors, sim: ErpSimulator) -> bool:
    """The demo's story against a native ERP; True when every document ended as expected."""
    say = actors.say
    await say("erp", f"{seed(sim)} past purchases of {len(MATERIALS)} materials in {sim.name}")
    first = sim.submit_order("S001", "u1001", [SimLine("M-001", Decimal(1000), Decimal("12.00"))])
    await say("erp", f"{first} submitted for approval: 1000 × M-001 at 12.00 (usual range)")
    second = sim.submit_order("S001", "u1001", [SimLine("M-002", Decimal(5000), Decimal("0.52"))])
    await say("erp", f"{second} submitted for approval: 5000 × M-002 at 0.52 (dearer than ever)")
    third = sim.submit_order("S001", "u1001", [SimLine("M-003", Decimal(10), Decimal("280"))])
    await say("erp", f"{third} submitted for approval: 10 × M-003 at 280")
    sim.set_stock("M-003", "WH1", Decimal(40), Decimal(100), Decimal(200))
    await say("erp", "M-003 in WH1: 40 on hand, safety stock 100")

    instance = await actors.instance(first)
    await actors.show_form(instance)
    await actors.decide(instance, first, True, "同意")
    instance = await actors.instance(second)
    await actors.show_form(instance)
    await actors.decide(instance, second, False, "价格高于历史最高价，请重新询价")
    await actors.instance(third)
    sim.change_order(third, 0, Decimal(12))
    await say("erp", f"{third} changed in {sim.name} while waiting: quantity 10 → 12")
    instance = await actors.instance(third, revision=2)
    await actors.decide(instance, f"{third} r2", True, "同意")
    need = await actors.instance(None)
    await actors.decide(need, "the M-003 replenishment", True, "按再订货量采购")
    return await native_settled(actors, sim, {first: True, second: False, third: True})


async def native_settled(
    actors: Actors, sim: ErpSimulator, expected: dict[str, bool], wait_s: float = 60
) -> bool:
    """Wait until the ERP holds every decision and the requisition; report each."""
    ends = ENDS[sim.name]

    def ended(doc_no: str, approved: bool) -> bool:
        return sim.order_state(doc_no) in (ends.approved if approved else ends.rejected)

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        decided = all(ended(no, yes) for no, yes in expected.items())
        if decided and sim.requisitions() and await withdrawn(actors) >= 1:
            break
        await asyncio.sleep(0.2)
    ok = True
    for doc_no, approved in expected.items():
        good = ended(doc_no, approved)
        ok &= good
        mark = "✓" if good else f"✗ (expected {'approved' if approved else 'rejected'})"
        await actors.say("erp", f"{doc_no} is {sim.order_state(doc_no)} in {sim.name} {mark}")
    requisitions = sim.requisitions()
    ok &= len(requisitions) == 1
    for req in requisitions:
        await actors.say("erp", f"requisition raised in {sim.name}: {_brief(req)} ✓")
    superseded = await withdrawn(actors)
    ok &= superseded == 1
    await actors.say("dingtalk", f"{superseded} instance withdrawn (the superseded revision)")
    await actors.say(
        "result",
        "every document reached its end state"
        if ok
        else "some documents did not reach their end state",
    )
    return ok


def _brief(requisition: dict[str, Any]) -> str:
    shown = {k: v for k, v in requisition.items() if isinstance(v, str | int | float)}
    return ", ".join(f"{k}={v}" for k, v in list(shown.items())[:6])
