"""End to end against each native ERP's simulator: the real bridge polls it, raises approvals in
the DingTalk sandbox with the ERP's own price history, and acts on the ERP's documents."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select

from approvals.db import repo
from approvals.db.tables import approval, price
from approvals.states import State
from bot.app import create_app
from bot.demo import settings_for
from bot.demo_native import ENDS, SIMULATORS, native_erp_config, seed, simulator
from bot.demo_script import Actors, form_lines
from bot.keys import DATABASE
from bot.sandbox.options import SandboxOptions
from bot.sandbox.server import Sandbox
from erp_adapter.simulators import ErpSimulator, SimLine
from tests import dbutil


@dataclass
class World:
    """A simulator, the sandbox and the bridge polling the one for the other."""

    sim: ErpSimulator
    sandbox: Sandbox
    app: web.Application
    actors: Actors


async def _quiet(who: str, text: str) -> None:
    del who, text  # the tests assert on the ERP and the database, not on a timeline


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(SandboxOptions(seed=3)).start_in_thread()
    yield box
    box.stop()


@pytest.fixture(params=SIMULATORS)
async def world(
    request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path, sandbox: Sandbox
) -> AsyncIterator[World]:
    url = dbutil.copy_sqlite(sqlite_template, tmp_path / "bridge.db")
    sim = simulator(request.param)
    await sim.start()
    seed(sim)
    erp = native_erp_config(sim, poll_interval_s=0.5)
    app = create_app(settings_for(url, erp, sandbox.url))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with aiohttp.ClientSession() as http:
            yield World(sim, sandbox, app, Actors(_quiet, sandbox.url, http, app))
    finally:
        await runner.cleanup()
        await sim.stop()


async def until(what: str, probe: Callable[[], Awaitable[bool]], wait_s: float = 30) -> None:
    deadline = time.monotonic() + wait_s
    while not await probe():
        assert time.monotonic() < deadline, f"not within {wait_s:.0f} s: {what}"
        await asyncio.sleep(0.1)


async def _form(world: World, instance_id: str) -> list[str]:
    for instance in await world.actors.sandbox("GET", "/sandbox/instances"):
        if instance["instanceId"] == instance_id:
            return form_lines(instance)
    raise AssertionError(f"no instance {instance_id} in the sandbox")


async def test_orders_are_approved_and_rejected_in_the_erp_with_its_price_history(
    world: World,
) -> None:
    sim, actors = world.sim, world.actors
    ends = ENDS[sim.name]
    dear = sim.submit_order("S001", "u1001", [SimLine("M-002", Decimal(5000), Decimal("0.52"))])
    usual = sim.submit_order("S001", "u1001", [SimLine("M-001", Decimal(100), Decimal("12.00"))])
    instance = await actors.instance(dear)
    # Twelve past purchases of M-002 were seeded in the ERP (and none anywhere else), all
    # cheaper than this one: the form shows them and warns.
    [line] = await _form(world, instance)
    assert "历史 12 次" in line and "⚠ 高于历史最高价" in line, line
    async with world.app[DATABASE].read() as conn:
        erp_rows = (
            await conn.execute(select(func.count()).where(price.c.source == "erp"))
        ).scalar_one()
    assert erp_rows == 36  # twelve past purchases of each of three materials, read from the ERP
    await actors.decide(instance, dear, False, "价格高于历史最高价")
    await actors.decide(await actors.instance(usual), usual, True, "同意")

    async def decided() -> bool:
        return sim.order_state(dear) in ends.rejected and sim.order_state(usual) in ends.approved

    await until("both decisions in the ERP", decided)
    await until("both revisions done", lambda: _all_done(world, [dear, usual]))


async def _all_done(world: World, doc_nos: list[str]) -> bool:
    async with world.app[DATABASE].read() as conn:
        for doc_no in doc_nos:
            rows = await repo.revisions_of(conn, doc_no)
            if not rows or rows[-1].state is not State.DONE:
                return False
    return True


async def test_a_change_in_the_erp_supersedes_the_pending_approval(world: World) -> None:
    sim, actors = world.sim, world.actors
    doc_no = sim.submit_order("S001", "u1001", [SimLine("M-003", Decimal(10), Decimal("280"))])
    first = await actors.instance(doc_no)
    sim.change_order(doc_no, 0, Decimal(12))
    second = await actors.instance(doc_no, revision=2)
    assert second != first
    async with world.app[DATABASE].read() as conn:
        states = {r.revision: r.state for r in await repo.revisions_of(conn, doc_no)}
    assert states == {1: State.SUPERSEDED, 2: State.PENDING}
    # A late decision on what approvers saw before the change is never written back.
    with contextlib.suppress(aiohttp.ClientResponseError):  # the bridge may have withdrawn it
        await actors.decide(first, doc_no, True, "同意")
    await actors.decide(second, f"{doc_no} r2", True, "同意")
    await until("the ERP approves revision 2", lambda: _approved(sim, doc_no))


async def _approved(sim: ErpSimulator, doc_no: str) -> bool:
    return sim.order_state(doc_no) in ENDS[sim.name].approved


async def test_low_stock_becomes_one_replenishment_and_one_requisition(world: World) -> None:
    sim, actors = world.sim, world.actors
    sim.set_stock("M-003", "WH1", Decimal(40), Decimal(100), Decimal(200))
    need = await actors.instance(None)
    sim.set_stock("M-003", "WH1", Decimal(30), Decimal(100), Decimal(200))  # lower still
    await asyncio.sleep(1.5)  # three polls
    async with world.app[DATABASE].read() as conn:
        count = (
            await conn.execute(select(func.count()).where(approval.c.doc_type == "replenishment"))
        ).scalar_one()
    assert count == 1
    await actors.decide(need, "the M-003 replenishment", True, "按再订货量采购")

    async def raised() -> bool:
        return len(sim.requisitions()) == 1

    await until("the requisition in the ERP", raised)
    await asyncio.sleep(1.0)  # more polls and any repeated write-back add nothing
    assert len(sim.requisitions()) == 1
