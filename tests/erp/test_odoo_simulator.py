"""The Odoo simulator, checked with independent official clients: odoorpc and odoo-client-lib."""

from __future__ import annotations

import asyncio
import gc
import xmlrpc.client
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import odoolib
import odoorpc
import pytest

from erp_adapter.simulators import ErpSimulator, SimLine
from erp_adapter.simulators.odoo import OdooSimulator


@pytest.fixture(params=[16, 19])
def version(request: pytest.FixtureRequest) -> int:
    """The oldest and newest major versions (tests of version differences ask for all four)."""
    return int(request.param)


@pytest.fixture
async def sim(version: int) -> AsyncIterator[OdooSimulator]:
    """A running simulator of the version, with two materials."""
    simulator = OdooSimulator(version=version)
    simulator.add_material("M001", "Steel bolt M8")
    simulator.add_material("M002", "Copper wire", unit="kg")
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()
        gc.collect()  # reap the sync clients' unclosed sockets while this test's filters apply


# The official clients are sync and leave sockets to the garbage collector: odoo-client-lib builds
# a ServerProxy per XML-RPC call, odoorpc never closes urllib responses.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _port(sim: OdooSimulator) -> int:
    port = urlsplit(sim.base_url).port
    assert port is not None
    return port


def test_the_simulator_is_an_erp_simulator() -> None:
    simulator: ErpSimulator = OdooSimulator()
    assert simulator.name == "odoo"
    assert set(simulator.bridge_env()) == {"APPROVAL_BRIDGE__ERP__ODOO__API_KEY"}


async def test_odoorpc_logs_in_reads_and_approves(sim: OdooSimulator) -> None:
    doc_no = sim.submit_order("S001", "u1001", [SimLine("M001", Decimal(10), Decimal("2.5"))])

    def run() -> tuple[Any, ...]:
        odoo = odoorpc.ODOO("127.0.0.1", port=_port(sim), protocol="jsonrpc")
        odoo.login(sim.db, sim.login, sim.api_key)
        orders = odoo.env["purchase.order"]
        ids = orders.search([("state", "=", "to approve")])
        rows = orders.read(ids, ["name", "state", "partner_id", "amount_total"])
        record = orders.browse(ids[0])
        name, state = record.name, record.state
        approved = odoo.execute("purchase.order", "button_approve", ids)
        after = orders.read(ids, ["state"])[0]["state"]
        return odoo.version, odoo.env.uid, rows, name, state, approved, after

    version, uid, rows, name, state, approved, after = await asyncio.to_thread(run)
    assert version == f"{sim.version}.0"
    assert uid == sim.uid(sim.login)
    assert rows[0]["name"] == doc_no
    assert rows[0]["partner_id"][1] == "Shenzhen Parts Co."
    assert rows[0]["amount_total"] == 25.0
    assert (name, state) == (doc_no, "to approve")
    assert approved == {}
    assert after == "purchase"


async def test_odoorpc_wrong_key_is_refused(sim: OdooSimulator) -> None:
    def run() -> str:
        odoo = odoorpc.ODOO("127.0.0.1", port=_port(sim), protocol="jsonrpc")
        with pytest.raises(odoorpc.error.RPCError) as caught:
            odoo.login(sim.db, sim.login, "wrong")
        return str(caught.value)

    assert await asyncio.to_thread(run) == "Wrong login ID or password"


@pytest.mark.parametrize("protocol", ["jsonrpc", "xmlrpc"])
async def test_odoolib_search_read_and_buttons(sim: OdooSimulator, protocol: str) -> None:
    first = sim.submit_order("S001", "u1001", [SimLine("M001", Decimal(4), Decimal(3))])
    second = sim.submit_order("S001", "u1001", [SimLine("M002", Decimal(1), Decimal(7))])

    def run() -> tuple[Any, ...]:
        conn = odoolib.get_connection(
            "127.0.0.1", protocol, _port(sim), sim.db, sim.login, sim.api_key
        )
        model = conn.get_model("purchase.order")
        rows = model.search_read(
            ["|", ("name", "=", first), ("name", "=", second)],
            ["name", "state"],
            order="id asc",
        )
        ids = [row["id"] for row in rows]
        model.button_approve([ids[0]])
        cancel_error = None
        try:
            model.button_cancel([ids[1]])
        except (xmlrpc.client.Fault, odoolib.tools.JsonRPCException) as exc:
            cancel_error = exc
        states = [r["state"] for r in model.read(ids, ["state"])]
        return rows, cancel_error, states

    rows, cancel_error, states = await asyncio.to_thread(run)
    assert [r["name"] for r in rows] == [first, second]
    assert states == ["purchase", "cancel"]
    if protocol == "xmlrpc":
        # Odoo cannot marshal button_cancel's None over XML-RPC, after it has run.
        assert isinstance(cancel_error, xmlrpc.client.Fault)
        assert "cannot marshal None unless allow_none is enabled" in str(cancel_error.faultCode)
    else:
        assert cancel_error is None


