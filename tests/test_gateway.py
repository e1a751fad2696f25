"""The DingTalk gateway against the sandbox: create, find, terminate, list, snapshot."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from approvals.config import ApprovalsConfig, ProcessConfig
from approvals.db import meter as meter_repo
from approvals.db.engine import Database
from approvals.errors import Permanent, Retryable
from approvals.models import DocType, PurchaseOrder, StockAlert
from approvals.ports import ApprovalGateway, InstanceDirectory, InstanceRequest
from approvals.prices import price_context
from bot import openapi
from bot.errors import DingTalkBadRequest
from bot.gateway import DingTalkGateway, parse_time
from bot.meter import CallMeter
from bot.openapi import DingTalkClient
from bot.sandbox import Sandbox, SandboxOptions
from bot.settings import DingTalkConfig
from cards.forms import PURCHASE_ORDER_LABELS

USERS = {"u1001": "dt-1001", "u1002": "dt-1002"}
APPROVALS = ApprovalsConfig(
    purchase_order=ProcessConfig(process_code="PROC-PO", dept_id=7),
    replenishment=ProcessConfig(process_code="PROC-RPL", lines_as="text"),
)
CREATE_API = "POST /v1.0/workflow/processInstances"
TERMINATE_API = "POST /v1.0/workflow/processInstances/terminate"
LIST_API = "POST /v1.0/workflow/processes/instanceIds/query"


class WallClock:
    """The sandbox's wall clock, which a test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self(), dt.UTC)


class Monotonic:
    """The gateway's monotonic clock, moved together with the sandbox's."""

    def __init__(self, wall: WallClock) -> None:
        self.wall = wall

    def __call__(self) -> float:
        return time.monotonic() + self.wall.offset


@pytest.fixture
def wall() -> WallClock:
    return WallClock()


@pytest.fixture
async def sandbox(wall: WallClock) -> AsyncIterator[Sandbox]:
    async with Sandbox(SandboxOptions(qps=None), clock=wall) as sb:
        yield sb


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[DingTalkClient]:
    config = DingTalkConfig(
        api_base=sandbox.url,
        oapi_base=sandbox.url,
        app_key="dingtestapp",
        app_secret=SecretStr("test-secret"),
        rate_limit_qps=500.0,
    )
    async with aiohttp.ClientSession() as session:
        yield DingTalkClient(session, config, throttle_waits=(0.05,))


def gateway(client: DingTalkClient, wall: WallClock, **kwargs: Any) -> DingTalkGateway:
    return DingTalkGateway(
        client, APPROVALS, USERS, clock=wall, monotonic=Monotonic(wall), **kwargs
    )


def po_request(
    wall: WallClock, doc_no: str = "PO-1", revision: int = 1, buyer: str = "u1001"
) -> InstanceRequest:
    order = PurchaseOrder.model_validate(
        {
            "doc_no": doc_no,
            "revision": revision,
            "buyer": {"erp_user": buyer, "name": "张三"},
            "supplier": {"code": "S001", "name": "杭州某某"},
            "total_amount": "120.00",
            "lines": [{"line_no": 1, "material_code": "M-1", "quantity": "10", "unit_price": "12"}],
        }
    )
    prices = (price_context(order.lines[0], None, 10.0),)
    return InstanceRequest(
        f"apr-{doc_no}", revision, DocType.PURCHASE_ORDER, doc_no, order, prices, wall.now()
    )


async def stored(sandbox: Sandbox, instance_id: str) -> dict[str, Any]:
    return next(i for i in await sandbox.instances() if i["instanceId"] == instance_id)


async def calls(sandbox: Sandbox, api: str) -> int:
    apis = (await sandbox.stats())["calls"]["apis"]
    return int(apis.get(api, {"calls": 0})["calls"])


async def test_the_gateway_implements_the_core_ports(
    client: DingTalkClient, wall: WallClock
) -> None:
    gw = gateway(client, wall)
    ports: tuple[ApprovalGateway, InstanceDirectory] = (gw, gw)
    assert all(p is gw for p in ports)


