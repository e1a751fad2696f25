"""A running bridge on loopback for tests: real HTTP, a real database, in-memory DingTalk ports."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from approvals.config import DatabaseConfig, IntakeConfig, JobConfig
from approvals.db import repo
from approvals.db.engine import Database
from approvals.db.repo import RevisionRow
from approvals.memory import MemoryGateway, MemoryNotifier
from approvals.states import State
from bot.app import Ports, create_app
from bot.keys import DATABASE, DECISIONS, JOBS
from bot.settings import Settings
from erp_adapter.config import ErpConfig

SECRET = "test-webhook-secret"


def signed(body: bytes, secret: str = SECRET, ts: int | None = None) -> dict[str, str]:
    """Headers for a body, signed as CONTRACT section 2 says (written out here, independently)."""
    stamp = int(time.time()) if ts is None else ts
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        "X-Bridge-Timestamp": str(stamp),
        "X-Bridge-Signature": f"v1={mac}",
        "Content-Type": "application/json",
    }


def order(
    doc_no: str,
    revision: int = 1,
    price: str = "12.00",
    material: str = "M-001",
    buyer: str = "u1001",
) -> dict[str, Any]:
    """A purchase order's `data`."""
    return {
        "doc_no": doc_no,
        "revision": revision,
        "buyer": {"erp_user": buyer, "name": "张三"},
        "department": {"code": "D01", "name": "采购部"},
        "supplier": {"code": "S001", "name": "杭州某某五金有限公司"},
        "currency": "CNY",
        "total_amount": "12000.00",
        "expected_date": "2026-12-01",
        "remark": "月度备料",
        "lines": [
            {
                "line_no": 1,
                "material_code": material,
                "material_name": "硬质合金刀片",
                "spec": "CNMG120408",
                "unit": "片",
                "quantity": "1000",
                "unit_price": price,
                "tax_rate": "0.13",
                "amount": "12000.00",
            }
        ],
    }


def stock(material: str = "M-001", warehouse: str = "WH1", on_hand: str = "80") -> dict[str, Any]:
    """A below-safety-stock `data`."""
    return {
        "material_code": material,
        "material_name": "硬质合金刀片",
        "unit": "片",
        "warehouse": warehouse,
        "on_hand": on_hand,
        "safety_stock": "500",
        "reorder_qty": "1000",
        "preferred_supplier": {"code": "S001", "name": "杭州某某五金"},
        "requester": {"erp_user": "u1002", "name": "李四"},
    }


def event(event_id: str, type_: str, data: dict[str, Any]) -> dict[str, Any]:
    """A whole webhook body."""
    return {
        "event_id": event_id,
        "type": type_,
        "occurred_at": "2026-11-25T10:00:00+08:00",
        "data": data,
    }


def bridge_settings(url: str, erp_url: str = "http://127.0.0.1:9", **jobs: Any) -> Settings:
    """Settings for a fast test bridge."""
    job_config = {
        "poll_interval_s": 0.05,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
        "lease_s": 5,
        **jobs,
    }
    return Settings(
        database=DatabaseConfig(url=url, pool_size=5),
        erp=ErpConfig(base_url=erp_url, webhook_secret=SecretStr(SECRET), timeout_s=2),
        jobs=JobConfig(**job_config),
        intake=IntakeConfig(),
    )


@dataclass
class Bridge:
    """A bridge serving on loopback."""

    url: str
    app: web.Application
    http: aiohttp.ClientSession
    gateway: MemoryGateway
    notifier: MemoryNotifier

    @property
    def db(self) -> Database:
        return self.app[DATABASE]

    async def post(
        self, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """POST an event, signed unless headers are given."""
        raw = json.dumps(body, ensure_ascii=False).encode()
        async with self.http.post(
            self.url + "/erp/events", data=raw, headers=headers or signed(raw)
        ) as response:
            return response.status, await response.json()

    async def revision(self, approval_id: str, rev: int) -> RevisionRow:
        async with self.db.read() as conn:
            row = await repo.get_revision(conn, approval_id, rev)
        assert row is not None
        return row

    async def wait_state(
        self, approval_id: str, rev: int, state: State, wait_s: float = 10
    ) -> RevisionRow:
        """Poll until the revision reaches a state."""
        deadline = time.monotonic() + wait_s
        while True:
            row = await self.revision(approval_id, rev)
            if row.state is state:
                return row
            if time.monotonic() > deadline:
                raise AssertionError(f"{approval_id}:{rev} is {row.state}, expected {state}")
            await asyncio.sleep(0.02)

    async def decide(self, instance_id: str, decision: str, key: str | None = None) -> Any:
        from approvals.models import DecisionReport

        report = DecisionReport.model_validate(
            {
                "instance_id": instance_id,
                "decision": decision,
                "decided_at": dt.datetime.now(dt.UTC),
                "approvers": [
                    {
                        "user_id": "dt-2001",
                        "name": "王五",
                        "result": "agree" if decision == "approved" else "refuse",
                        "comment": "ok",
                    }
                ],
                "event_key": key or f"evt-{instance_id}-{decision}",
            }
        )
        return await self.app[DECISIONS].apply(report)

    async def idle(self) -> None:
        self.app[JOBS].wake()
        await asyncio.sleep(0.1)


@asynccontextmanager
async def running_bridge(
    settings: Settings, erp: Any = None, gateway: MemoryGateway | None = None
) -> AsyncIterator[Bridge]:
    """Serve a bridge on a free loopback port for the duration of the block."""
    gateway, notifier = gateway or MemoryGateway(), MemoryNotifier()
    app = create_app(settings, Ports(gateway, notifier, erp))
    runner = web.AppRunner(app, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as http:
            yield Bridge(f"http://127.0.0.1:{port}", app, http, gateway, notifier)
    finally:
        await runner.cleanup()