async def test_odoolib_bad_password(sim: OdooSimulator) -> None:
    def run() -> None:
        conn = odoolib.get_connection("127.0.0.1", "jsonrpc", _port(sim), sim.db, sim.login, "x")
        conn.check_login()

    with pytest.raises(odoolib.tools.AuthenticationError):
        await asyncio.to_thread(run)


async def _jsonrpc(session: aiohttp.ClientSession, url: str, params: dict[str, Any]) -> Any:
    body = {"jsonrpc": "2.0", "method": "call", "id": 7, "params": params}
    async with session.post(f"{url}/jsonrpc", json=body) as response:
        assert response.status == 200
        return await response.json()


async def test_jsonrpc_error_shapes(sim: OdooSimulator) -> None:
    uid = sim.uid(sim.login)
    async with aiohttp.ClientSession() as session:
        denied = await _jsonrpc(
            session,
            sim.base_url,
            {
                "service": "object",
                "method": "execute_kw",
                "args": [sim.db, uid, "wrong", "purchase.order", "search", [[]]],
            },
        )
        bad_field = await _jsonrpc(
            session,
            sim.base_url,
            {
                "service": "object",
                "method": "execute_kw",
                "args": [
                    sim.db,
                    uid,
                    sim.api_key,
                    "purchase.order",
                    "search_read",
                    [[]],
                    {"fields": ["nope"]},
                ],
            },
        )
        sim.set_groups("u1001", "base.group_user")
        buyer = sim.uid("u1001")
        access = await _jsonrpc(
            session,
            sim.base_url,
            {
                "service": "object",
                "method": "execute_kw",
                "args": [sim.db, buyer, "u1001-password", "purchase.order", "search", [[]]],
            },
        )
    assert denied["error"]["code"] == 200
    assert denied["error"]["message"] == "Odoo Server Error"
    assert denied["error"]["data"]["name"] == "odoo.exceptions.AccessDenied"
    assert set(denied["error"]["data"]) == {"name", "message", "arguments", "context", "debug"}
    assert bad_field["error"]["data"]["name"] == "builtins.ValueError"
    assert access["error"]["data"]["name"] == "odoo.exceptions.AccessError"
    assert "Purchase / User" in access["error"]["data"]["message"]


async def test_xmlrpc2_fault_codes(sim: OdooSimulator) -> None:
    uid = sim.uid(sim.login)

    def run() -> tuple[int, int, int, Any]:
        with (
            xmlrpc.client.ServerProxy(f"{sim.base_url}/xmlrpc/2/common") as common,
            xmlrpc.client.ServerProxy(f"{sim.base_url}/xmlrpc/2/object") as obj,
        ):
            assert common.authenticate(sim.db, sim.login, "wrong", {}) is False
            codes: list[int] = []
            calls: tuple[tuple[Any, ...], ...] = (
                (sim.db, uid, "wrong", "purchase.order", "search", [[]]),
                (sim.db, uid, sim.api_key, "purchase.order", "nope", [[]]),
                (sim.db, uid, sim.api_key, "purchase.order", "button_cancel", [[999]]),
            )
            for args in calls:
                with pytest.raises(xmlrpc.client.Fault) as caught:
                    obj.execute_kw(*args)
                codes.append(caught.value.faultCode)
            return codes[0], codes[1], codes[2], common.version()

    denied, unknown, missing, version = await asyncio.to_thread(run)
    assert (denied, unknown, missing) == (3, 1, 2)
    assert version["server_version_info"][0] == sim.version


async def test_web_session_refuses_api_keys_and_expires(sim: OdooSimulator) -> None:
    # an IP host needs the "unsafe" jar to keep cookies
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        url = f"{sim.base_url}/web/session/authenticate"
        body: dict[str, Any] = {
            "jsonrpc": "2.0",
            "method": "call",
            "id": 1,
            "params": {"db": sim.db, "login": sim.login, "password": sim.api_key},
        }
        async with session.post(url, json=body) as response:
            assert (await response.json())["error"]["data"][
                "name"
            ] == "odoo.exceptions.AccessDenied"
        body["params"]["password"] = sim.password
        async with session.post(url, json=body) as response:
            assert (await response.json())["result"]["uid"] == sim.uid(sim.login)
        call = {
            "jsonrpc": "2.0",
            "method": "call",
            "id": 2,
            "params": {
                "model": "purchase.order",
                "method": "search_count",
                "args": [[]],
                "kwargs": {},
            },
        }
        async with session.post(f"{sim.base_url}/web/dataset/call_kw", json=call) as response:
            assert (await response.json())["result"] == 0
        sim.drop_sessions()
        async with session.post(f"{sim.base_url}/web/dataset/call_kw", json=call) as response:
            error = (await response.json())["error"]
    assert error["code"] == 100
    assert error["data"]["name"] == "odoo.http.SessionExpiredException"


