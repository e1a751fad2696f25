"""The Kingdee simulator answers independent clients (the official SDK, a LoginBySign client)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from k3cloud_webapi_sdk.core import webapi_client
from k3cloud_webapi_sdk.main import K3CloudApiSdk

from erp_adapter.kingdee.auth import Credentials, signed_headers
from erp_adapter.simulators import ErpSimulator, SimLine
from erp_adapter.simulators.kingdee import ACCT_ID, APP_ID, APP_SECRET, USERNAME, KingdeeSimulator
from erp_adapter.simulators.kingdee.auth import App, Auth

FORM = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService."
VECTOR_PATH = f"/k3cloud/{FORM}ExecuteBillQuery.common.kdsvc"
VECTOR = {
    "X-Kd-Appdata": "NWYwMDAwMDAwMDAwYWEsYnJpZGdlLDIwNTIsMA==",
    "X-Api-Signature": "OTk1ODA1ZjU1ZjQxMzNlNmY3Yjk3MjdjMzlhYzQ5ODEzYWM2OGRmZjE0Njg4NmFjYTg3NT"
    "Q2NjM5OGUyM2VmMg==",
    "X-Kd-Signature": "OTc0MWEwOTU4MzNlMmFmNWRkOWE0ZjRlNDdmZGRmMDAwMTQyNmQ1OGM1MTlmZjhmYWE5OTZiOTV"
    "mNmQyOTlhNQ==",
}
VECTOR_APP = "123456_" + "A" * 32
VECTOR_SECRET = "0123456789abcdef0123456789abcdef"


@pytest.fixture
async def sim() -> AsyncIterator[KingdeeSimulator]:
    """A started simulator with two materials."""
    simulator = KingdeeSimulator()
    simulator.add_material("M001", "电阻 10K")
    simulator.add_material("M002", "电容 1uF")
    await simulator.start()
    yield simulator
    await simulator.stop()


def _sdk(url: str, secret: str = APP_SECRET) -> K3CloudApiSdk:
    api = K3CloudApiSdk(url)
    api.InitConfig(ACCT_ID, USERNAME, APP_ID, secret, url, 2052, 100)
    return api


def test_signature_test_vector_both_sides() -> None:
    """The reference's test vector: the adapter signs it, the simulator accepts it."""
    creds = Credentials("5f0000000000aa", "bridge", VECTOR_APP, VECTOR_SECRET, 2052, "0")
    headers = signed_headers(creds, VECTOR_PATH, 1700000000)
    assert {k: headers[k] for k in VECTOR} == VECTOR
    auth = Auth("5f0000000000aa", {VECTOR_APP: App(VECTOR_APP, VECTOR_SECRET)}, {"bridge": "x"})
    assert auth.client_secret(VECTOR_APP) == "MDA1NGYzOTdjNjIzNDM3OGIwOWNhN2Qz"
    identity = auth.verify_headers(headers, VECTOR_PATH, 1700000000)
    assert (identity.acct_id, identity.username, identity.lcid) == (
        "5f0000000000aa",
        "bridge",
        2052,
    )
    tampered = {**headers, "X-Kd-Signature": VECTOR["X-Api-Signature"]}
    with pytest.raises(Exception, match="X-Kd-Signature"):
        auth.verify_headers(tampered, VECTOR_PATH, 1700000000)


