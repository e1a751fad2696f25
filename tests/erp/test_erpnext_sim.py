"""The ERPNext simulator as an independent client sees it: frappe-client and raw REST calls."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from frappeclient.frappeclient import (
    AuthError,
    FrappeClient,
    FrappeException,
)

from erp_adapter.simulators import ErpSimulator, SimLine
from erp_adapter.simulators.erpnext import ErpnextSimulator

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
async def sim() -> AsyncIterator[ErpnextSimulator]:
    simulator = ErpnextSimulator()
    await simulator.start()
    simulator.add_material("M-001", "Steel plate", "Kg")
    yield simulator
    await simulator.stop()


def _order(sim: ErpnextSimulator) -> str:
    return sim.submit_order("S001", "u1001", [SimLine("M-001", Decimal(10), Decimal("12.5"))])


def test_implements_the_simulator_protocol() -> None:
    simulator: ErpSimulator = ErpnextSimulator()
    assert simulator.name == "erpnext"
    assert set(simulator.bridge_env()) == {"APPROVAL_BRIDGE__ERP__ERPNEXT__API_SECRET"}
    assert "api_secret" not in simulator.bridge_section()


async def test_frappe_client_logs_in_reads_and_lists(sim: ErpnextSimulator) -> None:
    name = _order(sim)

    def run() -> tuple[Any, Any, Any]:
        client = FrappeClient(sim.base_url, username="u1001", password="u1001-pass")
        rows = client.get_list(
            "Purchase Order",
            fields=["name", "workflow_state", "grand_total"],
            filters=[["workflow_state", "=", "Pending Approval"]],
        )
        doc = client.get_doc("Purchase Order", name)
        value = client.get_value("Supplier", "supplier_name", {"name": "S001"})
        return rows, doc, value

    rows, doc, value = await asyncio.to_thread(run)
    # ERPNext sends money as JSON numbers: 10 x 12.5 plus 13 % VAT
    assert rows == [{"name": name, "workflow_state": "Pending Approval", "grand_total": 141.25}]
    assert doc["items"][0]["item_code"] == "M-001" and doc["items"][0]["amount"] == 125.0
    assert doc["taxes"][0]["tax_amount"] == 16.25 and doc["docstatus"] == 0
    assert value == {"supplier_name": "Shanghai Steel Co."}


async def test_frappe_client_with_api_keys_acts_on_documents(sim: ErpnextSimulator) -> None:
    name = _order(sim)

    def run() -> dict[str, Any]:
        client = FrappeClient(sim.base_url, api_key=sim.api_key, api_secret=sim.api_secret)
        out: dict[str, Any] = {"user": client.get_api("frappe.auth.get_logged_user")}
        doc = client.get_doc("Purchase Order", name)
        moved = client.post_api(
            "frappe.model.workflow.apply_workflow", {"doc": json.dumps(doc), "action": "Approve"}
        )
        out["state"] = (moved["workflow_state"], moved["docstatus"])
        request = client.insert(
            {
                "doctype": "Material Request",
                "material_request_type": "Purchase",
                "schedule_date": "2026-12-30",
                "items": [{"item_code": "M-001", "qty": 5, "warehouse": "Stores - DC"}],
            }
        )
        out["mr"] = (request["name"], request["status"])
        out["submitted"] = client.submit(request)["status"]
        client.cancel("Material Request", request["name"])
        out["cancelled"] = client.get_doc("Material Request", request["name"])["status"]
        return out

    out = await asyncio.to_thread(run)
    assert out["user"] == "bridge@example.com"
    assert out["state"] == ("Approved", 1)
    assert out["mr"][0].startswith("MAT-MR-") and out["mr"][1] == "Draft"
    assert (out["submitted"], out["cancelled"]) == ("Pending", "Cancelled")
    assert sim.order_state(name) == "Approved"


async def test_frappe_client_sees_errors_as_frappe_exceptions(sim: ErpnextSimulator) -> None:
    name = _order(sim)

    def run() -> list[str]:
        seen: list[str] = []
        buyer = FrappeClient(sim.base_url, username="u1001", password="u1001-pass")
        doc = buyer.get_doc("Purchase Order", name)
        calls: tuple[Callable[[], Any], ...] = (
            lambda: buyer.get_doc("Purchase Order", "PUR-ORD-1999-99999"),
            # the buyer has no Purchase Manager role: Approve is not among its transitions
            lambda: buyer.post_api(
                "frappe.model.workflow.apply_workflow",
                {"doc": json.dumps(doc), "action": "Approve"},
            ),
            lambda: FrappeClient(sim.base_url, api_key=sim.api_key, api_secret="wrong").get_list(
                "Purchase Order"
            ),
        )
        for call in calls:
            with pytest.raises(FrappeException) as caught:
                call()
            seen.append(str(caught.value))
        with pytest.raises(AuthError):
            FrappeClient(sim.base_url, username="u1001", password="nope")
        return seen

    missing, invalid, refused = await asyncio.to_thread(run)
    assert "DoesNotExistError: Purchase Order PUR-ORD-1999-99999 not found" in missing
    assert "WorkflowTransitionError: Not a valid Workflow Action" in invalid
    assert "AuthenticationError" in refused


async def test_raw_rest_error_shapes_and_auth_headers(sim: ErpnextSimulator) -> None:
    name = _order(sim)
    base = sim.base_url
    token = {"Authorization": f"token {sim.api_key}:{sim.api_secret}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/resource/Purchase Order/{name}", headers=token) as r:
            assert r.status == 200
            assert (await r.json())["data"]["name"] == name
        async with http.get(f"{base}/api/resource/Purchase Order") as r:  # Guest
            body = await r.json()
            assert r.status == 403 and body["exc_type"] == "PermissionError"
            note = json.loads(json.loads(body["_server_messages"])[0])
            assert "Guest" in note["message"]
        bad = {"Authorization": f"token {sim.api_key}:nope"}
        async with http.get(f"{base}/api/method/frappe.auth.get_logged_user", headers=bad) as r:
            assert r.status == 401 and (await r.json())["exc_type"] == "AuthenticationError"
        reject = {"doc": {"doctype": "Purchase Order", "name": name}, "action": "Cancel"}
        path = f"{base}/api/method/frappe.model.workflow.apply_workflow"
        async with http.post(path, json=reject, headers=token) as r:
            body = await r.json()
            assert r.status == 417 and body["exc_type"] == "WorkflowTransitionError"
            assert body["exception"].endswith("Not a valid Workflow Action")
        # child rows only through their parent, as frappe.client.check_parent_permission does
        async with http.get(f"{base}/api/resource/Purchase Order Item", headers=token) as r:
            assert r.status == 403
        query = {"parent": "Purchase Order", "fields": '["parent","qty"]', "limit_page_length": "0"}
        async with http.get(
            f"{base}/api/resource/Purchase Order Item", params=query, headers=token
        ) as r:
            assert (await r.json())["data"] == [{"parent": name, "qty": 10.0}]


async def test_session_loss_turns_a_user_into_guest(sim: ErpnextSimulator) -> None:
    # unsafe: keep cookies from an IP-address host (127.0.0.1)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        login = {"usr": "u1001", "pwd": "u1001-pass"}
        async with http.post(f"{sim.base_url}/api/method/login", json=login) as r:
            assert (await r.json())["message"] == "Logged In"
        who = f"{sim.base_url}/api/method/frappe.auth.get_logged_user"
        async with http.get(who) as r:
            assert (await r.json())["message"] == "u1001@example.com"
        sim.expire_sessions()
        async with http.get(who) as r:
            assert r.status == 403


async def test_modified_is_site_local_with_microseconds_and_stale_saves_fail(
    sim: ErpnextSimulator,
) -> None:
    sim.freeze_clock(dt.datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=SHANGHAI))
    name = _order(sim)
    token = {"Authorization": f"token {sim.api_key}:{sim.api_secret}"}
    async with aiohttp.ClientSession() as http:
        url = f"{sim.base_url}/api/resource/Purchase Order/{name}"
        async with http.get(url, headers=token) as r:
            doc = (await r.json())["data"]
        assert doc["modified"] == "2026-11-25 10:00:00.123456"
        sim.freeze_clock(dt.datetime(2026, 11, 25, 10, 5, tzinfo=SHANGHAI))
        sim.change_order(name, 0, Decimal(12))
        submit = f"{sim.base_url}/api/method/frappe.client.submit"
        async with http.post(submit, json={"doc": doc}, headers=token) as r:
            body = await r.json()
        assert r.status == 417 and body["exc_type"] == "TimestampMismatchError"
        async with http.get(url, headers=token) as r:
            # a whole second has no fraction: Frappe prints str(datetime)
            assert (await r.json())["data"]["modified"] == "2026-11-25 10:05:00"
