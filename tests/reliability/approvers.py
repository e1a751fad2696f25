"""Drive a bench `Stack` through a run of orders with people deciding in the sandbox, and check
the end state from outside the bridge: the instances DingTalk holds and what the ERP received."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bot.bench.stack import Stack
from bot.sandbox.errors import ControlError
from tests.harness import order
from tests.reliability import drive
from tests.reliability.drive import DOC_LABEL, REFERENCE_LABEL, form_value

SETTLED = frozenset({"done", "superseded", "cancelled"})
"""End states of a revision that lost nothing (failed and stale are not among them)."""
ADMIN = "dt-admin"
"""An admin in the bench stack's configuration: may send `sync`."""


@dataclass(frozen=True)
class Plan:
    """One order's fate: changed once (a second revision), cancelled, or decided."""

    doc_no: str
    approve: bool
    change: bool = False
    cancel: bool = False

    @property
    def final_revision(self) -> int:
        """The revision the approvers decide (or that is cancelled)."""
        return 2 if self.change else 1

    @property
    def decision(self) -> str | None:
        """What the ERP must end up with."""
        if self.cancel:
            return None
        return "approved" if self.approve else "rejected"


def plans(
    count: int, prefix: str, seed: int, *, changes: float = 0.1, cancels: float = 0.05
) -> list[Plan]:
    """`count` orders, reproducibly; 80% of decisions approvals."""
    rng = random.Random(seed)
    return [
        Plan(
            f"{prefix}-{n:05d}", rng.random() < 0.8, rng.random() < changes, rng.random() < cancels
        )
        for n in range(count)
    ]


async def feed(stack: Stack, orders: Iterable[Plan], per_second: float, later_s: float) -> None:
    """Submit every order at a steady rate; change or cancel some `later_s` after."""
    follow_ups: list[asyncio.Task[None]] = []
    for plan in orders:
        stack.erp.submit_order(order(plan.doc_no, 1, price="12.00"))
        if plan.change or plan.cancel:
            follow_ups.append(asyncio.create_task(_follow_up(stack, plan, later_s)))
        await asyncio.sleep(1 / per_second)
    await asyncio.gather(*follow_ups)


async def _follow_up(stack: Stack, plan: Plan, later_s: float) -> None:
    await asyncio.sleep(later_s)
    if plan.change:
        stack.erp.change_order(plan.doc_no, order(plan.doc_no, 2, price="11.50"))
    if plan.cancel:
        stack.erp.cancel_order(plan.doc_no, "no longer needed")


def reference_revision(reference: str | None) -> int:
    """The revision in a `{approval_id}:{revision}` reference (-1 if unreadable)."""
    tail = (reference or "").rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else -1


@dataclass
class Approvers:
    """People in DingTalk: each decides the instance of an order's final revision as planned."""

    stack: Stack
    plans: dict[str, Plan]
    decided: dict[str, str] = field(default_factory=dict)
    """instance id -> agree or refuse."""

    async def run(self, stop: asyncio.Event, every_s: float = 0.3) -> None:
        """Look at the sandbox's instances until `stop`, deciding those that are due."""
        while not stop.is_set():
            await self.round()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)

    async def round(self) -> None:
        """One look at every running instance."""
        for instance in await self.stack.sandbox.instances():
            instance_id = instance["instanceId"]
            if instance["status"] != "RUNNING" or instance_id in self.decided:
                continue
            plan = self.plans.get(form_value(instance, DOC_LABEL) or "")
            rev = reference_revision(form_value(instance, REFERENCE_LABEL))
            if plan is None or plan.cancel or rev != plan.final_revision:
                continue
            if self.stack.erp.order(plan.doc_no).revision != rev:
                continue  # the change is not out of the ERP yet
            decide = self.stack.sandbox.approve if plan.approve else self.stack.sandbox.refuse
            try:
                await decide(instance_id, remark="同意" if plan.approve else "价格偏高")
            except ControlError:
                continue  # terminated meanwhile
            self.decided[instance_id] = "agree" if plan.approve else "refuse"


async def send_sync(stack: Stack) -> bool:
    """`sync` from an admin over the chat, standing in for the scheduled reconciliation."""
    try:
        await stack.sandbox.deliver_chat(ADMIN, "sync", wait=0.1)
    except ControlError:
        return False  # no stream connection at this moment
    return True


async def syncing(stack: Stack, stop: asyncio.Event, every_s: float) -> int:
    """Send `sync` every `every_s` until `stop`; how many were delivered."""
    sent = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
        if not stop.is_set():
            sent += await send_sync(stack)
    return sent


async def revision_states(stack: Stack) -> dict[str, dict[int, str]]:
    """doc_no -> revision -> state, from the bridge's database."""
    return await drive.revision_states(stack.database_url)


async def unsettled(stack: Stack, orders: list[Plan]) -> list[str]:
    """Orders not yet at their end: in the ERP, in the bridge, or with a live retired instance."""
    if any(not e.final for e in stack.erp.events):
        return sorted({str(e.data.get("doc_no")) for e in stack.erp.events if not e.final})
    states = await revision_states(stack)
    live = {
        (form_value(i, DOC_LABEL), reference_revision(form_value(i, REFERENCE_LABEL)))
        for i in await stack.sandbox.instances()
        if i["status"] == "RUNNING"
    }
    left = []
    for plan in orders:
        revs = states.get(plan.doc_no, {})
        erp_status = stack.erp.order(plan.doc_no).status
        done = (
            len(revs) == plan.final_revision
            and all(s in SETTLED for s in revs.values())
            and (erp_status == plan.decision if plan.decision else erp_status == "cancelled")
            and not any((plan.doc_no, r) in live for r in revs)
        )
        if not done:
            left.append(plan.doc_no)
    return left


