"""Shared set-up for the ERPNext tests (no tests here): a running simulator and an adapter."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from approvals.models import ApproverAction, Decision, DocType
from approvals.ports import WriteBack
from erp_adapter.erpnext import ErpnextAdapter, build
from erp_adapter.erpnext.config import ErpnextConfig
from erp_adapter.simulators import SimLine
from erp_adapter.simulators.erpnext import ErpnextSimulator

SHANGHAI = ZoneInfo("Asia/Shanghai")
EPOCH = (dt.datetime(1970, 1, 1, tzinfo=dt.UTC), "")


def config_for(sim: ErpnextSimulator, **overrides: Any) -> ErpnextConfig:
    """The bridge's section for the simulator, with its secret as the environment gives it."""
    section: dict[str, Any] = dict(sim.bridge_section())
    for name, value in sim.bridge_env().items():
        section[name.removeprefix("APPROVAL_BRIDGE__ERP__ERPNEXT__").lower()] = value
    section.update(overrides)
    return ErpnextConfig.model_validate(section)


@asynccontextmanager
async def running(
    *, workflow: bool = True, timeout_s: float = 5.0, **overrides: Any
) -> AsyncIterator[tuple[ErpnextSimulator, ErpnextAdapter]]:
    """A simulator with two materials, and an adapter on one client session."""
    sim = ErpnextSimulator(workflow=workflow)
    await sim.start()
    sim.add_material("M-001", "Steel plate", "Kg")
    sim.add_material("M-002", "Bolt M8", "Pcs")
    try:
        async with aiohttp.ClientSession() as session:
            adapter = build(config_for(sim, **overrides), session, timeout_s)
            yield sim, adapter
            await adapter.close()
    finally:
        await sim.stop()


def order(sim: ErpnextSimulator, qty: str = "10", price: str = "12.50", item: str = "M-001") -> str:
    """A purchase order from u1001 waiting for approval."""
    return sim.submit_order("S001", "u1001", [SimLine(item, Decimal(qty), Decimal(price))])


def decision(doc_no: str, approved: bool = True, *, key: str = "ap-1", **extra: Any) -> WriteBack:
    """A decision as the bridge writes it back."""
    return WriteBack(
        approval_id=key,
        doc_type=DocType.REPLENISHMENT if "material_code" in extra else DocType.PURCHASE_ORDER,
        doc_no=doc_no,
        revision=1,
        decision=Decision.APPROVED if approved else Decision.REJECTED,
        process_instance_id="pi-1",
        decided_at=dt.datetime(2026, 11, 25, 2, 0, tzinfo=dt.UTC),
        approvers=(
            ApproverAction(
                user_id="dt-1",
                name="王经理",
                result="agree" if approved else "refuse",
                comment="价格合理" if approved else "价格偏高",
            ),
        ),
        **extra,
    )
