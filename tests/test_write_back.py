"""CONTRACT §3 end to end: the bridge writes decisions back to the reference ERP over loopback.

Every case runs on SQLite and PostgreSQL. The reference ERP checks signatures, keeps the first
decision per `Idempotency-Key` (answering 422 `conflicting_decision` to a different one), and
records every request it receives; faults are injected with `ReferenceErp.set_fault`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr
from sqlalchemy import insert, select, text

from approvals.config import DatabaseConfig
from approvals.db.engine import Database
from approvals.db.jobs import JobRow
from approvals.db.repo import RevisionRow
from approvals.db.tables import approval, job, metadata, revision
from approvals.errors import Conflict, NotFound, Permanent, Retryable
from approvals.notices import NOTIFY
from approvals.ports import Notice, SystemClock, WriteBack, WriteBackReceipt
from approvals.states import State
from approvals.writeback import WRITE_BACK, WriteBackHandler
from bot.keys import DECISIONS, JOBS
from erp_adapter import http
from erp_adapter.config import ErpConfig
from erp_adapter.reference import ReferenceErp
from erp_adapter.reference.records import WriteBackRecord
from tests import dbutil
from tests.harness import SECRET, Bridge, bridge_settings, order, running_bridge, stock

# --------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated, empty database's URL: a fresh SQLite file, then PostgreSQL (truncated)."""
    if request.param == "sqlite":
        return dbutil.copy_sqlite(sqlite_template, tmp_path / "bridge.db")
    url: str = request.getfixturevalue("postgres_url")
    database = Database.from_config(DatabaseConfig(url=url, pool_size=1))
    try:
        names = ", ".join(t.name for t in metadata.sorted_tables)
        async with database.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        await database.dispose()
    return url


def free_port() -> int:
    """A loopback port nothing listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def bridge_and_erp(
    url: str,
    *,
    timeout_s: float = 2.0,
    erp_port: int = 0,
    **jobs: Any,
) -> AsyncIterator[tuple[Bridge, ReferenceErp]]:
    """The reference ERP and a bridge pointed at each other."""
    async with ReferenceErp(secret=SECRET, port=erp_port) as erp:
        settings = bridge_settings(url, erp.url, **jobs)
        erp_config = ErpConfig(
            base_url=erp.url, webhook_secret=SecretStr(SECRET), timeout_s=timeout_s
        )
        settings = settings.model_copy(update={"erp": erp_config})
        async with running_bridge(settings) as bridge:
            erp.bridge_url = bridge.url
            yield bridge, erp


async def submit(bridge: Bridge, erp: ReferenceErp, doc_no: str) -> tuple[str, RevisionRow]:
    """The ERP submits an order; returns its approval id and the revision once pending."""
    event_id = erp.submit_order(order(doc_no))
    await erp.wait_delivered()
    record = erp.event(event_id)
    assert record.status == "delivered", record.to_json()
    assert record.approval_id is not None
    row = await bridge.wait_state(record.approval_id, 1, State.PENDING)
    assert row.instance_id is not None
    return record.approval_id, row


async def wait_for(what: str, predicate: Callable[[], bool], wait_s: float = 10) -> None:
    """Poll until `predicate()` holds."""
    deadline = time.monotonic() + wait_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def settle(bridge: Bridge, seconds: float = 0.4) -> None:
    """Leave the bridge time to do anything more it would (retries, notices): it must not."""
    bridge.app[JOBS].wake()
    await asyncio.sleep(seconds)


async def open_jobs(bridge: Bridge, approval_id: str) -> list[tuple[str, str]]:
    """(kind, status) of the jobs still held for an approval."""
    async with bridge.db.read() as conn:
        rows = await conn.execute(
            select(job.c.kind, job.c.status).where(job.c.approval_id == approval_id)
        )
        return [(kind, status) for kind, status in rows.all()]


def assert_one_key_one_decision(
    records: list[WriteBackRecord], approval_id: str, revision: int, decision: str
) -> None:
    """Every request carried `{approval_id}:{revision}` and the same decision, none conflicted."""
    assert records, "the ERP received no write-back"
    assert {r.idempotency_key for r in records} == {f"{approval_id}:{revision}"}
    assert {r.body["decision"] for r in records} == {decision}
    assert {r.body["approval_id"] for r in records} == {approval_id}
    assert {r.body["revision"] for r in records} == {revision}
    assert all(r.outcome != "conflicting_decision" for r in records)
    assert all(r.status != 422 for r in records)
    assert all(r.outcome != "unauthorized" for r in records), "a write-back was badly signed"


def kinds(notices: list[Notice]) -> list[str]:
    return [n.kind for n in notices]


def admin_notices(bridge: Bridge) -> list[Notice]:
    """Notices for admins; the buyer's `outcome` notice is covered by test_notify."""
    return [n for n in bridge.notifier.notices if n.kind != "outcome"]


