"""ERPNext outages, refused credentials, missing rights, `check()`, and webhook hints."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import aiohttp
import pytest
from aiohttp import web

from approvals.errors import Permanent, Retryable
from erp_adapter.erpnext import build, parse_hint, verify_hint
from erp_adapter.erpnext.config import ErpnextConfig
from tests.erp.test_erpnext_support import EPOCH, config_for, decision, order, running


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
async def test_server_errors_are_retryable(status: int) -> None:
    async with running() as (sim, adapter):
        order(sim)
        sim.fail_next(status)
        with pytest.raises(Retryable):
            await adapter.orders_since(EPOCH, 10)
        assert len(await adapter.orders_since(EPOCH, 10)) == 1  # the next poll goes through


async def test_a_slow_site_times_out_as_retryable() -> None:
    async with running(timeout_s=0.2) as (sim, adapter):
        sim.faults.delay_s = 1.0
        with pytest.raises(Retryable, match="timed out"):
            await adapter.order("PUR-ORD-2026-00001")


async def test_an_unreachable_site_is_retryable() -> None:
    async with running() as (sim, _adapter):
        config = config_for(sim)
    async with aiohttp.ClientSession() as session:
        adapter = build(config, session, 2.0)  # the simulator has stopped
        with pytest.raises(Retryable, match="unreachable"):
            await adapter.orders_since(EPOCH, 10)


async def test_regenerated_keys_are_permanent() -> None:
    async with running() as (sim, adapter):
        sim.regenerate_api_secret()
        with pytest.raises(Permanent, match="refused the API key/secret"):
            await adapter.orders_since(EPOCH, 10)
        [connect, login] = await adapter.check()
    assert connect.ok and not login.ok and "API Access" in login.detail


async def test_check_reports_every_right_and_a_missing_one() -> None:
    async with running() as (sim, adapter):
        items = {i.what: i for i in await adapter.check()}
        assert all(i.ok for i in items.values()), items
        assert set(items) == {
            "connect", "login", "read purchase orders", "approve and reject orders",
            "create requisitions", "read stock", "read users",
        }  # fmt: skip
        sim.set_roles("bridge", {"Purchase User"})
        items = {i.what: i for i in await adapter.check()}
    assert not items["approve and reject orders"].ok
    assert "Purchase Manager" in items["approve and reject orders"].detail
    assert not items["read users"].ok and 'user_id = "name"' in items["read users"].detail
    assert items["create requisitions"].ok and items["read purchase orders"].ok


async def test_unreadable_users_fail_usernames_but_not_email_ids() -> None:
    async with running() as (sim, adapter):
        name = order(sim)
        sim.site.perms["User"]["read"] = set()
        with pytest.raises(Permanent, match="read User"):
            await adapter.order(name)
    async with running(user_id="name") as (sim, adapter):
        name = order(sim)
        sim.site.perms["User"]["read"] = set()
        native = await adapter.order(name)
    assert native is not None and native.canonical.buyer.erp_user == "u1001@example.com"


async def test_a_field_the_site_lacks_is_permanent() -> None:
    async with running(department_field="custom_department") as (sim, adapter):
        order(sim)
        with pytest.raises(Permanent, match="no such field"):
            await adapter.orders_since(EPOCH, 10)


def test_build_needs_the_secret() -> None:
    config = ErpnextConfig(url="http://127.0.0.1:1", api_key="k")
    with pytest.raises(ValueError, match="APPROVAL_BRIDGE__ERP__ERPNEXT__API_SECRET"):
        build(config, None, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="time zone"):
        ErpnextConfig(url="http://x", api_key="k", timezone="Mars/Base")


def test_hint_signature_is_base64_of_the_raw_digest() -> None:
    body = json.dumps({"doctype": "Purchase Order", "name": "PUR-ORD-2026-00001"}).encode()
    good = base64.b64encode(hmac.new(b"s3cret", body, hashlib.sha256).digest()).decode()
    assert verify_hint(body, good, b"s3cret")
    assert not verify_hint(body, good, b"other")
    assert not verify_hint(body + b" ", good, b"s3cret")
    assert not verify_hint(body, hmac.new(b"s3cret", body, hashlib.sha256).hexdigest(), b"s3cret")
    assert not verify_hint(body, None, b"s3cret")
    assert parse_hint(body) == "PUR-ORD-2026-00001"
    assert parse_hint(b'{"doctype": "Sales Order", "name": "SO-1"}') is None
    assert parse_hint(b"not json") is None


async def test_the_simulators_webhook_verifies_and_names_the_order() -> None:
    received: list[tuple[bytes, str | None]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.read(), request.headers.get("X-Frappe-Webhook-Signature")))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with running() as (sim, adapter):
            sim.set_webhook(f"http://127.0.0.1:{port}/hook", "hook-secret")
            name = order(sim)
            native = await adapter.order(name)
            assert native is not None
            await adapter.approve(native, decision(name))
            assert "APPROVAL_BRIDGE__ERP__ERPNEXT__WEBHOOK_SECRET" in sim.bridge_env()
    finally:
        await runner.cleanup()
    assert len(received) == 2  # pending, then approved
    for body, signature in received:
        assert verify_hint(body, signature, b"hook-secret")
        assert parse_hint(body) == name
    assert json.loads(received[-1][0])["workflow_state"] == "Approved"