async def test_create_raises_an_instance_with_the_form_and_reference(
    client: DingTalkClient, sandbox: Sandbox, wall: WallClock
) -> None:
    gw = gateway(client, wall, agent_id=99)
    instance_id = await gw.create_instance(po_request(wall))
    instance = await stored(sandbox, instance_id)
    assert instance["processCode"] == "PROC-PO"
    assert instance["originatorUserId"] == "dt-1001"
    assert instance["status"] == "RUNNING"
    form = {v["name"]: v["value"] for v in instance["formComponentValues"]}
    assert form["桥接单号"] == "apr-PO-1:1"
    assert form["单据编号"] == "PO-1"
    assert form["价格预警"] == "第1行 M-1：⚠ 无历史价格"
    assert gw.body(po_request(wall))["deptId"] == 7
    assert gw.body(po_request(wall))["microappAgentId"] == 99


async def test_a_replenishment_uses_its_own_template(
    client: DingTalkClient, sandbox: Sandbox, wall: WallClock
) -> None:
    alert = StockAlert.model_validate(
        {
            "material_code": "M-1",
            "warehouse": "WH1",
            "on_hand": "80",
            "safety_stock": "500",
            "reorder_qty": "1000",
            "requester": {"erp_user": "u1002"},
        }
    )
    request = InstanceRequest("apr-r", 1, DocType.REPLENISHMENT, "RPL-1", alert, (), wall.now())
    instance = await stored(sandbox, await gateway(client, wall).create_instance(request))
    assert (instance["processCode"], instance["originatorUserId"]) == ("PROC-RPL", "dt-1002")
    form = {v["name"]: v["value"] for v in instance["formComponentValues"]}
    assert form["建议采购数量"] == "1000"
    assert form["桥接单号"] == "apr-r:1"


async def test_labels_match_a_strict_template_and_a_wrong_one_is_refused(
    wall: WallClock,
) -> None:
    header = [v for k, v in PURCHASE_ORDER_LABELS.items() if not k.startswith("line_")]
    options = SandboxOptions(qps=None, process_codes={"PROC-PO": header})
    async with Sandbox(options, clock=wall) as sandbox, aiohttp.ClientSession() as session:
        config = DingTalkConfig(api_base=sandbox.url, app_key="k", app_secret=SecretStr("s"))
        dt_client = DingTalkClient(session, config)
        assert await gateway(dt_client, wall).create_instance(po_request(wall))
        wrong = ApprovalsConfig(
            purchase_order=ProcessConfig(process_code="PROC-PO", fields={"doc_no": "订单号"})
        )
        with pytest.raises(DingTalkBadRequest) as caught:
            await DingTalkGateway(dt_client, wrong, USERS).create_instance(po_request(wall))
        assert isinstance(caught.value, Permanent)
        assert caught.value.code == "formConverterError"
        assert "订单号" in str(caught.value)


async def test_an_unmapped_erp_user_is_permanent_and_costs_no_call(
    client: DingTalkClient, sandbox: Sandbox, wall: WallClock
) -> None:
    with pytest.raises(Permanent, match=r"'u9999'.*\[users\]"):
        await gateway(client, wall).create_instance(po_request(wall, buyer="u9999"))
    unconfigured = DingTalkGateway(client, ApprovalsConfig(), USERS)
    with pytest.raises(Permanent, match=r"process_code under \[approvals.purchase_order\]"):
        await unconfigured.create_instance(po_request(wall))
    assert await calls(sandbox, CREATE_API) == 0