# --------------------------------------------------------------------------------------------
# outcomes


@pytest.mark.parametrize("decision", ["approved", "rejected"])
async def test_2xx_is_done_and_erp_ref_kept(db_url: str, decision: str) -> None:
    async with bridge_and_erp(db_url) as (bridge, erp):
        approval_id, row = await submit(bridge, erp, "PO-WB-OK")
        assert row.instance_id is not None
        result = await bridge.decide(row.instance_id, decision)
        assert result.outcome.value == "applied"
        done = await bridge.wait_state(approval_id, 1, State.DONE)
        await settle(bridge)
        records = erp.write_backs
        notices = admin_notices(bridge)
        jobs = await open_jobs(bridge, approval_id)
    ordered = erp.order("PO-WB-OK")
    assert ordered.status == decision
    assert ordered.erp_ref is not None and ordered.erp_ref.startswith("AUD-")
    assert done.erp_ref == ordered.erp_ref
    assert done.last_error is None
    assert len(records) == 1
    assert_one_key_one_decision(records, approval_id, 1, decision)
    [record] = records
    assert (record.status, record.outcome) == (200, "applied")
    body = record.body
    assert body["doc_type"] == "purchase_order"
    assert body["doc_no"] == "PO-WB-OK"
    assert body["process_instance_id"] == row.instance_id
    assert dt.datetime.fromisoformat(body["decided_at"]).tzinfo is not None
    assert [a["name"] for a in body["approvers"]] == ["王五"]
    assert ordered.decided_by is not None and ordered.decided_by["decision"] == decision
    assert notices == []
    assert jobs == []


async def test_409_is_stale_with_one_notice_and_no_retry(db_url: str) -> None:
    async with bridge_and_erp(db_url) as (bridge, erp):
        approval_id, row = await submit(bridge, erp, "PO-WB-409")
        erp.set_fault("conflict")
        assert row.instance_id is not None
        await bridge.decide(row.instance_id, "approved")
        stale = await bridge.wait_state(approval_id, 1, State.STALE)
        await wait_for("the stale notice", lambda: len(admin_notices(bridge)) >= 1)
        await settle(bridge)
        records = erp.write_backs
        notices = admin_notices(bridge)
        jobs = await open_jobs(bridge, approval_id)
    assert len(records) == 1, "a 409 must not be retried"
    assert_one_key_one_decision(records, approval_id, 1, "approved")
    assert records[0].status == 409
    assert stale.erp_ref is None
    assert stale.last_error is not None and "409" in stale.last_error
    assert erp.order("PO-WB-409").status == "submitted"
    assert kinds(notices) == ["stale"]
    assert (notices[0].approval_id, notices[0].doc_no) == (approval_id, "PO-WB-409")
    assert "PO-WB-409" in notices[0].text
    assert jobs == []


async def test_order_changed_in_erp_while_retrying_is_stale(db_url: str) -> None:
    """A genuine 409: the order got a new revision in the ERP while the write-back was retried."""
    async with bridge_and_erp(db_url) as (bridge, erp):
        approval_id, row = await submit(bridge, erp, "PO-WB-CHG")
        erp.set_fault("down")  # 503 until further notice
        assert row.instance_id is not None
        await bridge.decide(row.instance_id, "approved")
        await wait_for("a first write-back attempt", lambda: len(erp.write_backs) >= 1)
        erp.change_order("PO-WB-CHG", order("PO-WB-CHG", revision=2, price="12.50"))
        await erp.wait_delivered()
        await bridge.wait_state(approval_id, 2, State.PENDING)
        erp.set_fault("ok")
        stale = await bridge.wait_state(approval_id, 1, State.STALE)
        await wait_for("the stale notice", lambda: len(admin_notices(bridge)) >= 1)
        await settle(bridge)
        second = await bridge.revision(approval_id, 2)
        records = erp.write_backs
        notices = admin_notices(bridge)
    assert_one_key_one_decision(records, approval_id, 1, "approved")
    assert [r.status for r in records[:-1]] == [503] * (len(records) - 1)
    assert (records[-1].status, records[-1].outcome) == (409, "applied")
    assert stale.erp_ref is None
    assert second.state is State.PENDING, "the new revision still awaits its own approval"
    ordered = erp.order("PO-WB-CHG")
    assert (ordered.revision, ordered.status) == (2, "submitted")
    assert kinds(notices) == ["stale"]


