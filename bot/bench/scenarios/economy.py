"""*economy*: DingTalk calls per approval, metered by the sandbox, beside a bridge that polls."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp

from approvals.reconcile import cheapest_cutoff, sweep_cost
from bot.bench.context import BenchContext
from bot.bench.events import order_data
from bot.bench.report import Figure, ScenarioResult, at_most, info
from bot.bench.stack import Stack, StackOptions
from bot.sandbox.options import FaultOptions

EXCLUDED = ("oauth2", "gettoken", "robot", "message", "gateway")
"""Token, message and stream-gateway paths: DingTalk does not meter them against approvals
(the same exclusions as tests/test_economy.py)."""
POLL_EVERY_S = 60.0
"""How often a polling bridge asks DingTalk about each pending instance."""
HUMAN_PENDING_S = 86_400.0
"""A realistic time an approval waits for a person: decided within a day on average."""
LAST_SWEEP = re.compile(r"^approval_bridge_reconcile_last_sweep_applied ([0-9.e+]+)$", re.M)
LIST_PAGE = 20
"""Instance ids per listing call (DingTalk's maximum `maxResults`)."""
SWEEPS_PER_DAY = 24
"""The safety sweep's default cadence (sweep_interval_min = 60)."""
SWEEP_MODEL_PER_DAY = 500
SWEEP_MODEL_WAIT_S = 4 * 3600.0
"""The modelled organisation for the sweep figure: 500 approvals a day, each waiting 4 hours."""
FORGOTTEN_S = 7 * 86_400.0
"""An approval nobody decides for a week."""
ADMIN = "dt-admin"
"""An admin in the stack's configuration: the one who may send `sync`."""


@dataclass(frozen=True)
class Mode:
    """One way the world behaves: how many events the sandbox loses, and the issue's bound."""

    slug: str
    label: str
    drop_rate: float
    bound: float


MODES = (Mode("steady", "steady", 0.0, 1.1), Mode("lossy", "10% lost", 0.1, 2.0))


@dataclass(frozen=True)
class Measured:
    """What one mode cost, and how long its approvals waited."""

    mode: Mode
    orders: int
    calls: dict[str, int]
    throttled: int
    """Calls the sandbox refused for its rate limit (counted in `calls`, as DingTalk may)."""
    pending_s: list[float]
    dropped: int
    recovered: int
    """Decisions whose events were lost, applied by the sweep."""

    @property
    def per_approval(self) -> float:
        """Metered calls per approval, every API together."""
        return sum(self.calls.values()) / self.orders


def metered(apis: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """Calls per API that DingTalk meters against approvals, from the sandbox's stats."""
    return {
        name: counts["calls"]
        for name, counts in apis.items()
        if counts["calls"] and not any(word in name for word in EXCLUDED)
    }


def poller_gets(pending_s: Sequence[float], every_s: float = POLL_EVERY_S) -> float:
    """GET calls per approval of a bridge polling each pending instance every `every_s`.

    An instance pending t seconds is asked about at every_s, 2 every_s, ... until the first
    poll after its decision: ceil(t / every_s) calls, and at least one.
    """
    if not pending_s:
        return 0.0
    return sum(max(1, math.ceil(t / every_s)) for t in pending_s) / len(pending_s)


def sweep_calls(
    forgotten_s: float,
    per_day: int = SWEEP_MODEL_PER_DAY,
    wait_s: float = SWEEP_MODEL_WAIT_S,
    sweeps_per_day: int = SWEEPS_PER_DAY,
) -> tuple[float, float]:
    """Calls per approval of the safety sweeps with one approval forgotten for `forgotten_s`.

    A modelled day: `per_day` approvals raised evenly, each pending for `wait_s`, one forgotten
    since `forgotten_s` ago. Returns (what the sweep spends, choosing its cutoff with the
    bridge's own `cheapest_cutoff`; what relisting everything since the oldest pending costs).
    """
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    every = dt.timedelta(seconds=86_400 / per_day)
    count = int(forgotten_s / every.total_seconds())
    instances = [now - every * n for n in range(count, -1, -1)]
    waiting = [t for t in instances if (now - t).total_seconds() <= wait_s]
    pending = sorted([now - dt.timedelta(seconds=forgotten_s), *waiting])
    cost = sweep_cost(pending, instances, cheapest_cutoff(pending, instances))
    relist = max(1, math.ceil(len(instances) / LIST_PAGE))
    return cost * sweeps_per_day / per_day, relist * sweeps_per_day / per_day


def short_api(name: str) -> str:
    """`POST /v1.0/workflow/processInstances` as `POST processInstances`, for the notes."""
    return name.replace("/v1.0/workflow/", "", 1)


async def run(ctx: BenchContext) -> ScenarioResult:
    """Orders through the ERP, approvals in the sandbox, every write-back; twice."""
    orders = ctx.size(300, 20)
    measured = [await _measure(ctx, mode, orders) for mode in MODES]
    result = ScenarioResult("economy")
    for m in measured:
        result.figures += _mode_figures(m)
    pending = [t for m in measured for t in m.pending_s]
    result.figures += [
        info("poller GETs/approval, measured", poller_gets(pending)),
        info("poller GETs/approval, 1 day", poller_gets([HUMAN_PENDING_S])),
        info("sweep calls/approval, 1 forgotten a week", sweep_calls(FORGOTTEN_S)[0]),
    ]
    result.notes += [_by_api(m) for m in measured]
    result.notes += _notes(measured, pending)
    return result


def _mode_figures(m: Measured) -> list[Figure]:
    figures = [at_most(f"calls/approval, {m.mode.label}", m.per_approval, m.mode.bound)]
    if m.mode.drop_rate:
        figures.append(info("decisions lost, then found", m.recovered))
    return figures


async def _measure(ctx: BenchContext, mode: Mode, orders: int) -> Measured:
    """One fresh world: submit, approve, wait for every write-back, read the meter."""
    options = StackOptions(faults=FaultOptions(event_drop_rate=mode.drop_rate))
    wait_s = ctx.seconds(120, 30)
    async with ctx.stack(f"economy-{mode.slug}", options) as stack:
        prefix = f"PO-ECO-{mode.slug}-{uuid.uuid4().hex[:6]}"
        ctx.say(f"economy: {mode.label}: {orders} orders through the ERP")
        for i in range(orders):
            stack.erp.submit_order(order_data(f"{prefix}-{i}"))
        await stack.erp.wait_delivered(wait_s)
        for instance_id in await _until_running(stack, orders, wait_s):
            await stack.sandbox.approve(instance_id)
        # Settled: every delivered event is acknowledged, so applied (the bridge acks after
        # committing); what is still pending in the bridge was lost.
        await stack.sandbox.wait_events_settled(wait_s)
        if mode.drop_rate:
            # The scheduler's own sweep comes sweep_interval_min (>= 5) after the last one, or
            # on the tick after a stream reconnect; an admin's `sync` runs the same sweep now.
            ctx.say("economy: sweeping for lost decisions with `sync`")
            await stack.sandbox.deliver_chat(ADMIN, "sync", wait=wait_s)
        await _until_approved(stack, prefix, orders, wait_s)
        found = await _last_sweep_applied(stack)
        stats = await stack.sandbox.stats()
        pending_s = _pending_times(stack)
    apis = stats["calls"]["apis"]
    return Measured(
        mode,
        orders,
        metered(apis),
        sum(c["throttled"] for name, c in apis.items() if name in metered(apis)),
        pending_s,
        int(stats["events"]["dropped"]),
        found,
    )


async def _until_running(stack: Stack, count: int, wait_s: float) -> list[str]:
    """Instance ids once `count` of them run in the sandbox."""
    deadline = time.monotonic() + wait_s
    while True:
        running = [
            i["instanceId"] for i in await stack.sandbox.instances() if i["status"] == "RUNNING"
        ]
        if len(running) >= count:
            return running
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(running)} of {count} instances were raised")
        await asyncio.sleep(0.1)


async def _until_approved(stack: Stack, prefix: str, count: int, wait_s: float) -> None:
    """Until the ERP holds every order as approved (its write-back accepted)."""
    deadline = time.monotonic() + wait_s
    while True:
        done = sum(
            o.status == "approved" for o in stack.erp.orders.values() if o.doc_no.startswith(prefix)
        )
        if done >= count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {done} of {count} decisions were written back")
        await asyncio.sleep(0.1)


async def _last_sweep_applied(stack: Stack) -> int:
    """Decisions the last reconciliation sweep applied, from the bridge's `/metrics`."""
    async with aiohttp.ClientSession() as http, http.get(f"{stack.url}/metrics") as response:
        body = await response.text()
    found = LAST_SWEEP.search(body)
    return int(float(found.group(1))) if found else 0


def _pending_times(stack: Stack) -> list[float]:
    """Seconds each instance waited between its creation and its decision, from the sandbox."""
    # The control API shows times to the minute only; the records hold them to the microsecond.
    records = list(stack.sandbox.state.workflow.instances.values())
    return [r.finish_time - r.create_time for r in records if r.finish_time is not None]


def _by_api(m: Measured) -> str:
    parts = ", ".join(f"{short_api(api)} {n / m.orders:.3f}" for api, n in sorted(m.calls.items()))
    return f"{m.mode.label}: calls per approval by API: {parts or 'none'}"


def _notes(measured: list[Measured], pending: list[float]) -> list[str]:
    notes = [
        "metered as DingTalk does: every OpenAPI call the sandbox served, except token, robot, "
        "message and stream-gateway paths; calls/approval = calls / orders, each order submitted "
        "in the reference ERP, approved in the sandbox and written back",
        f"poller: a bridge asking about each pending instance every {POLL_EVERY_S:g} s makes "
        f"max(1, ceil(pending / {POLL_EVERY_S:g} s)) GETs per approval, on top of the same "
        f"create call; measured pending times (sandbox creation to decision, mean "
        f"{sum(pending) / max(len(pending), 1):.1f} s) give the first figure, a day's wait "
        f"({HUMAN_PENDING_S:,.0f} s) the second",
    ]
    throttled = sum(m.throttled for m in measured)
    if throttled:
        notes.append(f"{throttled} of the calls were refused by the sandbox's 20/s rate limit")
    ours, relist = sweep_calls(FORGOTTEN_S)
    notes.append(
        f"sweep calls/approval: what the hourly safety sweeps cost in a modelled organisation "
        f"({SWEEP_MODEL_PER_DAY} approvals a day, each pending {SWEEP_MODEL_WAIT_S / 3600:g} h) "
        f"with one approval forgotten for a week: {ours:.2f} per approval, the forgotten one "
        f"fetched alone and the rest listed since the next pending; relisting everything since "
        f"the oldest pending would cost {relist:.2f}. Here approvals wait seconds, so the "
        "measured sweeps listed only this run's instances"
    )
    for m in measured:
        if m.mode.drop_rate:
            notes.append(
                f"{m.mode.label}: {m.dropped} events dropped; {m.recovered} decisions never "
                "reached the bridge and were found by one sweep, started with an admin's `sync` "
                "chat command: the scheduler's own comes only sweep_interval_min (>= 5 min, "
                "default 60) after the last, or on the tick after a stream reconnect"
            )
    return notes
