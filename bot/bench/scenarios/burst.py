"""*burst*: thousands of below-safety-stock alerts at once, folded into one approval a material."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select

from approvals.config import DatabaseConfig
from approvals.db.engine import Database
from approvals.db.tables import approval
from approvals.models import DocType
from bot.bench.context import BenchContext
from bot.bench.load import LoadReport, LoadSpec, run_load
from bot.bench.report import ScenarioResult, exactly, info
from bot.bench.scenarios.pipeline import LIMITED_QPS, busiest, call_counts, over_minimum
from bot.bench.stack import Stack, StackOptions

CONCURRENCY = 64
POLL_S = 0.05
SETTLE_S = 1.0
"""After the last expected instance, how long to watch for a surplus one (a fold that failed)."""


async def run(ctx: BenchContext) -> ScenarioResult:
    """Send every alert at once, then wait until each material's instance exists in DingTalk."""
    events, materials = ctx.size(5_000, 500), ctx.size(500, 50)
    ctx.say(f"burst: {events:,} stock alerts for {materials:,} materials at {LIMITED_QPS} calls/s")
    async with ctx.stack("burst", StackOptions(qps=LIMITED_QPS)) as stack:
        before = await stack.sandbox.stats()
        instances = stack.sandbox.state.workflow.instances
        started = time.monotonic()
        load = asyncio.create_task(_send(ctx, stack, events, materials))
        drained = await _until_instances(instances, materials, started, _timeout(materials))
        sent = await load
        await asyncio.sleep(SETTLE_S)
        in_sandbox = len(instances)
        approvals = await _approvals(stack.database_url)
        calls = call_counts(before, await stack.sandbox.stats())
    return _result(events, materials, drained, sent, in_sandbox, approvals, calls)


def _result(
    events: int,
    materials: int,
    drained: float,
    sent: LoadReport,
    in_sandbox: int,
    approvals: int,
    calls: Mapping[str, Mapping[str, int]],
) -> ScenarioResult:
    api, busiest_calls = busiest(calls)
    throttled = sum(c.get("throttled", 0) for c in calls.values())
    result = ScenarioResult(
        "burst",
        [
            exactly("approvals", approvals, materials),
            exactly("instances", in_sandbox, materials),
            exactly("throttled", throttled, 0),
            info("time to drain", drained, "s"),
            info("minimum at 20/s", busiest_calls / LIMITED_QPS, "s"),
            info("drain over the minimum", over_minimum(drained, busiest_calls, LIMITED_QPS), "%"),
            info("events accepted", sent.statuses.get("202", 0)),
        ],
    )
    statuses = ", ".join(f"{n:,} × {s}" for s, n in sorted(sent.statuses.items()))
    result.notes.append(
        f"{events:,} below-safety-stock webhooks for {materials:,} materials from {CONCURRENCY} "
        f"connections at once (503s resent after Retry-After); answers: {statuses}; sent in "
        f"{sent.elapsed_s:.1f} s"
    )
    result.notes.append(
        f"drained = from launching the load generator (its start-up included) until every "
        f"material's instance exists in the sandbox; DingTalk at {LIMITED_QPS} calls/s per "
        f"API, so at least {materials:,} creates / {LIMITED_QPS} = "
        f"{materials / LIMITED_QPS:.1f} s; calls: {api or '-'} {busiest_calls:,}"
    )
    return result


async def _send(ctx: BenchContext, stack: Stack, events: int, materials: int) -> LoadReport:
    spec = LoadSpec(
        host="127.0.0.1",
        port=stack.port,
        secret=stack.secret,
        kind="stock",
        prefix=f"RPL-{uuid.uuid4().hex[:6]}",
        concurrency=CONCURRENCY,
        count=events,
        materials=materials,
        retry_overloaded=True,
    )
    return await run_load(spec, ctx.placement.helpers)


def _timeout(materials: int) -> float:
    """Generous: three times the rate limit's minimum, plus a minute."""
    return 60 + 3 * materials / LIMITED_QPS


async def _until_instances(
    instances: Mapping[str, Any], expected: int, started: float, wait_s: float
) -> float:
    """Seconds from `started` until the sandbox holds `expected` instances."""
    while len(instances) < expected:
        if time.monotonic() - started > wait_s:
            raise TimeoutError(f"{len(instances):,} of {expected:,} instances after {wait_s:.0f} s")
        await asyncio.sleep(POLL_S)
    return time.monotonic() - started


async def _approvals(url: str) -> int:
    """Replenishment approvals in the bridge's database."""
    db = Database.from_config(DatabaseConfig(url=url))
    try:
        async with db.read() as conn:
            query = select(func.count()).where(approval.c.doc_type == DocType.REPLENISHMENT.value)
            return int((await conn.execute(query)).scalar_one())
    finally:
        await db.dispose()