async def test_json2_only_on_19_with_bearer_key(sim: OdooSimulator) -> None:
    doc_no = sim.submit_order("S001", "u1001", [SimLine("M001", Decimal(1), Decimal(9))])
    order_id = sim.order_id(doc_no)

    def run() -> tuple[Any, Any]:
        conn = odoolib.get_connection(
            "127.0.0.1", "json2", _port(sim), sim.db, sim.login, sim.api_key
        )
        rows = conn.get_model("purchase.order").search_read(
            domain=[["id", "=", order_id]], fields=["name", "state"]
        )
        approved = conn.get_model("purchase.order").button_approve(ids=[order_id])
        return rows, approved

    if sim.version < 19:
        with pytest.raises(ValueError, match="404"):
            await asyncio.to_thread(run)
        return
    rows, approved = await asyncio.to_thread(run)
    assert rows == [{"id": order_id, "name": doc_no, "state": "to approve"}]
    assert approved == {}
    assert sim.order_state(doc_no) == "purchase"
    async with aiohttp.ClientSession() as session:
        url = f"{sim.base_url}/json/2/purchase.order/search_read"
        async with session.post(url, json={}, headers={"Authorization": "bearer nope"}) as resp:
            assert resp.status == 401
            assert (await resp.json())["message"] == "Invalid apikey"
        headers = {"Authorization": f"bearer {sim.api_key}"}
        async with session.post(url, json={"bogus": 1}, headers=headers) as resp:
            assert resp.status == 422


@pytest.mark.parametrize("version", [16, 17, 18, 19])
async def test_version_differences(sim: OdooSimulator) -> None:
    def run() -> tuple[set[str], set[str], list[str]]:
        conn = odoolib.get_connection(
            "127.0.0.1", "jsonrpc", _port(sim), sim.db, sim.login, sim.api_key
        )
        lines = conn.get_model("purchase.order.line").fields_get(attributes=["type"])
        orders = conn.get_model("purchase.order").fields_get(attributes=["type", "selection"])
        states = [s[0] for s in orders["state"]["selection"]]
        return set(lines), set(orders), states

    line_fields, order_fields, states = await asyncio.to_thread(run)
    if sim.version >= 19:
        assert "product_uom_id" in line_fields and "product_uom" not in line_fields
        assert "locked" in order_fields and "done" not in states
    else:
        assert "product_uom" in line_fields and "product_uom_id" not in line_fields
        assert "locked" not in order_fields and "done" in states


async def test_button_approve_silently_skips_when_not_a_manager(sim: OdooSimulator) -> None:
    doc_no = sim.submit_order("S001", "u1001", [SimLine("M001", Decimal(1), Decimal(9))])
    sim.set_groups(sim.login, "base.group_user", "purchase.group_purchase_user")

    def run() -> Any:
        conn = odoolib.get_connection(
            "127.0.0.1", "jsonrpc", _port(sim), sim.db, sim.login, sim.api_key
        )
        return conn.get_model("purchase.order").button_approve([sim.order_id(doc_no)])

    assert await asyncio.to_thread(run) == {}
    assert sim.order_state(doc_no) == "to approve"


@pytest.mark.parametrize("version", [17, 18, 19])
async def test_po_lock_locks_approved_orders(sim: OdooSimulator) -> None:
    sim.set_company(po_lock="lock")
    doc_no = sim.submit_order("S001", "u1001", [SimLine("M001", Decimal(1), Decimal(9))])

    def run() -> Any:
        conn = odoolib.get_connection(
            "127.0.0.1", "jsonrpc", _port(sim), sim.db, sim.login, sim.api_key
        )
        return conn.get_model("purchase.order").button_approve([sim.order_id(doc_no)])

    await asyncio.to_thread(run)
    if sim.version >= 19:
        assert sim.order_state(doc_no) == "purchase"
        assert sim.order_record(doc_no)["locked"] is True
    else:
        assert sim.order_state(doc_no) == "done"