async def until_settled(stack: Stack, orders: list[Plan], wait_s: float) -> float:
    """Seconds until every order is at its end; AssertionError after `wait_s`."""
    started = time.monotonic()
    while time.monotonic() - started < wait_s:
        if not await unsettled(stack, orders):
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    left = await unsettled(stack, orders)
    states = await revision_states(stack)
    detail = {d: (states.get(d), stack.erp.order(d).status) for d in left[:5]}
    raise AssertionError(f"{len(left)} orders never settled, e.g. {detail}")


@dataclass
class Findings:
    """The end state; every count but `orders` and `decisions` must be zero."""

    orders: int = 0
    decisions: int = 0
    duplicate_instances: int = 0
    """Instances beyond the first for one order revision."""
    missing_instances: int = 0
    """Orders whose final revision (not cancelled) has no instance."""
    wrong_or_missing_write_backs: int = 0
    """Final revisions whose acknowledged write-back is absent or not the approver's decision."""
    conflicting_decisions: int = 0
    """Idempotency keys that carried two different decisions."""
    keys_per_revision_over_one: int = 0
    """Order revisions written back under more than one Idempotency-Key."""
    written_back_retired: int = 0
    """Write-backs for superseded or cancelled revisions."""
    undelivered_erp_events: int = 0
    examples: list[str] = field(default_factory=list)

    def problems(self) -> dict[str, int]:
        """The non-zero counts that must be zero."""
        counts = {k: v for k, v in vars(self).items() if isinstance(v, int)}
        return {k: v for k, v in counts.items() if k not in ("orders", "decisions") and v}


async def check(stack: Stack, orders: list[Plan], decided: dict[str, str]) -> Findings:
    """Every guarantee, read from the sandbox's instances and the ERP's records."""
    found = Findings(orders=len(orders))
    by_reference: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for instance in await stack.sandbox.instances():
        doc_no = form_value(instance, DOC_LABEL) or "?"
        by_reference[(doc_no, reference_revision(form_value(instance, REFERENCE_LABEL)))].append(
            instance
        )
    for (doc_no, rev), group in by_reference.items():
        if len(group) > 1:
            found.duplicate_instances += len(group) - 1
            found.examples.append(f"{doc_no} r{rev}: {len(group)} instances")
    keys: dict[str, set[str]] = defaultdict(set)
    keys_of: dict[tuple[str, int], set[str]] = defaultdict(set)
    acknowledged: dict[tuple[str, int], str] = {}
    for wb in stack.erp.write_backs:
        body = wb.body if isinstance(wb.body, dict) else {}
        if not wb.idempotency_key or not 200 <= wb.status < 300:
            continue
        doc_rev = (str(body.get("doc_no")), int(body.get("revision", -1)))
        keys[wb.idempotency_key].add(str(body.get("decision")))
        keys_of[doc_rev].add(wb.idempotency_key)
        acknowledged[doc_rev] = str(body.get("decision"))
    found.conflicting_decisions = sum(len(d) > 1 for d in keys.values())
    found.keys_per_revision_over_one = sum(len(k) > 1 for k in keys_of.values())
    for plan in orders:
        final = (plan.doc_no, plan.final_revision)
        retired = [(plan.doc_no, r) for r in range(1, plan.final_revision)]
        retired += [final] if plan.cancel else []
        found.written_back_retired += sum(r in acknowledged for r in retired)
        if plan.decision is None:
            continue
        group = by_reference.get(final, [])
        if not group:
            found.missing_instances += 1
            found.examples.append(f"{plan.doc_no} r{plan.final_revision}: no instance")
            continue
        found.decisions += 1
        expected = {"agree": "approved", "refuse": "rejected"}.get(
            decided.get(group[0]["instanceId"], ""), "?"
        )
        if acknowledged.get(final) != expected or expected != plan.decision:
            found.wrong_or_missing_write_backs += 1
            found.examples.append(f"{plan.doc_no}: ERP has {acknowledged.get(final)}, {expected}")
    undelivered = [e for e in stack.erp.events if e.status != "delivered"]
    found.undelivered_erp_events = len(undelivered)
    found.examples.extend(f"ERP event {e.event_id}: {e.status}" for e in undelivered[:5])
    return found


def call_figures(stats: dict[str, Any]) -> dict[str, Any]:
    """What the sandbox counted: calls by outcome, events, stream cuts, token invalidations."""
    total = stats["calls"]["total"]
    return {
        "dingtalk_calls": total["calls"],
        "answered_ok": total["ok"],
        "answered_5xx_or_timeout": total["faults"],
        "answered_throttled": total["throttled"],
        "answered_quota": total["quota"],
        "answered_other_errors": total["errors"],
        "events_emitted": stats["events"]["emitted"],
        "events_dropped": stats["events"]["dropped"],
        "events_redelivered": stats["events"]["redelivered"],
        "stream_drops": stats["stream"]["drops"],
        "stream_connections": stats["stream"]["connectionsOpened"],
        "token_invalidations": stats["tokens"]["invalidations"],
    }


def by_api(stats: dict[str, Any], outcome: str) -> Counter[str]:
    """One outcome's count per API."""
    return Counter({api: c[outcome] for api, c in stats["calls"]["apis"].items() if c[outcome]})
