"""*memory*: the bridge's resident memory with many open approvals, then over a steady soak."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bot.bench.context import BenchContext
from bot.bench.events import order_data
from bot.bench.load import LoadReport, LoadSpec, run_load
from bot.bench.report import ScenarioResult, at_most, info
from bot.bench.stack import Stack, StackOptions

MB = 1024 * 1024
OPEN_TARGET_MB = 200.0
GROWTH_BOUND_MB_MIN = 1.0
"""At SOAK_RATE orders a minute, 1 MB/min is under 1 KB kept per approval: a leak of even one
small dict or row per approval shows, while the slope of a flat process stays well inside it."""
SOAK_RATE = 20.0
"""Orders a second during the soak: DingTalk's default create rate, decided as they come."""
FILL_ENV = {
    "DINGTALK__RATE_LIMIT_QPS": "1000",
    "DINGTALK__MONTHLY_CALL_BUDGET": "100000000",
    "REMINDERS__WORKING_DAYS": "[1, 2, 3, 4, 5, 6, 7]",
    "REMINDERS__WORK_START": "00:00",
    "REMINDERS__WORK_END": "23:59",
}
"""The bridge's own limiter at its maximum (the sandbox's is off); a budget the fill cannot
exhaust (an exhausted one defers reminders); and working hours all day, so the reminder tick
(every 5 min, over every pending approval) runs whatever the time the bench runs at."""
PENDING = re.compile(rb'^approval_bridge_approvals\{state="pending"\} ([0-9.e+]+)$', re.M)


@dataclass
class Soak:
    """RSS samples of the soak: (seconds since its start, bytes)."""

    samples: list[tuple[float, int]] = field(default_factory=list)
    submitted: int = 0
    approved: int = 0

    def slope_mb_per_min(self) -> float | None:
        """Least-squares growth of RSS, in MB per minute."""
        return growth_per_minute(self.samples)


def peak_rss_bytes(pid: int) -> int:
    """The highest resident memory a process has had (VmHWM): catches spikes between samples."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmHWM for process {pid}")


def growth_per_minute(samples: list[tuple[float, int]]) -> float | None:
    """The least-squares slope of (seconds, bytes) samples, in MB per minute."""
    if len(samples) < 2:
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_b = sum(b for _, b in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (b - mean_b) for t, b in samples)
    return cov / var * 60 / MB


async def run(ctx: BenchContext) -> ScenarioResult:
    """Fill to `open` pending approvals through the real path, read RSS, then soak."""
    open_count = ctx.size(100_000, 500)
    soak_s, warmup_s = ctx.seconds(600, 5), ctx.seconds(30, 1)
    async with ctx.stack("memory", StackOptions(qps=None, env=FILL_ENV)) as stack:
        idle = stack.rss()
        started = time.monotonic()
        load = await _fill(ctx, stack, open_count)
        fill_s = time.monotonic() - started
        filled = stack.rss()
        ctx.say(f"memory: {open_count:,} open after {fill_s:.0f} s, RSS {filled / MB:.0f} MB")
        soak = await _soak(ctx, stack, soak_s, warmup_s)
        peak = peak_rss_bytes(stack.pid)
    result = _result(open_count, (idle, filled, peak), fill_s, load, soak, (soak_s, warmup_s))
    if ctx.quick:
        _growth_for_information(result, soak)
    return result


def _result(
    open_count: int,
    readings: tuple[int, int, int],
    fill_s: float,
    load: LoadReport,
    soak: Soak,
    timing: tuple[float, float],
) -> ScenarioResult:
    idle, filled, peak = readings
    soak_s, warmup_s = timing
    rss = [b for _, b in soak.samples] or [filled]
    result = ScenarioResult(
        "memory",
        [
            at_most(f"RSS peak, {open_count:,} open", peak / MB, OPEN_TARGET_MB, "MB"),
            info("RSS once all open", filled / MB, "MB"),
            info("RSS idle", idle / MB, "MB"),
            info("per open approval", (filled - idle) / open_count / 1024, "KB"),
            info("time to open them", fill_s, "s"),
            info("soak start", rss[0] / MB, "MB"),
            info("soak end", rss[-1] / MB, "MB"),
            info("soak max", max(rss) / MB, "MB"),
            at_most("soak growth", soak.slope_mb_per_min(), GROWTH_BOUND_MB_MIN, "MB/min"),
        ],
    )
    statuses = ", ".join(f"{n:,} × {s}" for s, n in sorted(load.statuses.items()))
    result.notes += [
        f"open approvals: {open_count:,} orders as signed webhooks ({statuses}), each raised in "
        f"the sandbox (rate limit off) and left pending; RSS (VmRSS) read once the bridge's "
        f"/metrics counted them all pending; the peak is VmHWM at the soak's end (they stay "
        f"pending through it), which catches spikes between samples",
        "every 5 min the reminder tick runs (working hours are set to all day here); it reads "
        "only approvals with a message due by the clock and unclaimed, none of these young "
        "ones: the cost of reminding them all at once is not in these figures",
        f"soak: {soak_s:g} s after {warmup_s:g} s of warm-up, orders through the ERP at "
        f"{SOAK_RATE:g}/s approved as they came ({soak.submitted:,} submitted, {soak.approved:,} "
        f"approved), with the open approvals still pending; growth is the least-squares slope "
        f"of {len(soak.samples)} RSS samples",
        "Python's allocator keeps freed arenas and glibc keeps freed heap: RSS rarely falls, so "
        "a flat soak means no growth, not a return to the idle figure",
    ]
    return result


def _growth_for_information(result: ScenarioResult, soak: Soak) -> None:
    """Under --quick the growth is shown without its target: seconds cannot resolve 1 MB/min."""
    result.figures = [
        info(f.name, f.value, f.unit) if f.name == "soak growth" else f for f in result.figures
    ]
    result.notes.append(
        f"soak growth has its target at full size only: over {soak.samples[-1][0]:.0f} s one "
        "256 KB arena more reads as 1 MB/min"
        if soak.samples
        else "no soak samples"
    )


async def _fill(ctx: BenchContext, stack: Stack, count: int) -> LoadReport:
    """Webhooks for `count` orders, then until the bridge holds every one as pending."""
    ctx.say(f"memory: {count:,} orders as webhooks")
    spec = LoadSpec(
        host="127.0.0.1",
        port=stack.port,
        secret=stack.secret,
        prefix=f"PO-MEM-{uuid.uuid4().hex[:6]}",
        count=count,
        retry_overloaded=True,
    )
    load = await run_load(spec, ctx.placement.helpers)
    ctx.say(f"memory: webhooks in; waiting for {count:,} pending instances")
    await _until_pending(ctx, stack, count, ctx.seconds(1800, 120), ctx.seconds(5, 0.5))
    return load


async def _until_pending(
    ctx: BenchContext, stack: Stack, count: int, wait_s: float, every: float
) -> None:
    """Until the bridge's `/metrics` counts `count` approvals pending (instances raised)."""
    deadline = time.monotonic() + wait_s
    last_said = time.monotonic()
    async with aiohttp.ClientSession() as http:
        while True:
            pending = await _pending(http, stack)
            if pending >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {pending:,} of {count:,} approvals became pending")
            if time.monotonic() - last_said > 30:
                ctx.say(f"memory: {pending:,} pending")
                last_said = time.monotonic()
            await asyncio.sleep(every)  # a scrape counts states over every revision