async def test_400_is_failed_with_notice_and_no_retry(db_url: str) -> None:
    async with bridge_and_erp(db_url) as (bridge, erp):
        approval_id, row = await submit(bridge, erp, "PO-WB-400")
        erp.set_fault("reject")
        assert row.instance_id is not None
        await bridge.decide(row.instance_id, "rejected")
        failed = await bridge.wait_state(approval_id, 1, State.FAILED)
        await wait_for("the failure notice", lambda: len(admin_notices(bridge)) >= 1)
        await settle(bridge)
        records = erp.write_backs
        notices = admin_notices(bridge)
    assert len(records) == 1, "a 400 must not be retried"
    assert_one_key_one_decision(records, approval_id, 1, "rejected")
    assert records[0].status == 400
    assert failed.erp_ref is None
    assert failed.last_error is not None and "400" in failed.last_error
    assert erp.order("PO-WB-400").status == "submitted"
    assert kinds(notices) == ["write_back_failed"]
    assert (notices[0].approval_id, notices[0].doc_no) == (approval_id, "PO-WB-400")


async def test_500s_are_retried_until_done(db_url: str) -> None:
    async with bridge_and_erp(db_url) as (bridge, erp):
        approval_id, row = await submit(bridge, erp, "PO-WB-500")
        erp.set_fault("error", fail_next=3)
        assert row.instance_id is not None
        await bridge.decide(row.instance_id, "rejected")
        done = await bridge.wait_state(approval_id, 1, State.DONE)
        await settle(bridge)
        records = erp.write_backs
        notices = admin_notices(bridge)
        jobs = await open_jobs(bridge, approval_id)
    assert [r.status for r in records] == [500, 500, 500, 200]
    assert [r.outcome for r in records] == ["fault", "fault", "fault", "applied"]
    assert_one_key_one_decision(records, approval_id, 1, "rejected")
    ordered = erp.order("PO-WB-500")
    assert ordered.status == "rejected"
    assert ordered.erp_ref is not None
    assert done.erp_ref == ordered.erp_ref
    assert notices == []
    assert jobs == []


async def test_503_retry_after_is_honoured(db_url: str) -> None:
    async with bridge_and_erp(db_url) as (bridge, erp):
        approval_id, row = await submit(bridge, erp, "PO-WB-503")
        erp.set_fault("down", fail_next=1, retry_after=1)
        assert row.instance_id is not None
        await bridge.decide(row.instance_id, "approved")
        done = await bridge.wait_state(approval_id, 1, State.DONE)
        records = erp.write_backs
        notices = admin_notices(bridge)
    assert [r.status for r in records] == [503, 200]
    assert_one_key_one_decision(records, approval_id, 1, "approved")
    gap = (records[1].received_at - records[0].received_at).total_seconds()
    # The configured backoff is at most 0.2 s, so only Retry-After explains a wait of 1 s.
    assert gap >= 1.0, f"retried after {gap:.3f} s despite Retry-After: 1"
    ordered = erp.order("PO-WB-503")
    assert ordered.status == "approved"
    assert ordered.erp_ref is not None
    assert done.erp_ref == ordered.erp_ref
    assert notices == []


async def test_absurd_retry_after_still_ends_at_the_deadline(db_url: str) -> None:
    """A Retry-After far beyond the deadline (here ~31,700 years) parks the write-back."""
    async with bridge_and_erp(db_url, write_back_deadline_h=0.0005) as (bridge, erp):
        approval_id, row = await submit(bridge, erp, "PO-WB-RA")
        erp.set_fault("down", retry_after=10**12)
        assert row.instance_id is not None
        await bridge.decide(row.instance_id, "approved")
        failed = await bridge.wait_state(approval_id, 1, State.FAILED, wait_s=6)
        await wait_for("the failure notice", lambda: len(admin_notices(bridge)) >= 1)
        records = erp.write_backs
        notices = admin_notices(bridge)
    assert_one_key_one_decision(records, approval_id, 1, "approved")
    assert {r.status for r in records} == {503}
    assert failed.last_error is not None
    assert kinds(notices) == ["write_back_failed"]