async def test_terminate_waits_out_the_15_second_rule_then_terminates(
    client: DingTalkClient, sandbox: Sandbox, wall: WallClock
) -> None:
    gw = gateway(client, wall)
    instance_id = await gw.create_instance(po_request(wall))
    # This gateway knows the instance is young: it waits without spending a call.
    with pytest.raises(Retryable) as caught:
        await gw.terminate_instance(instance_id, "revised")
    assert caught.value.retry_after is not None and 14 <= caught.value.retry_after <= 16
    assert await calls(sandbox, TERMINATE_API) == 0
    # After a restart it does not know: DingTalk refuses, and the refusal is retried, not failed.
    with pytest.raises(Retryable) as refused:
        await gateway(client, wall).terminate_instance(instance_id, "revised")
    assert not isinstance(refused.value, Permanent)
    assert refused.value.retry_after is not None and 1 <= refused.value.retry_after <= 16
    assert await calls(sandbox, TERMINATE_API) == 1
    wall.offset += 16
    await gw.terminate_instance(instance_id, "revised")
    snapshot = await gw.snapshot(instance_id)
    assert (snapshot.status, snapshot.result) == ("TERMINATED", None)
    assert snapshot.finished_at is not None
    # A finished instance counts as terminated: nothing to do, no error.
    await gateway(client, wall).terminate_instance(instance_id, "again")


async def test_terminating_a_decided_instance_is_done(
    client: DingTalkClient, sandbox: Sandbox, wall: WallClock
) -> None:
    gw = gateway(client, wall)
    instance_id = await gw.create_instance(po_request(wall))
    await sandbox.approve(instance_id)
    wall.offset += 20
    await gw.terminate_instance(instance_id, "cancelled in the ERP")
    assert (await stored(sandbox, instance_id))["status"] == "COMPLETED"
    await gw.terminate_instance("no-such-instance", "gone")  # nothing running: nothing to do


async def test_find_instance_by_reference_across_pages(
    client: DingTalkClient, sandbox: Sandbox, wall: WallClock
) -> None:
    gw = gateway(client, wall)
    ids = [await gw.create_instance(po_request(wall, f"PO-{n}")) for n in range(25)]
    await gw.create_instance(po_request(wall, "PO-OTHER", buyer="u1002"))
    assert await gw.find_instance(po_request(wall, "PO-23")) == ids[23]  # on the second page
    assert await gw.find_instance(po_request(wall, "PO-3")) == ids[3]
    assert await gw.find_instance(po_request(wall, "PO-3", revision=2)) is None
    assert await gw.find_instance(po_request(wall, "PO-NEVER")) is None


async def test_a_lookup_in_windows_lists_only_the_instances_started_then(
    client: DingTalkClient, sandbox: Sandbox, wall: WallClock
) -> None:
    gw = gateway(client, wall)
    for n in range(25):
        await gw.create_instance(po_request(wall, f"PO-{n}"))
    early = wall.now()
    wall.offset += 3600  # an hour later, one more create, whose reply was lost
    request = po_request(wall, "PO-LATE")
    started = wall.now()
    late = await gw.create_instance(request)
    finished = wall.now()
    error = client.clock_error()
    assert error is not None and error < 2  # read from the answers' `Date` header
    restarted = gateway(client, wall)  # remembers nothing: every listed id costs a get
    listed = await calls(sandbox, LIST_API)
    overlapping = [(started, finished), (started + dt.timedelta(seconds=1), finished)]
    assert await restarted.find_instance(request, overlapping) == late
    # One page for the two windows (merged), not the two pages of every instance since.
    assert await calls(sandbox, LIST_API) - listed == 1
    between = early + dt.timedelta(minutes=30)  # a call that raised nothing
    assert await restarted.find_instance(request, [(between, between)]) is None
    assert await restarted.find_instance(request, []) is None  # nowhere to look: no call
    assert await calls(sandbox, LIST_API) - listed == 2
    assert await restarted.find_instance(request) == late  # unknown: everything since receipt


async def test_lookups_after_a_restart_fetch_each_instance_once(
    client: DingTalkClient, sandbox: Sandbox, wall: WallClock
) -> None:
    before = gateway(client, wall)
    ids = [await before.create_instance(po_request(wall, f"PO-{n}")) for n in range(25)]
    restarted = gateway(client, wall)  # a new process: it remembers nothing
    for n in (24, 3, 17, 0):
        assert await restarted.find_instance(po_request(wall, f"PO-{n}")) == ids[n]
    assert await restarted.find_instance(po_request(wall, "PO-NEVER")) is None
    gets = (await sandbox.stats())["calls"]["apis"]["GET /v1.0/workflow/processInstances"]
    assert gets["calls"] == 25  # each instance once, however many lookups


