"""Drive a world through a run of orders, then check DESIGN.md §3's guarantees on its final state.

The truth is read from outside the bridge: the instances DingTalk (the sandbox) holds, and the
write-backs and events the ERP (the reference ERP) saw; the bridge's own database is read only
to find revisions that never settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from approvals.config import DatabaseConfig
from approvals.db.engine import Database
from approvals.db.tables import approval, erp_event, revision
from bot.sandbox.errors import ControlError
from tests.harness import order
from tests.reliability.world import World

DOC_LABEL, REFERENCE_LABEL = "单据编号", "桥接单号"
SETTLED = {"done", "superseded", "cancelled", "stale", "failed"}


@dataclass(frozen=True)
class Plan:
    """What happens to each order: changed once while pending, cancelled, approved or refused."""

    doc_no: str
    change: bool
    cancel: bool
    approve: bool


def plans(count: int, prefix: str, seed: int = 6) -> list[Plan]:
    """`count` orders; about 10% changed, 5% cancelled, 80% of decisions approvals."""
    rng = random.Random(seed)
    return [
        Plan(f"{prefix}-{n:05d}", rng.random() < 0.10, rng.random() < 0.05, rng.random() < 0.8)
        for n in range(count)
    ]


async def feed(world: World, orders: list[Plan], per_second: float) -> None:
    """Submit every order at a steady rate; change and cancel some a little later."""
    later: list[asyncio.Task[None]] = []
    for plan in orders:
        world.erp.submit_order(order(plan.doc_no, 1, price="12.00"))
        if plan.change or plan.cancel:
            later.append(asyncio.create_task(_follow_up(world, plan)))
        await asyncio.sleep(1 / per_second)
    await asyncio.gather(*later)


async def _follow_up(world: World, plan: Plan) -> None:
    await asyncio.sleep(random.uniform(0.5, 3.0))
    if plan.change:
        world.erp.change_order(plan.doc_no, order(plan.doc_no, 2, price="12.60"))
    if plan.cancel:
        await asyncio.sleep(random.uniform(0.2, 2.0))
        world.erp.cancel_order(plan.doc_no, "no longer needed")


@contextlib.asynccontextmanager
async def approvers(world: World, orders: list[Plan]) -> AsyncIterator[set[str]]:
    """People deciding in DingTalk while inside; yields the ids of the instances they decided."""
    acted: set[str] = set()
    task = asyncio.create_task(_approve(world, orders, acted))
    try:
        yield acted
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _approve(world: World, orders: list[Plan], acted: set[str]) -> None:
    """Act on running instances as their approvers would, until cancelled."""
    by_doc = {p.doc_no: p for p in orders}
    while True:
        for instance in await world.sandbox.instances():
            iid = instance["instanceId"]
            if instance["status"] != "RUNNING" or iid in acted:
                continue
            plan = by_doc.get(form_value(instance, DOC_LABEL) or "")
            if plan is None:
                continue
            acted.add(iid)
            decide = world.sandbox.approve if plan.approve else world.sandbox.refuse
            # Superseded meanwhile: DingTalk refuses to decide a terminated instance.
            with contextlib.suppress(ControlError):
                await decide(iid, remark="同意" if plan.approve else "价格偏高")
        await asyncio.sleep(0.3)


def form_value(instance: dict[str, Any], label: str) -> str | None:
    """A form field's value by its label."""
    for value in instance.get("formComponentValues") or []:
        if value.get("name") == label:
            return str(value.get("value"))
    return None


async def until_settled(world: World, orders: list[Plan], wait_s: float) -> float:
    """Until every order's revisions are settled in the bridge and the ERP; seconds waited."""
    started = time.monotonic()
    deadline = started + wait_s
    while time.monotonic() < deadline:
        if not await unsettled(world, orders):
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    left = await unsettled(world, orders)
    states = await revision_states(world.database_url)
    instances = {
        form_value(i, REFERENCE_LABEL): (i["status"], i["result"])
        for i in await world.sandbox.instances()
        if form_value(i, DOC_LABEL) in left[:5]
    }
    shown = {doc: states.get(doc) for doc in left[:5]}
    raise AssertionError(
        f"{len(left)} orders never settled, e.g. {shown}; their instances: {instances}"
    )


async def unsettled(world: World, orders: list[Plan]) -> list[str]:
    """Orders whose ERP events are undelivered or whose revisions are not in an end state."""
    events = world.erp.events
    if any(not e.final for e in events):
        return sorted({str(e.data.get("doc_no")) for e in events if not e.final})
    states = await revision_states(world.database_url)
    return sorted(
        p.doc_no
        for p in orders
        if not states.get(p.doc_no) or any(s not in SETTLED for s in states[p.doc_no].values())
    )


async def revision_states(database_url: str) -> dict[str, dict[int, str]]:
    """doc_no -> revision -> state, from the bridge's database."""
    db = Database.from_config(DatabaseConfig(url=database_url))
    try:
        async with db.read() as conn:
            rows = await conn.execute(
                select(approval.c.doc_no, revision.c.revision, revision.c.state).join(
                    revision, revision.c.approval_id == approval.c.id
                )
            )
            states: dict[str, dict[int, str]] = defaultdict(dict)
            for doc_no, rev, state in rows:
                states[doc_no][rev] = state
            return states
    finally:
        await db.dispose()


