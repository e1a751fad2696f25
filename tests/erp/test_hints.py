"""An ERP's own webhook only makes the bridge poll sooner; ERPNext's must carry its signature."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from approvals.db import repo
from bot.app import create_app
from bot.demo import settings_for
from bot.demo_native import native_erp_config, seed, simulator
from bot.keys import DATABASE
from bot.sandbox.options import SandboxOptions
from bot.sandbox.server import Sandbox
from erp_adapter.simulators import ErpSimulator, SimLine
from tests import dbutil

HOOK_SECRET = "frappe-hook-secret"


@pytest.fixture(params=["odoo", "erpnext"])
async def bridge(
    request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path
) -> AsyncIterator[tuple[ErpSimulator, web.Application, str]]:
    sandbox = Sandbox(SandboxOptions(seed=5)).start_in_thread()
    sim = simulator(request.param)
    runner: web.AppRunner | None = None
    try:
        await sim.start()
        seed(sim)
        url = dbutil.copy_sqlite(sqlite_template, tmp_path / "bridge.db")
        erp = native_erp_config(sim, poll_interval_s=3600)  # the start-up poll, then hints
        if erp.erpnext is not None:
            signed = erp.erpnext.model_copy(update={"webhook_secret": SecretStr(HOOK_SECRET)})
            erp = erp.model_copy(update={"erpnext": signed})
        app = create_app(settings_for(url, erp, sandbox.url))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield sim, app, f"http://{host}:{port}"
    finally:
        if runner is not None:
            await runner.cleanup()
        await sim.stop()
        sandbox.stop()


async def _raised(app: web.Application, doc_no: str, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        async with app[DATABASE].read() as conn:
            if await repo.revisions_of(conn, doc_no):
                return True
        await asyncio.sleep(0.1)
    return False


async def test_a_hint_makes_the_bridge_poll_now(
    bridge: tuple[ErpSimulator, web.Application, str],
) -> None:
    sim, app, url = bridge
    await asyncio.sleep(1.0)  # the start-up poll has run
    doc_no = sim.submit_order("S001", "u1001", [SimLine("M-001", Decimal(5), Decimal("12"))])
    assert not await _raised(app, doc_no, 1.0)  # the next scheduled poll is an hour away
    # What each ERP sends: Odoo's automation rule, ERPNext's Webhook doctype (JSON structure).
    hint = {"_action": "Notify(#3)", "_id": 1, "_model": "purchase.order"}
    if sim.name == "erpnext":
        hint = {"doctype": "Purchase Order", "name": doc_no}
    body = json.dumps(hint).encode()
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        if sim.name == "erpnext":
            async with http.post(f"{url}/erp/hooks/erpnext", data=body, headers=headers) as r:
                assert r.status == 401  # unsigned
            mac = hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).digest()
            headers["X-Frappe-Webhook-Signature"] = base64.b64encode(mac).decode()
        async with http.post(f"{url}/erp/hooks/{sim.name}", data=body, headers=headers) as r:
            assert r.status == 202, await r.text()
            assert (await r.json())["status"] == "poll_scheduled"
        async with http.post(f"{url}/erp/hooks/{sim.name}", data=b"[]", headers=headers) as r:
            assert r.status in (400, 401)  # not a webhook of this ERP (or, for ERPNext, unsigned)
        async with http.post(f"{url}/erp/hooks/kingdee", data=body, headers=headers) as r:
            assert r.status == 404
    assert await _raised(app, doc_no, 10.0)