async def _pending(http: aiohttp.ClientSession, stack: Stack) -> int:
    async with http.get(f"{stack.url}/metrics") as response:
        body = await response.read()
    found = PENDING.search(body)
    return int(float(found.group(1))) if found else 0


async def _soak(ctx: BenchContext, stack: Stack, soak_s: float, warmup_s: float) -> Soak:
    """Orders at SOAK_RATE, approved as they come, with RSS sampled; warm-up not sampled."""
    soak = Soak()
    known = len(stack.sandbox.state.workflow.instances)
    every = ctx.seconds(5, 1)
    stop = asyncio.Event()
    prefix = f"PO-SOAK-{uuid.uuid4().hex[:6]}"
    tasks = [
        asyncio.create_task(_submit(stack, prefix, soak, stop)),
        asyncio.create_task(_approve(stack, known, soak, stop)),
    ]
    ctx.say(f"memory: soak, {soak_s:g} s at {SOAK_RATE:g} orders/s")
    try:
        await asyncio.sleep(warmup_s)
        began = time.monotonic()
        while (elapsed := time.monotonic() - began) <= soak_s:
            soak.samples.append((elapsed, stack.rss()))
            await asyncio.sleep(every)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return soak


async def _submit(stack: Stack, prefix: str, soak: Soak, stop: asyncio.Event) -> None:
    """One order every 1/SOAK_RATE s through the reference ERP (so write-backs are accepted)."""
    began = time.monotonic()
    while not stop.is_set():
        stack.erp.submit_order(order_data(f"{prefix}-{soak.submitted}"))
        soak.submitted += 1
        delay = began + soak.submitted / SOAK_RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def _approve(stack: Stack, known: int, soak: Soak, stop: asyncio.Event) -> None:
    """Approve each instance raised after the fill, about half a second after it appears."""
    while not stop.is_set():
        await asyncio.sleep(0.5)
        # The sandbox keeps instances in creation order; the soak's come after `known`. Taking
        # the keys is one C-level copy, safe beside the sandbox's thread.
        fresh = list(stack.sandbox.state.workflow.instances)[known:]
        known += len(fresh)
        for instance_id in fresh:
            await stack.sandbox.approve(instance_id)
            soak.approved += 1
