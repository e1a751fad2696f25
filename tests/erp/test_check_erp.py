"""`approval-bridge check` with a native adapter: it reaches the ERP, checks the user's rights."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.check import run_check
from bot.demo_native import simulator
from erp_adapter.simulators import ErpSimulator
from erp_adapter.simulators.odoo import OdooSimulator
from tests.test_check import SECRETS, VALID


def _toml(name: str, section: dict[str, Any]) -> str:
    lines = [VALID, "[erp]", f'adapter = "{name}"', f"[erp.{name}]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in section.items() if value is not None]
    return "\n".join(lines) + "\n"


@pytest.fixture(params=["kingdee", "odoo", "erpnext"])
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[ErpSimulator]:
    erp = simulator(request.param)
    await erp.start()
    try:
        yield erp
    finally:
        await erp.stop()


async def _check(sim: ErpSimulator, tmp_path: Path) -> tuple[int, str, str]:
    file = tmp_path / "bridge.toml"
    file.write_text(_toml(sim.name, sim.bridge_section()), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    # No generic webhook secret: a native adapter polls, and needs only its own secret.
    env = {k: v for k, v in SECRETS.items() if "WEBHOOK" not in k} | sim.bridge_env()
    code = await asyncio.to_thread(run_check, file, env, out, err)
    return code, out.getvalue(), err.getvalue()


async def test_check_reaches_the_erp_and_reports_each_right(
    sim: ErpSimulator, tmp_path: Path
) -> None:
    code, out, err = await _check(sim, tmp_path)
    assert (code, err) == (0, ""), out + err
    checked = [line for line in out.splitlines() if line.startswith(f"{sim.name}: ")]
    assert len(checked) >= 3 and all(line.count(": ok") == 1 for line in checked), out
    for secret in sim.bridge_env().values():
        assert secret not in out


async def test_check_fails_for_an_odoo_user_who_is_not_a_purchase_manager(
    tmp_path: Path,
) -> None:
    sim = OdooSimulator()
    await sim.start()
    try:
        sim.set_groups(sim.login, "purchase.group_purchase_user")
        code, out, err = await _check(sim, tmp_path)
    finally:
        await sim.stop()
    assert code == 1
    assert "approve purchase orders: FAILED" in out and "group_purchase_manager" in out, out
    assert "the odoo ERP check failed" in err


async def test_check_fails_when_the_erp_is_unreachable(tmp_path: Path) -> None:
    sim = OdooSimulator()
    await sim.start()
    section = sim.bridge_section()
    env = sim.bridge_env()
    await sim.stop()  # nothing listens there any more
    file = tmp_path / "bridge.toml"
    file.write_text(_toml("odoo", section), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(run_check, file, SECRETS | env, out, err)
    assert code == 1
    assert "FAILED" in out.getvalue(), out.getvalue()
