"""`/metrics`: every family present after a flow, with the values the flow implies."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from approvals.config import ApprovalsConfig, ProcessConfig
from approvals.db import repo
from approvals.errors import Permanent
from approvals.memory import MemoryGateway, MemoryNotifier
from approvals.ports import WriteBack, WriteBackReceipt
from approvals.states import State
from bot import dashboard
from bot import metrics as metrics_routes
from bot.app import Ports, create_app
from bot.demo import demo_settings
from bot.keys import DATABASE, JOBS, RECONCILER, WEBHOOK
from bot.metrics import METRICS, Metrics
from bot.sandbox.options import SandboxOptions
from bot.sandbox.server import Sandbox
from bot.settings import DashboardConfig, Settings
from cards.renderer import Renderer
from erp_adapter.reference.erp import ReferenceErp
from tests import dbutil
from tests.harness import Bridge, bridge_settings, event, order, signed

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def instrument(app: web.Application, settings: Settings) -> Metrics:
    """Mount the dashboard and `/metrics` on an app from `create_app`, as bot/app.py is to.

    Until `create_app` wires them itself, the observers are attached once its services exist.
    """
    if METRICS in app:
        return app[METRICS]
    metrics = Metrics()
    metrics_routes.add_routes(app, metrics)
    dashboard.add_routes(app, settings, Renderer())

    async def attach(app: web.Application) -> None:
        app[WEBHOOK].observer = app[WEBHOOK].observer or metrics.erp_event
        app[JOBS].observer = app[JOBS].observer or metrics.job_done

    app.on_startup.append(attach)
    return metrics


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve an app on a free loopback port; its base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


class ScriptedErp:
    """The ERP port (a protocol seam): refuses the documents in `refuse`, acknowledges the rest."""

    def __init__(self, refuse: set[str]) -> None:
        self.refuse = refuse

    async def write_back(self, result: WriteBack) -> WriteBackReceipt:
        """Acknowledge, or refuse for good."""
        if result.doc_no in self.refuse:
            raise Permanent(f"422 from the ERP: {result.doc_no} is locked")
        return WriteBackReceipt(erp_ref=f"ERP-{result.doc_no}")


def observed_settings(sqlite_template: Path, tmp_path: Path, **dash: str) -> Settings:
    """A fast test bridge with process codes (reconciliation on) and dashboard credentials."""
    url = dbutil.copy_sqlite(sqlite_template, tmp_path / "bridge.db")
    return bridge_settings(url).model_copy(
        update={
            "approvals": ApprovalsConfig(
                purchase_order=ProcessConfig(process_code="PROC-PO"),
                replenishment=ProcessConfig(process_code="PROC-RE"),
            ),
            "dashboard": DashboardConfig.model_validate(dash),
        }
    )


@asynccontextmanager
async def observed_bridge(settings: Settings, refuse: set[str]) -> AsyncIterator[Bridge]:
    """A bridge on in-memory DingTalk ports, with the dashboard and `/metrics` mounted."""
    gateway, notifier = MemoryGateway(), MemoryNotifier()
    app = create_app(settings, Ports(gateway, notifier, ScriptedErp(refuse), gateway))
    instrument(app, settings)
    async with serve(app) as url, aiohttp.ClientSession() as http:
        yield Bridge(url, app, http, gateway, notifier)


async def instance_of(bridge: Bridge, approval_id: str) -> str:
    """The instance raised for revision 1 of an approval."""
    row = await bridge.wait_state(approval_id, 1, State.PENDING)
    assert row.instance_id is not None
    return row.instance_id


async def run_flow(bridge: Bridge) -> dict[str, str]:
    """Approvals in several states: pending, done (approved, rejected), failed, cancelled."""
    ids: dict[str, str] = {}
    for doc in ("PO-OPEN", "PO-YES", "PO-NO", "PO-BAD", "PO-GONE", "PO-LOST"):
        status, body = await bridge.post(
            event(f"evt-{doc}", "purchase_order.submitted", order(doc))
        )
        assert status == 202, body
        ids[doc] = body["approval_id"]
    again = event("evt-PO-YES", "purchase_order.submitted", order("PO-YES"))
    assert (await bridge.post(again))[0] == 200
    raw = b'{"event_id": "x"}'
    bad = signed(raw) | {"X-Bridge-Signature": "v1=" + "0" * 64}
    async with bridge.http.post(bridge.url + "/erp/events", data=raw, headers=bad) as response:
        assert response.status == 401
    for doc, decision in (("PO-YES", "approved"), ("PO-NO", "rejected"), ("PO-BAD", "approved")):
        await bridge.decide(await instance_of(bridge, ids[doc]), decision)
    await instance_of(bridge, ids["PO-GONE"])
    cancel = {"doc_no": "PO-GONE", "revision": 1, "reason": "no longer needed"}
    assert (await bridge.post(event("evt-cancel", "purchase_order.cancelled", cancel)))[0] == 202
    # A decision whose event never came: reconciliation finds it.
    bridge.gateway.finish(await instance_of(bridge, ids["PO-LOST"]), "agree")
    await instance_of(bridge, ids["PO-OPEN"])
    assert (await bridge.app[RECONCILER].sweep()).applied == 1
    ends = {"PO-YES": State.DONE, "PO-NO": State.DONE, "PO-BAD": State.FAILED}
    ends |= {"PO-GONE": State.CANCELLED, "PO-LOST": State.DONE}
    for doc, state in ends.items():
        await bridge.wait_state(ids[doc], 1, state)
    return ids


async def scrape(bridge: Bridge) -> tuple[str, Samples]:
    """`GET /metrics`: the text and its samples by (name, labels)."""
    async with bridge.http.get(bridge.url + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


async def test_families_after_a_flow(sqlite_template: Path, tmp_path: Path) -> None:
    settings = observed_settings(sqlite_template, tmp_path, token="t" * 24)
    async with observed_bridge(settings, refuse={"PO-BAD"}) as bridge:
        await run_flow(bridge)
        deadline = time.monotonic() + 10
        while True:  # the job observer hears of a run just after it committed
            text, s = await scrape(bridge)
            if s.get(("approval_bridge_write_back_failures_total", (("outcome", "parked"),))):
                break
            assert time.monotonic() < deadline, text
            await asyncio.sleep(0.05)
    ns = "approval_bridge_"

    def erp(kind: str, outcome: str) -> float:
        return s[(ns + "erp_events_total", (("outcome", outcome), ("type", kind)))]

    assert erp("purchase_order.submitted", "accepted") == 6
    assert erp("purchase_order.submitted", "duplicate") == 1
    assert erp("purchase_order.cancelled", "accepted") == 1
    assert erp("unknown", "bad_signature") == 1
    states = {state.value: s[(ns + "approvals", (("state", state.value),))] for state in State}
    assert states["pending"] == 1 and states["done"] == 3
    assert states["failed"] == 1 and states["cancelled"] == 1
    assert states["received"] == 0
    assert s[(ns + "time_to_decision_seconds_count", ())] == 4  # three events, one reconciled
    assert s[(ns + "time_to_decision_seconds_bucket", (("le", "60.0"),))] == 4
    assert s[(ns + "reconcile_fixes_total", ())] == 1
    assert s[(ns + "write_back_attempts_total", ())] >= 4
    assert s[(ns + "job_runs_total", (("kind", "write_back"), ("outcome", "done")))] == 3
    assert s[(ns + "job_runs_total", (("kind", "create_instance"), ("outcome", "done")))] == 6
    assert s[(ns + "database_up", ())] == 1
    assert (ns + "jobs_queued", ()) in s
    assert s[(ns + "jobs_oldest_age_seconds", ())] >= 0
    assert s[(ns + "reconcile_last_sweep_applied", ())] == 1
    assert s[(ns + "reconcile_last_sweep_timestamp_seconds", ())] > 1.7e9
    # No DingTalk client here (in-memory ports): those families are declared, without samples.
    for family in (
        "dingtalk_calls_this_month",
        "dingtalk_calls_budget",
        "dingtalk_stream_connected",
    ):
        assert f"# TYPE {ns}{family} gauge" in text
    assert not any(name.startswith(ns + "dingtalk_calls_budget") for name, _ in s)


async def test_dingtalk_families(sqlite_template: Path, tmp_path: Path) -> None:
    """Against the sandbox: calls by API and outcome (throttling apart), the budget, the stream."""
    sandbox = Sandbox(SandboxOptions()).start_in_thread()
    try:
        async with ReferenceErp(secret="metrics-erp-secret") as erp:
            url = dbutil.copy_sqlite(sqlite_template, tmp_path / "bridge.db")
            settings = demo_settings(url, erp, sandbox.url)
            app = create_app(settings)
            instrument(app, settings)
            async with serve(app) as base, aiohttp.ClientSession() as http:
                erp.bridge_url = base
                await sandbox.set_limits(qps=2)  # three creates at once: one is throttled
                for i in range(3):
                    erp.submit_order(order(f"PO-M-{i}"))
                first = await pending_instance(sandbox, "PO-M-0")
                for i in (1, 2):
                    await pending_instance(sandbox, f"PO-M-{i}")
                await sandbox.approve(first)
                await wait_done(app, ["PO-M-0"])
                text, s = await scrape(Bridge(base, app, http, MemoryGateway(), MemoryNotifier()))
    finally:
        await sandbox.stop_async()
    ns = "approval_bridge_"

    def calls(outcome: str) -> float:
        labels = (("api", "workflow.processInstances.create"), ("outcome", outcome))
        return s[(ns + "dingtalk_calls_this_month", labels)]

    assert calls("ok") == 3 and calls("failed") == 0
    assert calls("throttled") >= 1, text
    # Every call that went through is used, the buyer's outcome message included; throttled
    # calls are not counted.
    ok_calls = sum(
        v
        for (name, labels), v in s.items()
        if name == ns + "dingtalk_calls_this_month" and ("outcome", "ok") in labels
    )
    assert s[(ns + "dingtalk_calls_used", ())] == ok_calls >= 3
    assert s[(ns + "dingtalk_calls_budget", ())] == 10_000
    assert s[(ns + "dingtalk_stream_connected", ())] == 1
    assert s[(ns + "dingtalk_stream_connects_total", ())] >= 1
    assert s[(ns + "approvals", (("state", "pending"),))] == 2
    assert s[(ns + "time_to_decision_seconds_count", ())] == 1


async def test_metrics_need_no_credentials(sqlite_template: Path, tmp_path: Path) -> None:
    settings = observed_settings(sqlite_template, tmp_path, token="t" * 24)
    async with observed_bridge(settings, refuse=set()) as bridge:
        text, samples = await scrape(bridge)
        async with bridge.http.get(bridge.url + "/") as response:
            assert response.status == 401  # the dashboard next to it is protected
    assert "t" * 24 not in text
    assert samples[("approval_bridge_approvals", (("state", "pending"),))] == 0


async def test_registry_is_per_app() -> None:
    one, two = Metrics(), Metrics()
    one.erp_event("purchase_order.submitted", "accepted")
    assert one.erp_events.labels("purchase_order.submitted", "accepted")._value.get() == 1
    assert two.erp_events.labels("purchase_order.submitted", "accepted")._value.get() == 0


async def pending_instance(sandbox: Sandbox, doc_no: str) -> str:
    """The sandbox instance raised for a document, once there is one."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for instance in await sandbox.instances():
            if instance["status"] == "RUNNING" and doc_no in json.dumps(
                instance, ensure_ascii=False
            ):
                return str(instance["instanceId"])
        await asyncio.sleep(0.05)
    raise AssertionError(f"no instance for {doc_no}")


async def wait_done(app: web.Application, doc_nos: list[str]) -> None:
    """Until every document's revision 1 is done (written back)."""
    deadline = time.monotonic() + 15
    while True:
        async with app[DATABASE].read() as conn:
            rows = [(await repo.revisions_of(conn, d))[0] for d in doc_nos]
        if all(r.state is State.DONE for r in rows):
            return
        assert time.monotonic() < deadline, [(r.doc_no, r.state) for r in rows]
        await asyncio.sleep(0.05)
