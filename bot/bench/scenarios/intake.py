"""*intake*: signed webhooks at concurrency 64 for a fixed time, beside the durable ceiling."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import sys
import uuid

from bot.bench.context import BenchContext
from bot.bench.load import LoadReport, LoadSpec, run_load
from bot.bench.report import ScenarioResult, at_least, at_most, info, percentile
from bot.bench.stack import free_port, wait_listening

CONCURRENCY = 64
BRIDGE_SYNCHRONOUS = "FULL"
"""The bridge's default `database.sqlite_synchronous` (an fsync per commit)."""


async def run(ctx: BenchContext) -> ScenarioResult:
    """Measure the ceiling, then the bridge, under the same load from the same generator."""
    duration, warmup = ctx.seconds(20, 1.5), ctx.seconds(3, 0.5)
    ctx.say(f"intake: ceiling (aiohttp + HMAC + one sqlite3 commit per request), {duration:g} s")
    ceiling = await _ceiling(ctx, duration, warmup, "NORMAL")
    ceiling_full = await _ceiling(ctx, duration, warmup, BRIDGE_SYNCHRONOUS)
    ctx.say(f"intake: ceiling {ceiling.accepted_per_s:,.0f}/s; now the bridge, {duration:g} s")
    async with ctx.stack("intake") as stack:
        spec = LoadSpec(
            host="127.0.0.1",
            port=stack.port,
            secret=stack.secret,
            prefix=f"PO-IN-{uuid.uuid4().hex[:6]}",
            concurrency=CONCURRENCY,
            duration_s=duration,
            warmup_s=warmup,
        )
        cpu_before = stack.cpu()
        bridge = await run_load(spec, ctx.placement.helpers)
        cpu_used = stack.cpu() - cpu_before
    rate = bridge.accepted_per_s
    ratio = rate / ceiling.accepted_per_s if ceiling.accepted_per_s else None
    result = ScenarioResult(
        "intake",
        [
            at_least("accepted", rate, 5000, "/s"),
            at_least("of the ceiling", ratio, 0.35),
            info("p50", percentile(bridge.latencies_ms, 50), "ms"),
            at_most("p99", percentile(bridge.latencies_ms, 99), 50, "ms"),
            info("ceiling", ceiling.accepted_per_s, "/s"),
            info("ceiling p99", percentile(ceiling.latencies_ms, 99), "ms"),
            info("ceiling, fsync per commit", ceiling_full.accepted_per_s, "/s"),
            info("service CPU per event", cpu_used / max(bridge.sent, 1) * 1e6, "µs"),
        ],
    )
    result.notes.append(
        f"answers from the bridge: {_statuses(bridge)}; ceiling: {_statuses(ceiling)}"
    )
    result.notes.append(
        f"{CONCURRENCY} connections for {duration:g} s after {warmup:g} s of warm-up; every 202 is "
        f"committed (synchronous={BRIDGE_SYNCHRONOUS}, an fsync per group commit) before it is "
        "sent. The ratio is to the faster ceiling, synchronous=NORMAL (no fsync per commit); "
        f"with an fsync per commit, as the bridge does, the ceiling is the third figure"
    )
    if ctx.server_url is not None:
        result.notes.append("the bridge ran on PostgreSQL; the ceiling is SQLite's")
    return result


async def _ceiling(
    ctx: BenchContext, duration: float, warmup: float, synchronous: str
) -> LoadReport:
    folder = ctx.workdir / f"intake-ceiling-{synchronous.lower()}"
    folder.mkdir(parents=True, exist_ok=True)
    port, secret = free_port(), secrets.token_hex(16)
    process = subprocess.Popen(  # noqa: S603, ASYNC220 - our own interpreter; returns at once
        [
            sys.executable,
            "-m",
            "bot.bench.ceiling",
            str(port),
            str(folder / "ceiling.db"),
            secret,
            synchronous,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ctx.placement.pin_service(process.pid)
    try:
        await wait_listening(port, process)
        spec = LoadSpec(
            host="127.0.0.1",
            port=port,
            secret=secret,
            prefix=f"PO-CEIL-{uuid.uuid4().hex[:6]}",
            concurrency=CONCURRENCY,
            duration_s=duration,
            warmup_s=warmup,
        )
        return await run_load(spec, ctx.placement.helpers)
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(process.wait, 10)
        if process.poll() is None:
            process.kill()


def _statuses(report: LoadReport) -> str:
    return ", ".join(f"{count:,} × {status}" for status, count in sorted(report.statuses.items()))