async def test_slow_erp_past_the_timeout_is_retried(db_url: str) -> None:
    async with bridge_and_erp(db_url, timeout_s=0.3) as (bridge, erp):
        approval_id, row = await submit(bridge, erp, "PO-WB-SLOW")
        erp.set_fault("slow", fail_next=1, delay=1.0)
        assert row.instance_id is not None
        await bridge.decide(row.instance_id, "approved")
        started = time.monotonic()
        done = await bridge.wait_state(approval_id, 1, State.DONE)
        took = time.monotonic() - started
        # The ERP logs a request when it has answered it: the slow one, a second after it came.
        await wait_for("the slow request to finish", lambda: len(erp.write_backs) == 2)
        records = sorted(erp.write_backs, key=lambda r: r.received_at)
        notices = admin_notices(bridge)
    assert took < 1.0, f"the bridge waited {took:.2f} s for an ERP it gives 0.3 s"
    assert_one_key_one_decision(records, approval_id, 1, "approved")
    # The retry was applied first; the timed-out request, finishing later, was a replay.
    assert [r.outcome for r in records] == ["replay", "applied"]
    ordered = erp.order("PO-WB-SLOW")
    assert ordered.status == "approved"
    assert ordered.erp_ref is not None
    assert done.erp_ref == ordered.erp_ref
    assert notices == []


async def test_erp_down_past_deadline_is_parked_then_admin_retry_is_done(db_url: str) -> None:
    port = free_port()
    async with bridge_and_erp(db_url, erp_port=port, write_back_deadline_h=0.0005) as (
        bridge,
        erp,
    ):
        assert erp.url == f"http://127.0.0.1:{port}"
        approval_id, row = await submit(bridge, erp, "PO-WB-DOWN")
        await erp.close()  # the ERP stops serving: its port refuses connections
        assert row.instance_id is not None
        started = time.monotonic()
        await bridge.decide(row.instance_id, "approved")
        failed = await bridge.wait_state(approval_id, 1, State.FAILED, wait_s=15)
        parked_after = time.monotonic() - started
        await wait_for("the failure notice", lambda: len(admin_notices(bridge)) >= 1)
        await settle(bridge)
        async with bridge.db.read() as conn:
            attempts = (
                await conn.execute(
                    select(job.c.attempts, job.c.status).where(job.c.approval_id == approval_id)
                )
            ).all()
        notices_when_parked = admin_notices(bridge)

        await erp.start()  # the ERP is back, on the same port
        decisions = bridge.app[DECISIONS]
        retried = await decisions.retry("PO-WB-DOWN", actor="admin")
        assert (retried.approval_id, retried.revision) == (approval_id, 1)
        done = await bridge.wait_state(approval_id, 1, State.DONE)
        await settle(bridge)
        records = erp.write_backs
        notices = admin_notices(bridge)
        jobs = await open_jobs(bridge, approval_id)
        with pytest.raises(NotFound):
            await decisions.retry("PO-WB-DOWN", actor="admin")

    deadline_s = 0.0005 * 3600
    assert parked_after >= deadline_s * 0.5, f"parked after {parked_after:.2f} s, too early"
    assert failed.last_error is not None and "deadline" in failed.last_error
    assert failed.erp_ref is None
    [(job_attempts, job_status)] = attempts
    assert job_status == "parked"
    assert job_attempts >= 3, "refused connections must be retried before parking"
    assert kinds(notices_when_parked) == ["write_back_failed"]
    assert notices_when_parked[0].doc_no == "PO-WB-DOWN"
    assert kinds(notices) == ["write_back_failed"], "the admin retry raises no new notice"
    assert len(records) == 1, "nothing reached the ERP while it was down"
    assert_one_key_one_decision(records, approval_id, 1, "approved")
    ordered = erp.order("PO-WB-DOWN")
    assert ordered.status == "approved"
    assert ordered.erp_ref is not None
    assert done.erp_ref == ordered.erp_ref
    assert done.last_error is None
    assert jobs == []