def test_sdk_headers_match_the_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The official SDK and the adapter build the same signed headers for a frozen clock."""
    monkeypatch.setattr(webapi_client.time, "time", lambda: 1700000000.5)
    # A host of 10+ characters: the SDK finds the path with `url.index("/", 10)`.
    site = "http://erp.example.com"
    api = K3CloudApiSdk(f"{site}/k3cloud")
    api.InitConfig("5f0000000000aa", "bridge", VECTOR_APP, VECTOR_SECRET, f"{site}/k3cloud")
    sdk = api.BuildHeader(f"{site}{VECTOR_PATH}")
    ours = signed_headers(
        Credentials("5f0000000000aa", "bridge", VECTOR_APP, VECTOR_SECRET, 2052, "0"),
        VECTOR_PATH,
        1700000000,
    )
    assert {k: sdk[k] for k in ours} == ours


async def test_official_sdk_round_trip(sim: KingdeeSimulator) -> None:
    """ExecuteBillQuery, BillQuery, View, Save, Submit, Audit, UnAudit through the SDK."""
    number = sim.submit_order("S001", "u1001", [SimLine("M001", Decimal(10), Decimal("1.13"))])

    def run() -> dict[str, Any]:
        api = _sdk(sim.url)
        out: dict[str, Any] = {}
        out["query"] = json.loads(
            api.ExecuteBillQuery(
                {
                    "FormId": "PUR_PurchaseOrder",
                    "FieldKeys": "FBillNo,FDocumentStatus,FSupplierId.FNumber,FMaterialId.FNumber,"
                    "FQty,FTaxPrice,FEntryTaxRate",
                    "FilterString": f"FBillNo='{number}' and FDocumentStatus in ('B','C')",
                    "OrderString": "FID DESC",
                    "StartRow": 0,
                    "Limit": 100,
                }
            )
        )
        out["billquery"] = json.loads(
            api.BillQuery(
                {"FormId": "PUR_PurchaseOrder", "FieldKeys": "FID,FBillNo", "FilterString": ""}
            )
        )
        out["view"] = json.loads(api.View("PUR_PurchaseOrder", {"Number": number}))
        model = {"FNote": "sdk", "FEntity": [{"FMaterialId": {"FNumber": "M002"}, "FReqQty": 5}]}
        out["save"] = json.loads(api.Save("PUR_Requisition", {"Model": model}))
        req = out["save"]["Result"]["Number"]
        out["submit"] = json.loads(api.Submit("PUR_Requisition", {"Numbers": [req]}))
        out["audit_req"] = json.loads(api.Audit("PUR_Requisition", {"Numbers": [req]}))
        out["audit"] = json.loads(api.Audit("PUR_PurchaseOrder", {"Numbers": [number]}))
        out["audit_again"] = json.loads(api.Audit("PUR_PurchaseOrder", {"Numbers": [number]}))
        out["unaudit"] = json.loads(api.UnAudit("PUR_PurchaseOrder", {"Numbers": [number]}))
        return out

    out = await asyncio.to_thread(run)
    assert out["query"] == [[number, "B", "S001", "M001", 10, 1.13, 13]]
    assert out["billquery"][0]["FBillNo"] == number
    assert out["view"]["Result"]["ResponseStatus"] is None
    assert out["view"]["Result"]["Result"]["BillNo"] == number
    assert out["save"]["Result"]["ResponseStatus"]["IsSuccess"] is True
    assert out["audit_req"]["Result"]["ResponseStatus"]["IsSuccess"] is True
    assert sim.requisitions()[0]["FDocumentStatus"] == "C"
    assert out["audit"]["Result"]["ResponseStatus"]["SuccessEntitys"][0]["Number"] == number
    refused = out["audit_again"]["Result"]["ResponseStatus"]
    assert refused["IsSuccess"] is False and refused["MsgCode"] == 12
    assert "不能审核" in refused["Errors"][0]["Message"]
    assert out["unaudit"]["Result"]["ResponseStatus"]["IsSuccess"] is True
    assert sim.order_state(number) == "D"


async def test_sdk_with_a_wrong_secret_is_refused(sim: KingdeeSimulator) -> None:
    """A wrong app secret: the query's envelope says IsSuccess false, and no data leaks."""
    text = await asyncio.to_thread(
        lambda: _sdk(sim.url, "f" * 32).ExecuteBillQuery(
            {"FormId": "PUR_PurchaseOrder", "FieldKeys": "FID"}
        )
    )
    status = json.loads(text)[0][0]["Result"]["ResponseStatus"]
    assert status["IsSuccess"] is False and status["MsgCode"] == 11
    assert "X-Kd-Signature" in status["Errors"][0]["Message"]


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[Any, dict[str, str]]:
    assert url.startswith("http://127.0.0.1:")
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback only
        return json.loads(response.read()), dict(response.headers)


async def test_positional_login_by_sign_client(sim: KingdeeSimulator) -> None:
    """A Java-SDK-style client: positional LoginBySign, then calls on the session cookie."""
    number = sim.submit_order("S001", "u1001", [SimLine("M001", Decimal(1), Decimal(2))])

    def run(sign_secret: str) -> list[Any]:
        ts = str(int(time.time()))
        sign = hashlib.sha256(
            "".join(sorted([ACCT_ID, USERNAME, APP_ID, sign_secret, ts])).encode()
        ).hexdigest()
        body = {
            "format": 1,
            "useragent": "ApiClient",
            "rid": "1",
            "parameters": [ACCT_ID, USERNAME, APP_ID, ts, sign, 2052],
            "timestamp": ts,
            "v": "1.0",
        }
        json_h = {"Content-Type": "application/json"}
        login, _ = _post(
            f"{sim.url}/Kingdee.BOS.WebApi.ServicesStub.AuthService.LoginBySign.common.kdsvc",
            json.dumps(body).encode(),
            json_h,
        )
        if login["LoginResultType"] != 1:
            return [login]
        sid = {"kdservice-sessionid": login["KDSVCSessionId"]}
        query = {"FormId": "PUR_PurchaseOrder", "FieldKeys": "FBillNo", "FilterString": ""}
        rows, _ = _post(
            f"{sim.url}/{FORM}executebillquery.common.kdsvc",  # service names are case-blind
            json.dumps({"parameters": [json.dumps(query)]}).encode(),
            {**json_h, **sid},
        )
        form = urllib.parse.urlencode({"formid": "PUR_PurchaseOrder", "data": json.dumps(query)})
        encoded, _ = _post(
            f"{sim.url}/{FORM}BillQuery.common.kdsvc",
            form.encode(),
            {"Content-Type": "application/x-www-form-urlencoded", **sid},
        )
        return [login, rows, encoded]

    login, rows, encoded = await asyncio.to_thread(run, APP_SECRET)
    assert login["IsSuccessByAPI"] is True and login["Context"]["UserName"] == USERNAME
    assert rows == [[number]]
    assert encoded == [{"FBillNo": number}]
    (refused,) = await asyncio.to_thread(run, "0" * 32)
    assert refused["LoginResultType"] == -1 and refused["KDSVCSessionId"] is None
    assert "签名" in refused["Message"]