@dataclass
class Findings:
    """What the final state shows; the counts that `problems` returns must be zero."""

    orders: int = 0
    decisions: int = 0
    duplicate_instances: int = 0
    """Instances beyond the first for one order revision."""
    live_instances_of_retired: int = 0
    """Running instances left for superseded or cancelled revisions."""
    missing_write_backs: int = 0
    """Decisions of an order's current revision that the ERP never acknowledged."""
    conflicting_decisions: int = 0
    """Idempotency keys that carried two different decisions."""
    keys_per_revision_over_one: int = 0
    """Order revisions written back under more than one Idempotency-Key."""
    lost_events: int = 0
    """ERP events acknowledged by the bridge but not in its database, or never delivered."""
    failed: int = 0
    """Revisions parked as failed, or stale with no newer revision."""
    stale_then_changed: int = 0
    """Revisions the ERP answered 409 for because it had a newer one (expected, not a fault)."""
    examples: list[str] = field(default_factory=list)

    def problems(self) -> dict[str, int]:
        """The non-zero counts that must be zero."""
        counts = {k: v for k, v in self.__dict__.items() if isinstance(v, int)}
        expected = ("orders", "decisions", "stale_then_changed")
        return {k: v for k, v in counts.items() if k not in expected and v}


async def check(world: World, orders: list[Plan]) -> Findings:
    """Every guarantee, from the sandbox's instances and the ERP's records."""
    found = Findings(orders=len(orders))
    erp_orders = world.erp.orders
    instances = await world.sandbox.instances()
    by_reference: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for instance in instances:
        by_reference[form_value(instance, REFERENCE_LABEL) or "?"].append(instance)
    for reference, group in by_reference.items():
        if len(group) > 1:
            found.duplicate_instances += len(group) - 1
            found.examples.append(f"{reference}: {len(group)} instances")
    states = await revision_states(world.database_url)
    for plan in orders:
        revisions = states.get(plan.doc_no, {})
        erp_order = erp_orders.get(plan.doc_no)
        cancelled = erp_order is not None and erp_order.status == "cancelled"
        for rev, state in revisions.items():
            if state == "stale" and (max(revisions) > rev or cancelled):
                # Decided, then changed or cancelled in the ERP before the bridge heard of it:
                # the ERP's 409 is CONTRACT section 3's answer; a newer revision goes on, a
                # cancelled order needs nothing written back.
                found.stale_then_changed += 1
            elif state in ("failed", "stale"):
                found.failed += 1
                found.examples.append(f"{plan.doc_no} r{rev}: {state}")
    for reference, group in by_reference.items():
        doc_no = form_value(group[0], DOC_LABEL) or "?"
        current = erp_orders.get(doc_no)
        rev = int(reference.rsplit(":", 1)[-1]) if ":" in reference else -1
        retired = current is None or current.status == "cancelled" or current.revision != rev
        if retired and any(i["status"] == "RUNNING" for i in group):
            found.live_instances_of_retired += 1
            found.examples.append(f"{reference}: still running, retired")
    _check_write_backs(world, found, by_reference)
    await _check_events(world, found)
    return found


def _check_write_backs(
    world: World, found: Findings, by_reference: dict[str, list[dict[str, Any]]]
) -> None:
    decisions: dict[str, set[str]] = defaultdict(set)
    keys_of: dict[tuple[str, int], set[str]] = defaultdict(set)
    for wb in world.erp.write_backs:
        body = wb.body if isinstance(wb.body, dict) else {}
        if not wb.idempotency_key or (wb.status >= 300 and wb.status != 409):
            continue
        decisions[wb.idempotency_key].add(str(body.get("decision")))
        keys_of[(str(body.get("doc_no")), int(body.get("revision", -1)))].add(wb.idempotency_key)
    found.conflicting_decisions = sum(1 for d in decisions.values() if len(d) > 1)
    found.keys_per_revision_over_one = sum(1 for k in keys_of.values() if len(k) > 1)
    acknowledged = {
        (str(wb.body.get("doc_no")), int(wb.body.get("revision", -1))): wb.body.get("decision")
        for wb in world.erp.write_backs
        if isinstance(wb.body, dict) and 200 <= wb.status < 300
    }
    for reference, group in by_reference.items():
        finished = [i for i in group if i["status"] == "COMPLETED"]
        if not finished:
            continue
        found.decisions += 1
        doc_no = form_value(group[0], DOC_LABEL) or "?"
        rev = int(reference.rsplit(":", 1)[-1])
        current = world.erp.orders.get(doc_no)
        if current is None or current.revision != rev or current.status == "cancelled":
            continue  # retired before or while it was decided: never written back
        expected = "approved" if finished[0]["result"] == "agree" else "rejected"
        if acknowledged.get((doc_no, rev)) != expected or current.status != expected:
            found.missing_write_backs += 1
            found.examples.append(f"{doc_no} r{rev}: {current.status}, expected {expected}")


async def _check_events(world: World, found: Findings) -> None:
    events = world.erp.events
    undelivered = [e for e in events if e.status not in ("delivered", "stale")]
    db = Database.from_config(DatabaseConfig(url=world.database_url))
    try:
        async with db.read() as conn:
            stored = set((await conn.execute(select(erp_event.c.event_id))).scalars().all())
            count = (await conn.execute(select(func.count()).select_from(erp_event))).scalar()
    finally:
        await db.dispose()
    assert count == len(stored)
    accepted = [e for e in events if e.status == "delivered" and e.response is not None]
    missing = [
        e.event_id
        for e in accepted
        if isinstance(e.response, dict)
        and e.response.get("status") == "accepted"
        and e.event_id not in stored
    ]
    found.lost_events = len(undelivered) + len(missing)
    found.examples.extend(f"event {e} acknowledged but not stored" for e in missing[:5])
    found.examples.extend(f"event {e.event_id}: {e.status}" for e in undelivered[:5])


def instance_counts(instances: list[dict[str, Any]]) -> Counter[str]:
    """Instances by status."""
    return Counter(i["status"] for i in instances)