async def test_replenishment_raises_exactly_one_requisition(db_url: str) -> None:
    async with bridge_and_erp(db_url) as (bridge, erp):
        first = erp.stock_alert(stock(on_hand="80"))
        await erp.wait_delivered()
        folded = [erp.stock_alert(stock(on_hand=n)) for n in ("60", "40")]
        await erp.wait_delivered()
        approval_ids = {erp.event(e).approval_id for e in [first, *folded]}
        assert len(approval_ids) == 1, "further alerts fold into the pending need"
        [approval_id] = approval_ids
        assert approval_id is not None
        row = await bridge.wait_state(approval_id, 1, State.PENDING)
        assert row.instance_id is not None
        assert len(bridge.gateway.instances) == 1
        await bridge.decide(row.instance_id, "approved")
        done = await bridge.wait_state(approval_id, 1, State.DONE)
        await settle(bridge)
        records = erp.write_backs
        notices = admin_notices(bridge)
    assert len(records) == 1
    assert_one_key_one_decision(records, approval_id, 1, "approved")
    body = records[0].body
    assert body["doc_type"] == "replenishment"
    assert body["doc_no"] == done.doc_no
    assert (body["material_code"], body["warehouse"], body["quantity"]) == ("M-001", "WH1", "1000")
    assert isinstance(body["quantity"], str), "quantities are decimal strings"
    [requisition] = erp.requisitions
    assert (requisition.material_code, requisition.warehouse, requisition.quantity) == (
        "M-001",
        "WH1",
        "1000",
    )
    assert requisition.approval_id == approval_id
    assert requisition.reference == done.doc_no
    assert done.erp_ref == requisition.number
    assert notices == []


async def test_rejected_replenishment_raises_no_requisition(db_url: str) -> None:
    async with bridge_and_erp(db_url) as (bridge, erp):
        event_id = erp.stock_alert(stock(material="M-009", warehouse="WH2"))
        await erp.wait_delivered()
        approval_id = erp.event(event_id).approval_id
        assert approval_id is not None
        row = await bridge.wait_state(approval_id, 1, State.PENDING)
        assert row.instance_id is not None
        await bridge.decide(row.instance_id, "rejected")
        done = await bridge.wait_state(approval_id, 1, State.DONE)
        await settle(bridge)
        records = erp.write_backs
    assert len(records) == 1
    assert_one_key_one_decision(records, approval_id, 1, "rejected")
    body = records[0].body
    assert (body["doc_type"], body["material_code"], body["warehouse"]) == (
        "replenishment",
        "M-009",
        "WH2",
    )
    assert erp.requisitions == []
    assert done.erp_ref is None, "the ERP acknowledged without a reference"


class _NoErp:
    """An ERP that must not be called."""

    async def write_back(self, result: WriteBack) -> WriteBackReceipt:
        raise AssertionError("not called when parking")


async def test_two_runs_parking_one_write_back_tell_admins_once(db_url: str) -> None:
    """Two runs of one job (its lease ran out under a slow ERP, or two replicas) may park it
    at the same moment; only the run that moved the revision to failed tells the admins."""
    db = Database.from_config(DatabaseConfig(url=db_url))
    try:
        if db.is_sqlite:
            pytest.skip("SQLite has one writer: two parking transactions cannot interleave")
        now = dt.datetime.now(dt.UTC)
        async with db.write() as conn:
            await conn.execute(
                insert(approval).values(
                    id="apv-race",
                    doc_type="purchase_order",
                    doc_no="PO-RACE",
                    current_revision=1,
                    created_at=now,
                    updated_at=now,
                )
            )
            await conn.execute(
                insert(revision).values(
                    approval_id="apv-race",
                    revision=1,
                    state=State.WRITING_BACK.value,
                    document=order("PO-RACE"),
                    decision="approved",
                    created_at=now,
                    updated_at=now,
                )
            )
        row = JobRow(1, WRITE_BACK, "apv-race", 1, {}, 9, now)
        handler = WriteBackHandler(db, SystemClock(), _NoErp(), dt.timedelta(hours=1))
        async with db.engine.connect() as first, db.engine.connect() as second:
            await first.begin()
            await second.begin()
            await handler.parked(first, row, "deadline passed")  # moved, not committed yet
            # The second run reads the revision still writing back, then waits for the row.
            racing = asyncio.create_task(handler.parked(second, row, "deadline passed"))
            await asyncio.sleep(0.3)
            assert not racing.done()
            await first.commit()
            await racing
            await second.commit()
        async with db.read() as conn:
            notices = (await conn.execute(select(job.c.payload).where(job.c.kind == NOTIFY))).all()
            state = (await conn.execute(select(revision.c.state))).scalar_one()
    finally:
        await db.dispose()
    assert state == State.FAILED.value
    assert [n.payload["kind"] for n in notices] == ["write_back_failed"]