async def test_lost_session_in_each_envelope(sim: KingdeeSimulator) -> None:
    """After the sessions expire, queries and write ops answer MsgCode 1 in their own shapes."""

    def run() -> tuple[Any, Any]:
        ok, headers = _post(
            f"{sim.url}/Kingdee.BOS.WebApi.ServicesStub.AuthService.ValidateUser.common.kdsvc",
            json.dumps(
                {"acctID": ACCT_ID, "username": USERNAME, "password": "bridge-password"}
            ).encode(),
            {"Content-Type": "application/json"},
        )
        assert "kdservice-sessionid=" in headers["Set-Cookie"]
        sim.expire_sessions()
        cookie = {"Cookie": f"kdservice-sessionid={ok['KDSVCSessionId']}"}
        query, _ = _post(
            f"{sim.url}/{FORM}ExecuteBillQuery.common.kdsvc",
            json.dumps({"data": {"FormId": "BD_MATERIAL", "FieldKeys": "FNumber"}}).encode(),
            cookie,
        )
        write, _ = _post(
            f"{sim.url}/{FORM}Audit.common.kdsvc",
            json.dumps({"formid": "PUR_PurchaseOrder", "data": {"Numbers": ["X"]}}).encode(),
            cookie,
        )
        return query, write

    query, write = await asyncio.to_thread(run)
    for status in (query[0][0]["Result"]["ResponseStatus"], write["Result"]["ResponseStatus"]):
        assert status["MsgCode"] == 1 and status["IsSuccess"] is False
        assert status["Errors"][0]["Message"] == "会话信息已丢失，请重新登录"


async def test_filter_string_parser(sim: KingdeeSimulator) -> None:
    """Comparisons, like, in, and/or with parentheses, numbers; unknown fields refused."""
    for code, name in [("M003", "螺丝 M3"), ("M004", "螺母 M3")]:
        sim.add_material(code, name)

    def run(filter_string: str) -> Any:
        query = {
            "FormId": "BD_MATERIAL",
            "FieldKeys": "FNumber",
            "FilterString": filter_string,
            "OrderString": "FNumber DESC",
        }
        return json.loads(_sdk(sim.url).ExecuteBillQuery(query))

    cases = {
        "FName like '螺%' and not FNumber = 'M003'": [["M004"]],
        "(FNumber = 'M001' or FNumber in ('M003','M004')) and FNumber <> 'M004'": [
            ["M003"],
            ["M001"],
        ],
        "FNumber != 'M001' and FMATERIALID > 0 and FName like '%M3'": [["M004"], ["M003"]],
        "FSafeStock >= 0 and FIsEnableSafeStock = '0' and FNumber <= 'M002'": [["M002"], ["M001"]],
    }
    for filter_string, expected in cases.items():
        assert await asyncio.to_thread(run, filter_string) == expected, filter_string
    bad = await asyncio.to_thread(run, "FNoSuchField = 1")
    assert bad[0][0]["Result"]["ResponseStatus"]["MsgCode"] == 9
    broken = await asyncio.to_thread(run, "FNumber = 'M001' and (")
    assert broken[0][0]["Result"]["ResponseStatus"]["IsSuccess"] is False


def test_simulator_is_an_erp_simulator() -> None:
    """Structural typing: mypy checks this assignment."""
    simulator: ErpSimulator = KingdeeSimulator()
    assert simulator.name == "kingdee"
    assert "APPROVAL_BRIDGE__ERP__KINGDEE__APP_SECRET" in simulator.bridge_env()
    assert "app_secret" not in simulator.bridge_section()
