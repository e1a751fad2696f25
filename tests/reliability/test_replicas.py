"""Three `approval-bridge run` replicas on one PostgreSQL behind a balancer, each with its own
stream connection (the sandbox hands each event to one connection at random, as DingTalk does);
one is SIGKILLed midway and stays down. Nothing is lost or duplicated, and each tick of a
scheduled job runs in one replica only."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from pathlib import Path

from bot.sandbox.options import SandboxOptions
from tests.reliability.conftest import Figures, size
from tests.reliability.drive import Plan, approvers, check, feed, plans, until_settled
from tests.reliability.world import World

REPLICAS = 3
TICK = re.compile(r"scheduled (\w+): tick (\d+)")
SHARED_QPS = 20
"""DingTalk's limit is per app, whatever the replicas: each gets its share (docs/deployment.md)."""


async def until_decided(world: World, orders: list[Plan], enough: int) -> None:
    """Until the ERP holds `enough` of the orders as approved or rejected."""
    while True:
        held = world.erp.orders
        if sum(1 for p in orders if p.doc_no in held and held[p.doc_no].status != "submitted") >= (
            enough
        ):
            return
        await asyncio.sleep(0.2)  # the reference ERP has no change event to wait on


async def test_three_replicas_one_killed_midway_lose_and_duplicate_nothing(
    tmp_path: Path, figures: Figures, postgres_server: str
) -> None:
    count = size(150, 5000)
    orders = plans(count, "PO-REPL", seed=3)
    env = {
        "DINGTALK__RECONCILE_INTERVAL_MIN": "1",
        "DINGTALK__RATE_LIMIT_QPS": str(SHARED_QPS // REPLICAS),
        "DATABASE__POOL_SIZE": "5",
    }
    options = SandboxOptions(max_deliveries=None, ack_timeout=3.0, redelivery_delay=1.0, seed=5)
    started = time.monotonic()
    async with World.up(
        tmp_path, options, replicas=REPLICAS, server_url=postgres_server, env=env
    ) as world:
        async with approvers(world, orders) as decided:
            feeding = asyncio.create_task(feed(world, orders, per_second=25))
            await until_decided(world, orders, count // 2)
            world.replicas[1].kill()
            killed_at = time.monotonic() - started
            await feeding
            settled_s = await until_settled(world, orders, wait_s=size(240, 1800))
        found = await check(world, orders)
        stats = await world.sandbox.stats()
        logs = world.logs()
    runs = Counter((name, int(tick)) for name, tick in TICK.findall(logs))
    by_job = Counter(name for name, _ in runs)
    figures.record(
        "replicas",
        orders=count,
        replicas=REPLICAS,
        killed_replica_at_s=round(killed_at, 1),
        decisions_made=len(decided),
        settled_s=round(killed_at + settled_s, 1),
        stream_connections=stats["stream"],
        dingtalk_calls=stats["calls"]["total"],
        scheduled_ticks=dict(by_job),
        most_runs_of_one_tick=max(runs.values(), default=0),
        problems=found.problems(),
    )
    assert found.problems() == {}, found.examples[:20]
    assert runs, "no scheduled job ran"
    assert max(runs.values()) == 1, [key for key, n in runs.items() if n > 1]
    assert by_job["reconcile"] >= 1