# --------------------------------------------------------------------------------------------
# erp_adapter.http.request: HTTP outcomes to typed errors


def _answer(status: int, body: str | None, headers: dict[str, str] | None = None) -> Any:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, text=body, headers=headers)

    return handle


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(2)
    return web.json_response({"erp_ref": "too-late"})


ROUTES: dict[str, Any] = {
    "/200-json": _answer(200, '{"erp_ref": "ERP-1", "extra": [1]}'),
    "/200-empty": _answer(200, None),
    "/200-text": _answer(200, "OK"),
    "/200-list": _answer(200, "[1, 2]"),
    "/201": _answer(201, '{"erp_ref": "ERP-201"}'),
    "/204": _answer(204, None),
    "/409": _answer(409, '{"error": "stale"}'),
    "/400": _answer(400, '{"error": "bad"}'),
    "/404": _answer(404, "not here"),
    "/408": _answer(408, None),
    "/429": _answer(429, None, {"Retry-After": "3"}),
    "/500": _answer(500, "boom"),
    "/502": _answer(502, "bad gateway"),
    "/503": _answer(503, '{"error": "unavailable"}', {"Retry-After": "7"}),
    "/503-bad-header": _answer(503, None, {"Retry-After": "soon"}),
    "/slow": _slow,
}


@pytest.fixture
async def erp_stub() -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    app = web.Application()
    for path, handler in ROUTES.items():
        app.router.add_post(path, handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with aiohttp.ClientSession() as session:
            yield f"http://{host}:{port}", session
    finally:
        await runner.cleanup()


async def _call(
    session: aiohttp.ClientSession, url: str, timeout_s: float = 2.0
) -> http.ErpResponse:
    return await http.request(
        session,
        "POST",
        url,
        body=b'{"x": 1}',
        headers={"Content-Type": "application/json"},
        timeout_s=timeout_s,
    )


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("/200-json", 200, {"erp_ref": "ERP-1", "extra": [1]}),
        ("/200-empty", 200, {}),
        ("/200-text", 200, {}),
        ("/200-list", 200, {}),
        ("/201", 201, {"erp_ref": "ERP-201"}),
        ("/204", 204, {}),
    ],
)
async def test_2xx_is_an_acknowledgement(
    erp_stub: tuple[str, aiohttp.ClientSession], path: str, status: int, body: dict[str, Any]
) -> None:
    base, session = erp_stub
    response = await _call(session, base + path)
    assert (response.status, response.body) == (status, body)


@pytest.mark.parametrize(
    ("path", "error", "retry_after"),
    [
        ("/409", Conflict, None),
        ("/400", Permanent, None),
        ("/404", Permanent, None),
        ("/408", Retryable, None),
        ("/429", Retryable, 3.0),
        ("/500", Retryable, None),
        ("/502", Retryable, None),
        ("/503", Retryable, 7.0),
        ("/503-bad-header", Retryable, None),
    ],
)
async def test_failures_are_classified(
    erp_stub: tuple[str, aiohttp.ClientSession],
    path: str,
    error: type[Exception],
    retry_after: float | None,
) -> None:
    base, session = erp_stub
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the exact type is checked below
        await _call(session, base + path)
    assert type(caught.value) is error, f"{path}: {type(caught.value).__name__}"
    if isinstance(caught.value, Retryable):
        assert caught.value.retry_after == retry_after
    status = path.strip("/").split("-")[0]
    assert status in str(caught.value)


async def test_refused_connection_is_retryable(erp_stub: tuple[str, aiohttp.ClientSession]) -> None:
    _, session = erp_stub
    with pytest.raises(Retryable) as caught:
        await _call(session, f"http://127.0.0.1:{free_port()}/approval-results")
    assert type(caught.value) is Retryable
    assert caught.value.retry_after is None
    assert "unreachable" in str(caught.value)


async def test_timeout_is_retryable(erp_stub: tuple[str, aiohttp.ClientSession]) -> None:
    base, session = erp_stub
    started = time.monotonic()
    with pytest.raises(Retryable) as caught:
        await _call(session, base + "/slow", timeout_s=0.2)
    assert time.monotonic() - started < 1.5
    assert type(caught.value) is Retryable
    assert "timed out" in str(caught.value)
