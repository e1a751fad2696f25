"""*pipeline*: purchase orders from the ERP's webhook to the ERP's acknowledged write-back.

Each order is created in the reference ERP (which sends the signed webhook), raised in the
sandbox, approved there through its control API, and written back; a cycle ends when the ERP
acknowledges the write-back. Once with DingTalk's rate limit off (how fast the bridge cycles),
once at 20 calls/s (whether it saturates the limit without tripping it).
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.bench.context import BenchContext
from bot.bench.events import order_data
from bot.bench.report import ScenarioResult, at_least, at_most, exactly, info
from bot.bench.stack import Stack, StackOptions
from bot.sandbox.middleware import SPECS

LIMITED_QPS = 20
UNLIMITED = StackOptions(qps=None, env={"DINGTALK__RATE_LIMIT_QPS": "1000"})
"""DingTalk's limit off, and the bridge's own pacing (20/s by default, to match it) at its
highest setting: without the second, the bridge would still pace itself at 20 calls/s."""
SUBMIT_CHUNK = 250
"""Orders handed to the ERP at a time: it sends each chunk's webhooks before the next chunk, so
intake sees a steady stream rather than one backlog of every order."""
POLL_S = 0.01
"""How often the approver looks for new instances (short: it adds to the last cycle's time)."""
APPROVE_BATCH = 200
THROTTLED_APIS = frozenset(spec.name for spec in SPECS.values() if spec.throttled)
"""The sandbox's APIs that count against the per-API rate limit."""


@dataclass(frozen=True)
class Cycles:
    """How one run of `count` full cycles went."""

    count: int
    seconds: float
    service_cpu_s: float
    helper_cpu_s: float
    core_busy_s: float
    """CPU time the service's core spent on anything (the service or other processes)."""
    calls: Mapping[str, Mapping[str, int]]
    """The sandbox's per-API counters (`calls`, `ok`, `throttled`, ...)."""
    refused: int
    """Write-backs the ERP did not acknowledge with 200."""

    @property
    def per_second(self) -> float:
        """Full cycles per second."""
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def throttled(self) -> int:
        """Calls DingTalk refused for the rate limit, over every API."""
        return sum(c.get("throttled", 0) for c in self.calls.values())


def busiest(calls: Mapping[str, Mapping[str, int]]) -> tuple[str, int]:
    """The rate-limited API called most, and how often (token calls never count: one a run)."""
    limited = {api: c.get("calls", 0) for api, c in calls.items() if api in THROTTLED_APIS}
    limited = {api: n for api, n in limited.items() if "accessToken" not in api}
    if not limited:
        return "", 0
    api = max(limited, key=lambda a: limited[a])
    return api, limited[api]


def over_minimum(seconds: float, calls: int, qps: float) -> float | None:
    """How far `seconds` is above `calls / qps`, in percent; None without calls."""
    if calls <= 0:
        return None
    minimum = calls / qps
    return (seconds / minimum - 1.0) * 100.0


async def run(ctx: BenchContext) -> ScenarioResult:
    """The unlimited run, then the run at DingTalk's default rate limit."""
    free_n, limited_n = ctx.size(10_000, 100), ctx.size(2_000, 30)
    ctx.say(f"pipeline: {free_n:,} orders, DingTalk rate limit off")
    free = await _measure(ctx, "pipeline-free", UNLIMITED, free_n)
    ctx.say(f"pipeline: {free.per_second:,.0f} cycles/s; now {limited_n:,} orders at 20 calls/s")
    limited = await _measure(ctx, "pipeline-20qps", StackOptions(qps=LIMITED_QPS), limited_n)
    return _result(ctx, free, limited)


def _result(ctx: BenchContext, free: Cycles, limited: Cycles) -> ScenarioResult:
    api, calls = busiest(limited.calls)
    minimum = calls / LIMITED_QPS
    result = ScenarioResult(
        "pipeline",
        [
            at_least("cycles (no limit)", free.per_second, 500, "/s"),
            info("time (no limit)", free.seconds, "s"),
            info("service CPU per cycle", free.service_cpu_s / free.count * 1000, "ms"),
            info("service CPU busy", free.service_cpu_s / free.seconds * 100, "%"),
            info("helpers CPU busy", _helper_busy(ctx, free), "%"),
            info("time at 20/s", limited.seconds, "s"),
            info("minimum at 20/s", minimum, "s"),
            at_most("over the minimum", over_minimum(limited.seconds, calls, LIMITED_QPS), 5, "%"),
            exactly("throttled", free.throttled + limited.throttled, 0),
            exactly("write-backs refused", free.refused + limited.refused, 0),
        ],
    )
    result.notes.append(
        f"{free.count:,} orders without a rate limit, then {limited.count:,} at {LIMITED_QPS} "
        f"calls/s per API (minimum {minimum:.1f} s: {calls:,} calls to {api or '-'}, the "
        "busiest rate-limited API, at 20/s); a cycle is webhook -> instance -> approved in the "
        "sandbox -> write-back acknowledged by the reference ERP"
    )
    result.notes.append(f"DingTalk calls, no limit: {_calls(free.calls)}")
    result.notes.append(f"DingTalk calls, 20/s: {_calls(limited.calls)}")
    result.notes.append(_bottleneck(ctx, free))
    return result


def _helper_busy(ctx: BenchContext, cycles: Cycles) -> float:
    """CPU of the bench process (sandbox, ERP, approver) as a share of the helper cores."""
    return cycles.helper_cpu_s / cycles.seconds / max(1, len(ctx.placement.helpers)) * 100


def _bottleneck(ctx: BenchContext, cycles: Cycles) -> str:
    service = cycles.service_cpu_s / cycles.seconds * 100
    core = cycles.core_busy_s / cycles.seconds / max(1, len(ctx.placement.service)) * 100
    helpers = _helper_busy(ctx, cycles)
    if service >= 90:
        where = "the service's core (CPU-bound)"
    elif core >= 90:
        where = f"the service's core, {core - service:.0f}% of it taken by other processes"
    elif helpers >= 90:
        where = "the helper cores (sandbox, reference ERP and approver in the bench process)"
    else:
        where = "neither core saturated: latency between the stages"
    return (
        f"no-limit run bounded by {where}: service {service:.0f}% of its core, "
        f"{cycles.service_cpu_s / cycles.count * 1000:.2f} ms CPU per cycle (500 cycles/s on "
        f"one core needs 2 ms or less); helpers {helpers:.0f}% of "
        f"{len(ctx.placement.helpers)} core(s)"
    )


def _calls(calls: Mapping[str, Mapping[str, int]]) -> str:
    return ", ".join(f"{api} {c.get('calls', 0):,}" for api, c in calls.items()) or "none"


async def _measure(ctx: BenchContext, name: str, options: StackOptions, count: int) -> Cycles:
    """Run `count` full cycles on a fresh stack and time them, first webhook to last ack."""
    async with ctx.stack(name, options) as stack:
        prefix = f"PO-PL-{uuid.uuid4().hex[:6]}"
        before = await stack.sandbox.stats()
        service_cpu, helper_cpu, core = stack.cpu(), _own_cpu(), _core_busy(ctx)
        started = time.monotonic()
        feeder = asyncio.create_task(_submit(stack, prefix, count))
        approver = asyncio.create_task(_approve(stack, count))
        try:
            refused = await _until_written_back(stack, count, _timeout(count, options))
            seconds = time.monotonic() - started
            service_cpu, helper_cpu = stack.cpu() - service_cpu, _own_cpu() - helper_cpu
            core = _core_busy(ctx) - core
            await feeder
            await approver
        finally:
            for task in (feeder, approver):
                task.cancel()
        after = await stack.sandbox.stats()
    calls = call_counts(before, after)
    return Cycles(count, seconds, service_cpu, helper_cpu, core, calls, refused)


def _timeout(count: int, options: StackOptions) -> float:
    """Generous: ten times the rate limit's minimum, or 100 ms a cycle, plus a minute.

    Without a limit the creates run ahead and the write-backs queue behind them (the outbox is
    first in, first out), so cycles complete late and together: time the whole run, not the
    first write-backs.
    """
    per_call = 10 / options.qps if options.qps else 0.1
    return 60 + count * per_call


def _core_busy(ctx: BenchContext) -> float:
    """Busy seconds of the service's core(s) so far, whoever used them (/proc/stat)."""
    wanted = {f"cpu{n}" for n in ctx.placement.service}
    ticks = 0
    for line in Path("/proc/stat").read_text().splitlines():
        fields = line.split()
        if fields and fields[0] in wanted:
            # user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
            values = [int(v) for v in fields[1:9]]
            ticks += sum(values) - values[3] - values[4]
    return ticks / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    """CPU seconds of this process (bench loop, ERP, sandbox thread), children excluded."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _submit(stack: Stack, prefix: str, count: int) -> None:
    """Create the orders in the ERP, chunk by chunk, each chunk's webhooks delivered first."""
    for start in range(0, count, SUBMIT_CHUNK):
        for n in range(start, min(count, start + SUBMIT_CHUNK)):
            stack.erp.submit_order(order_data(f"{prefix}-{n}"))
        await stack.erp.wait_delivered(timeout=120)
    refused = [e for e in stack.erp.events if e.status != "delivered"]
    if refused:
        # Otherwise the scenario would wait out its whole timeout for write-backs never coming.
        raise RuntimeError(f"the bridge refused {len(refused):,} webhooks: {refused[0].to_json()}")


async def _approve(stack: Stack, count: int) -> None:
    """Approve every instance as soon as it exists in the sandbox, as its approver would."""
    instances = stack.sandbox.state.workflow.instances
    seen = 0
    while seen < count:
        # The sandbox's own thread adds to this dict; list() copies it in one step under the GIL.
        fresh = list(instances)[seen:]
        if not fresh:
            await asyncio.sleep(POLL_S)
            continue
        seen += len(fresh)
        for start in range(0, len(fresh), APPROVE_BATCH):
            batch = fresh[start : start + APPROVE_BATCH]
            await asyncio.gather(*(stack.sandbox.approve(i) for i in batch))


async def _until_written_back(stack: Stack, count: int, wait_s: float) -> int:
    """Wait until the ERP answered `count` write-backs; how many of them it refused."""
    records = stack.erp.store.write_backs
    deadline = time.monotonic() + wait_s
    acknowledged: set[str | None] = set()
    seen = refused = 0
    while True:
        for record in records[seen:]:
            # A replayed write-back (the same key again) is acknowledged once, not twice.
            if record.status == 200:
                acknowledged.add(record.idempotency_key)
            else:
                refused += 1
        seen = len(records)
        if len(acknowledged) + refused >= count:
            return refused
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{len(acknowledged):,} of {count:,} write-backs after {wait_s:.0f} s; "
                f"bridge log: {stack.log_tail(600)}"
            )
        await asyncio.sleep(POLL_S)


def call_counts(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Per-API counters between two sandbox `stats()` (start-up calls left out)."""
    old: Mapping[str, Mapping[str, int]] = before["calls"]["apis"]
    new: Mapping[str, Mapping[str, int]] = after["calls"]["apis"]
    return {
        api: {k: v - old.get(api, {}).get(k, 0) for k, v in counters.items()}
        for api, counters in new.items()
        if counters.get("calls", 0) != old.get(api, {}).get("calls", 0)
    }
