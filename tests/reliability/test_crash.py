"""The crash suite: `approval-bridge run` is SIGKILLed again and again during a run of orders,
at random moments and at chosen crash points, and restarted each time; the ERP retries its
webhooks until acknowledged and DingTalk redelivers unacknowledged events. At the end: one
instance per order revision, every decision written back once, nothing lost."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

from bot.sandbox.options import SandboxOptions
from tests.reliability.conftest import Figures, size
from tests.reliability.drive import approvers, check, feed, plans, until_settled
from tests.reliability.world import Replica, World

MODES = (
    "random",
    "create.returned",
    "intake.before_commit",
    "stream.before_ack",
    "writeback.acknowledged",
)
"""Each kill in turn: a random moment, or the Nth arrival at a crash point."""
POINT_WAIT_S = 8.0
"""How long an armed process may run before its crash point is given up for a plain kill."""
REDELIVERING = SandboxOptions(max_deliveries=None, ack_timeout=3.0, redelivery_delay=1.0, seed=11)
"""DingTalk redelivers an unacknowledged event until it is acknowledged."""


async def crash_repeatedly(replica: Replica, kills: int, rng: random.Random) -> Counter[str]:
    """Kill the replica `kills` times, restarting it each time; how each kill came about."""
    how: Counter[str] = Counter()
    for n in range(kills):
        mode = MODES[n % len(MODES)]
        if mode == "random":
            await asyncio.sleep(rng.uniform(1.0, 4.0))
            replica.kill()
            how["random"] += 1
        else:
            if replica.alive:
                replica.kill()  # the unarmed process it replaces: a kill too, counted as random
                how["random"] += 1
            await replica.start(failpoints=f"{mode}={rng.randint(1, 8)}")
            if await replica.until_exit(POINT_WAIT_S) is None:
                replica.kill()
                how[f"{mode} (not reached: killed)"] += 1
            else:
                how[mode] += 1
        await replica.start()
    return how


async def test_sigkill_at_random_moments_and_crash_points_loses_and_duplicates_nothing(
    tmp_path: Path, figures: Figures
) -> None:
    count, kills = size(80, 1000), size(5, 20)
    orders = plans(count, "PO-CRASH")
    rng = random.Random(20261204)
    started = time.monotonic()
    async with World.up(tmp_path, REDELIVERING) as world:
        [replica] = world.replicas
        per_second = max(5.0, count / (kills * 4.0))
        async with approvers(world, orders) as decided:
            feeding = asyncio.create_task(feed(world, orders, per_second))
            how = await crash_repeatedly(replica, kills, rng)
            await feeding
            settled_s = await until_settled(world, orders, wait_s=size(180, 900))
        found = await check(world, orders)
        write_backs = world.erp.write_backs
        events = world.erp.events
        stats = await world.sandbox.stats()
    figures.record(
        "crash",
        orders=count,
        changed=sum(p.change for p in orders),
        cancelled=sum(p.cancel for p in orders),
        kills=sum(how.values()),
        kills_by_kind=dict(how),
        restarts=replica.starts - 1,
        decisions_made=len(decided),
        write_back_requests=len(write_backs),
        write_back_repeats=len(write_backs) - len({w.idempotency_key for w in write_backs}),
        erp_event_attempts=sum(len(e.attempts) for e in events),
        erp_events=len(events),
        dingtalk_calls=stats.get("calls"),
        settled_after_last_kill_s=round(settled_s, 1),
        total_s=round(time.monotonic() - started, 1),
        stale_then_changed=found.stale_then_changed,
        problems=found.problems(),
    )
    assert sum(how.values()) >= kills
    assert found.problems() == {}, found.examples[:20]
    assert found.decisions > 0
