"""Issue 6, ERP faults: write-backs against a real `approval-bridge run` while the ERP misbehaves.

The ERP is the reference ERP; its faults are injected on `/approval-results` (CONTRACT §3):
down (503, then its listener closed so connections are refused), slower than the bridge's
timeout, 409, 400, and 500 for ever. Every decision must reach the ERP under its own
Idempotency-Key and be applied once, never a second decision for a key; nothing is retried for
ever; admins hear of each refusal or parked write-back once, from /sandbox/messages.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.reliability.conftest import Figures, size, span
from tests.reliability.faults import (
    FAST_JOBS,
    admin_messages,
    assert_written_back_once,
    by_key,
    database,
    decide,
    jobs,
    mentioning,
    pending,
    revisions,
    stack_up,
    states,
    submit_orders,
    until,
)

BACKOFF_INITIAL_S = float(FAST_JOBS["JOBS__BACKOFF_INITIAL_S"])
BACKOFF_MAX_S = float(FAST_JOBS["JOBS__BACKOFF_MAX_S"])


def most_attempts(window_s: float) -> int:
    """The most tries one job can make within `window_s` under the configured backoff.

    Each wait is at least half its ceiling ("equal jitter", `approvals.jobs.backoff`).
    """
    attempts, elapsed = 1, 0.0
    while True:
        wait = min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2.0 ** (attempts - 1)) / 2
        if elapsed + wait > window_s:
            return attempts
        elapsed += wait
        attempts += 1


def decision_of(index: int) -> bool:
    """Approve two documents in three, refuse the third: both decisions get written back."""
    return index % 3 != 2


async def test_erp_down_then_back_writes_every_decision_back_once(
    tmp_path: Path, figures: Figures
) -> None:
    """The ERP answers 503, then refuses connections, for `down_s` while decisions are made."""
    count, down_s = size(20, 200), span(10, 120)
    async with stack_up(tmp_path / "down") as stack, database(stack) as db:
        numbers = submit_orders(stack, "PO-DOWN", count)
        await pending(stack, db, numbers, wait_s=60 + count / 5)
        stored = await revisions(db)
        expected = {
            doc: "approved" if decision_of(i) else "rejected" for i, doc in enumerate(numbers)
        }

        stack.erp.set_fault("down")
        went_down = time.monotonic()
        half = len(numbers) // 2
        for i, doc in enumerate(numbers[:half]):
            await decide(stack, str(stored[doc].instance_id), decision_of(i))
        await asyncio.sleep(max(0.0, down_s / 2 - (time.monotonic() - went_down)))
        await stack.erp.stop_listening()  # now connections are refused, not answered
        refused_from = time.monotonic()
        for i, doc in enumerate(numbers[half:], start=half):
            await decide(stack, str(stored[doc].instance_id), decision_of(i))
        await asyncio.sleep(max(0.0, down_s - (time.monotonic() - went_down)))
        during = await states(db)
        answered_503 = len(stack.erp.write_backs)
        await stack.erp.listen()
        stack.erp.set_fault("ok")
        back = time.monotonic()
        refused_s = back - refused_from

        async def all_done() -> bool:
            return (await states(db))["done"] == count

        recovered_s = await until("every decision written back", all_done, 30 + count / 5)
        await asyncio.sleep(1.0)  # a stray retry or notice would show by now
        after = await states(db)
        left = await jobs(db, "write_back")
        records = stack.erp.write_backs
        notices = await admin_messages(stack)
        orders = stack.erp.orders
        alive = stack.process is not None and stack.process.poll() is None

    assert alive, "the bridge died"
    assert not (during.keys() & {"done", "failed", "stale"}), during
    assert after == {"done": count}, after
    assert left == []
    assert {doc: orders[doc].status for doc in numbers} == expected, "a decision was lost"
    assert_written_back_once(records, expected, {doc: stored[doc].approval_id for doc in numbers})
    per_key = [len(sent) for sent in by_key(records).values()]
    # While refused, attempts leave no record; while answering 503, each is one request.
    assert max(per_key) <= most_attempts(down_s) + 1, per_key
    assert notices == [], "a write-back that succeeded within its deadline is no admin's business"
    figures.record(
        "erp_down",
        approvals=count,
        down_s=round(back - went_down, 1),
        answered_503_s=round(refused_from - went_down, 1),
        refused_connections_s=round(refused_s, 1),
        erp_requests=len(records),
        answered_503=answered_503,
        most_requests_per_key=max(per_key),
        replays=sum(r.outcome == "replay" for r in records),
        second_decisions=0,
        recovered_s=round(recovered_s, 1),
        lost=0,
        admin_notices=len(notices),
    )


async def test_slow_erp_past_the_timeout_is_retried_then_done(
    tmp_path: Path, figures: Figures
) -> None:
    count, timeout_s, delay_s = size(4, 20), 1.0, 2.5
    env = {"ERP__TIMEOUT_S": str(timeout_s)}
    async with stack_up(tmp_path / "slow", env) as stack, database(stack) as db:
        numbers = submit_orders(stack, "PO-SLOW", count)
        await pending(stack, db, numbers, wait_s=60)
        stored = await revisions(db)
        # The next `count` write-backs take 2.5 s: the bridge gives up on each after 1 s.
        stack.erp.set_fault("slow", delay=delay_s, fail_next=count)
        started = time.monotonic()
        for doc in numbers:
            await decide(stack, str(stored[doc].instance_id), True)

        async def all_done() -> bool:
            return (await states(db))["done"] == count

        took = await until("every slow write-back done", all_done, 30)
        # The ERP records a request when it answers it: the slow ones, after their delay.
        await asyncio.sleep(delay_s + 0.5)
        records = stack.erp.write_backs
        notices = await admin_messages(stack)
        orders = stack.erp.orders

    expected = dict.fromkeys(numbers, "approved")
    assert {doc: orders[doc].status for doc in numbers} == expected
    assert_written_back_once(records, expected, {doc: stored[doc].approval_id for doc in numbers})
    timed_out = len(records) - count
    assert timed_out >= 1, "no request outlived the bridge's timeout"
    assert len(records) <= 2 * count + 2, "timeouts were retried more than needed"
    assert notices == []
    figures.record(
        "erp_slow",
        approvals=count,
        erp_timeout_s=timeout_s,
        erp_delay_s=delay_s,
        slow_requests=count,
        erp_requests=len(records),
        replays=sum(r.outcome == "replay" for r in records),
        second_decisions=0,
        all_done_s=round(took, 1),
        since_first_decision_s=round(time.monotonic() - started, 1),
        admin_notices=len(notices),
    )


async def test_409_is_stale_and_400_failed_at_once_each_told_once(
    tmp_path: Path, figures: Figures
) -> None:
    async with stack_up(tmp_path / "refused") as stack, database(stack) as db:
        stale_doc, failed_doc = submit_orders(stack, "PO-REFUSED", 2)
        await pending(stack, db, [stale_doc, failed_doc], wait_s=30)
        stored = await revisions(db)

        stack.erp.set_fault("conflict", fail_next=1)
        await decide(stack, str(stored[stale_doc].instance_id), True)

        async def is_stale() -> bool:
            return (await revisions(db))[stale_doc].state == "stale"

        await until("the 409 marking the approval stale", is_stale, 15)
        stack.erp.set_fault("reject", fail_next=1)
        await decide(stack, str(stored[failed_doc].instance_id), False)

        async def is_failed() -> bool:
            return (await revisions(db))[failed_doc].state == "failed"

        await until("the 400 marking the write-back failed", is_failed, 15)

        async def both_told() -> bool:
            messages = await admin_messages(stack)
            return bool(mentioning(messages, stale_doc) and mentioning(messages, failed_doc))

        await until("the admin notices", both_told, 15)
        # Several first backoffs (0.1-0.2 s): a retry or a second notice would show.
        await asyncio.sleep(2.0)
        final = await revisions(db)
        held = await jobs(db, "write_back")
        notices = await admin_messages(stack)
        records = stack.erp.write_backs
        orders = stack.erp.orders

    grouped = by_key(records)
    stale_key, failed_key = (f"{stored[d].approval_id}:1" for d in (stale_doc, failed_doc))
    assert [(r.status, r.body["decision"]) for r in grouped[stale_key]] == [(409, "approved")]
    assert [(r.status, r.body["decision"]) for r in grouped[failed_key]] == [(400, "rejected")]
    assert final[stale_doc].state == "stale" and "409" in str(final[stale_doc].last_error)
    assert final[failed_doc].state == "failed" and "400" in str(final[failed_doc].last_error)
    assert orders[stale_doc].status == orders[failed_doc].status == "submitted"
    # The stale one is over; the failed one is parked, for an admin's `retry`.
    assert held == [(stored[failed_doc].approval_id, "parked", 1)]
    [stale_notice] = mentioning(notices, stale_doc)
    [failed_notice] = mentioning(notices, failed_doc)
    assert "stale" in stale_notice["text"]
    assert "failed" in failed_notice["text"] and "retry" in failed_notice["text"]
    assert len(notices) == 2
    figures.record(
        "erp_409_400",
        erp_requests_409=len(grouped[stale_key]),
        erp_requests_400=len(grouped[failed_key]),
        admin_notices=len(notices),
        states={stale_doc: final[stale_doc].state, failed_doc: final[failed_doc].state},
    )


async def test_erp_500_forever_parks_at_the_deadline_with_one_notice_then_admin_retry(
    tmp_path: Path, figures: Figures
) -> None:
    count, deadline_h = size(3, 10), 0.002
    deadline_s = deadline_h * 3600
    env = {"JOBS__WRITE_BACK_DEADLINE_H": str(deadline_h)}
    async with stack_up(tmp_path / "error", env) as stack, database(stack) as db:
        numbers = submit_orders(stack, "PO-500", count)
        await pending(stack, db, numbers, wait_s=60)
        stored = await revisions(db)
        approval_ids = {doc: stored[doc].approval_id for doc in numbers}

        stack.erp.set_fault("error")  # 500 to every write-back until further notice
        decided = time.monotonic()
        for doc in numbers:
            await decide(stack, str(stored[doc].instance_id), True)

        async def all_failed() -> bool:
            return (await states(db))["failed"] == count

        await until("every write-back parked", all_failed, deadline_s + 15)
        parked_after = time.monotonic() - decided
        at_parking = len(stack.erp.write_backs)
        await asyncio.sleep(BACKOFF_MAX_S + 0.5)  # nothing is tried once parked
        after_parking = len(stack.erp.write_backs)
        notify_jobs = await jobs(db, "notify")
        parked_notices = await admin_messages(stack)

        # An admin fixes the ERP, then retries each document from the chat.
        stack.erp.set_fault("ok")
        retried_at = time.monotonic()
        replies = []
        for doc in numbers:
            answer = await stack.sandbox.deliver_chat("dt-admin", f"retry {doc}", wait=5)
            replies.append(answer["replies"])

        async def all_done() -> bool:
            return (await states(db))["done"] == count

        await until("every retried write-back done", all_done, 20)
        retried_s = time.monotonic() - retried_at
        await asyncio.sleep(1.0)
        records = stack.erp.write_backs
        notices = await admin_messages(stack)
        left = await jobs(db, "write_back")
        orders = stack.erp.orders

    grouped = by_key(records)
    failing = {key: [r for r in sent if r.status == 500] for key, sent in grouped.items()}
    tries = sorted(len(sent) for sent in failing.values())
    assert len(failing) == count
    assert min(tries) >= 3, f"a 500 must be retried before parking: {tries}"
    assert max(tries) <= most_attempts(deadline_s) + 1, f"retried past the deadline: {tries}"
    assert parked_after >= deadline_s - BACKOFF_MAX_S - 0.5, f"parked after {parked_after:.1f} s"
    assert after_parking == at_parking, "a parked write-back was tried again"
    # One notice per parked approval: the first sent at once, the others held for the summary
    # (one message per kind of alert in a 5-minute window), none per attempt.
    told = {doc: len(mentioning(parked_notices, doc)) for doc in numbers}
    held = {doc: sum(1 for a, _, _ in notify_jobs if a == approval_ids[doc]) for doc in numbers}
    assert {doc: told[doc] + held[doc] for doc in numbers} == dict.fromkeys(numbers, 1), (
        told,
        held,
    )
    assert len(parked_notices) == 1
    assert "retry" in parked_notices[0]["text"]
    assert all(
        any(doc in r["text"] for r in reply) for doc, reply in zip(numbers, replies, strict=True)
    )
    assert notices == parked_notices, "a successful retry raises no new notice"
    assert left == []
    expected = dict.fromkeys(numbers, "approved")
    assert {doc: orders[doc].status for doc in numbers} == expected
    assert_written_back_once(records, expected, approval_ids)
    figures.record(
        "erp_500_forever",
        approvals=count,
        deadline_s=deadline_s,
        parked_after_s=round(parked_after, 1),
        attempts_per_write_back=tries,
        attempts_bound=most_attempts(deadline_s) + 1,
        erp_requests_after_parking=after_parking - at_parking,
        admin_messages=len(parked_notices),
        notices_per_approval=1,
        admin_retry_done_s=round(retried_s, 1),
        second_decisions=0,
    )