async def test_concurrent_lookups_after_a_restart_share_their_fetches(
    client: DingTalkClient, sandbox: Sandbox, wall: WallClock
) -> None:
    before = gateway(client, wall)
    ids = [await before.create_instance(po_request(wall, f"PO-{n}")) for n in range(20)]
    restarted = gateway(client, wall)
    found = await asyncio.gather(
        *(restarted.find_instance(po_request(wall, f"PO-{n}")) for n in range(0, 20, 2))
    )
    assert found == ids[0:20:2]
    gets = (await sandbox.stats())["calls"]["apis"]["GET /v1.0/workflow/processInstances"]
    assert gets["calls"] <= 20  # ten lookups at once, each instance fetched once at most


async def test_finished_ids_and_snapshots(
    client: DingTalkClient, sandbox: Sandbox, wall: WallClock
) -> None:
    gw = gateway(client, wall)
    before = await gw.create_instance(po_request(wall, "PO-OLD"))
    await sandbox.approve(before)
    wall.offset += 3600
    since = wall.now() - dt.timedelta(minutes=5)
    ids = [await gw.create_instance(po_request(wall, f"PO-{n}")) for n in range(24)]
    for instance_id in ids[:21]:
        await sandbox.approve(instance_id, remark="同意")
    await sandbox.refuse(ids[21], "manager1", "太贵")
    wall.offset += 20
    await gw.terminate_instance(ids[22], "revised")
    finished = await gw.finished_ids("PROC-PO", since)
    assert sorted(finished) == sorted(ids[:23])  # all pages; neither the running nor the old one

    agreed = await gw.snapshot(ids[0])
    assert (agreed.status, agreed.result) == ("COMPLETED", "agree")
    assert agreed.finished_at is not None
    assert [(a.user_id, a.result, a.comment) for a in agreed.approvers] == [
        ("manager1", "agree", "同意")
    ]
    refused = await gw.snapshot(ids[21])
    assert (refused.result, refused.approvers[0].result) == ("refuse", "refuse")
    assert refused.approvers[0].comment == "太贵"
    running = await gw.snapshot(ids[23])
    assert (running.status, running.result, running.finished_at) == ("RUNNING", None, None)
    assert running.approvers == ()


async def test_gateway_calls_are_metered_into_the_database(
    sandbox: Sandbox, wall: WallClock, db: Database
) -> None:
    config = DingTalkConfig(api_base=sandbox.url, app_key="dingtestapp", app_secret=SecretStr("s"))
    async with aiohttp.ClientSession() as session, CallMeter(db, budget=1000) as meter:
        gw = gateway(DingTalkClient(session, config, meter=meter), wall)
        instance_id = await gw.create_instance(po_request(wall))
        await gw.snapshot(instance_id)
        # This process raised it, so it knows the reference: the lookup only lists ids.
        assert await gw.find_instance(po_request(wall)) == instance_id
    async with db.read() as conn:
        counts = await meter_repo.month(conn, dt.datetime.now(dt.UTC).strftime("%Y-%m"))
    assert {api: c.calls for api, c in counts.items()} == {
        openapi.CREATE: 1,
        openapi.GET: 1,
        openapi.LIST_IDS: 1,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2022-08-31T11:52Z", dt.datetime(2022, 8, 31, 11, 52, tzinfo=dt.UTC)),
        ("2022-08-31T11:52:07Z", dt.datetime(2022, 8, 31, 11, 52, 7, tzinfo=dt.UTC)),
        ("2022-08-31T19:52+08:00", dt.datetime(2022, 8, 31, 11, 52, tzinfo=dt.UTC)),
        ("yesterday", None),
        (None, None),
    ],
)
def test_dingtalk_times_parse_as_utc(text: str | None, expected: dt.datetime | None) -> None:
    assert parse_time(text) == expected
