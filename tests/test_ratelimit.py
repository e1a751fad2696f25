"""The per-API rate limiter: exact spacing, first come first served, one sleep per call."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.ratelimit import RateLimiter


class FakeTime:
    """A clock that stands still; `sleep` records when each caller would wake."""

    def __init__(self) -> None:
        self.now = 0.0
        self.wakes: list[float] = []
        self.advance_on_sleep = False

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.wakes.append(self.now + delay)
        if self.advance_on_sleep:
            self.now += delay


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most calls that fall in any half-open window of `window` seconds."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window - 1e-9:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_a_burst_of_5000_leaves_at_exactly_the_configured_rate() -> None:
    fake = FakeTime()
    limiter = RateLimiter(20.0, clock=fake.clock, sleep=fake.sleep)
    waits = await asyncio.gather(*(limiter.acquire("workflow.create") for _ in range(5000)))
    grants = [0.0, *fake.wakes]  # the first call goes at once, the rest sleep once each
    assert len(fake.wakes) == 4999
    assert waits[0] == 0.0
    # Call i leaves at i/20 s: first come, first served, and 5000 calls take 4999/20 s.
    assert grants == pytest.approx([i / 20 for i in range(5000)])
    assert max_in_window(grants) == 20


async def test_sequential_callers_are_spaced_by_one_interval() -> None:
    fake = FakeTime()
    fake.advance_on_sleep = True
    limiter = RateLimiter(50.0, clock=fake.clock, sleep=fake.sleep)
    for _ in range(101):
        await limiter.acquire("get")
    assert fake.now == pytest.approx(100 / 50)


async def test_each_api_has_its_own_schedule_and_rate() -> None:
    fake = FakeTime()
    limiter = RateLimiter(10.0, rates={"slow": 2.0}, clock=fake.clock, sleep=fake.sleep)
    assert [limiter.reserve("a") for _ in range(3)] == pytest.approx([0.0, 0.1, 0.2])
    assert [limiter.reserve("b") for _ in range(2)] == pytest.approx([0.0, 0.1])
    assert [limiter.reserve("slow") for _ in range(3)] == pytest.approx([0.0, 0.5, 1.0])
    assert limiter.rate_for("slow") == 2.0
    assert limiter.rate_for("other") == 10.0


async def test_a_guard_stretches_each_second_of_calls() -> None:
    fake = FakeTime()
    limiter = RateLimiter(20.0, guard_s=0.03, clock=fake.clock, sleep=fake.sleep)
    delays = [limiter.reserve("a") for _ in range(41)]
    assert delays[20] == pytest.approx(1.03)  # 20 calls span 1.03 s instead of 1 s
    assert delays[40] == pytest.approx(2.06)
    with pytest.raises(ValueError, match="guard_s"):
        RateLimiter(20.0, guard_s=1.5)


async def test_an_idle_api_starts_again_at_once() -> None:
    fake = FakeTime()
    limiter = RateLimiter(10.0, clock=fake.clock, sleep=fake.sleep)
    assert [limiter.reserve("a") for _ in range(3)] == pytest.approx([0.0, 0.1, 0.2])
    fake.now = 5.0
    limiter.forget_idle()
    assert limiter.reserve("a") == 0.0
    assert limiter.reserve("a") == pytest.approx(0.1)


async def test_a_burst_up_to_the_rate_then_the_rate() -> None:
    fake = FakeTime()
    limiter = RateLimiter(10.0, burst=4, clock=fake.clock, sleep=fake.sleep)
    delays = [limiter.reserve("a") for _ in range(7)]
    assert delays == pytest.approx([0.0, 0.0, 0.0, 0.0, 0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(10.0, burst=11)
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(0.0)


async def test_real_time_n_calls_take_n_over_rate_and_keep_their_order() -> None:
    sleeps: list[float] = []

    async def counted_sleep(delay: float) -> None:
        sleeps.append(delay)
        await asyncio.sleep(delay)

    limiter = RateLimiter(200.0, sleep=counted_sleep)
    done: list[int] = []

    async def call(i: int) -> None:
        await limiter.acquire("x")
        done.append(i)

    started = time.monotonic()
    await asyncio.gather(*(call(i) for i in range(41)))
    elapsed = time.monotonic() - started
    assert 40 / 200 - 0.01 <= elapsed < 1.0  # 0.2 s of spacing, generous upper bound
    assert done == list(range(41))  # nobody overtakes
    assert len(sleeps) == 40  # one sleep per waiting call: no polling


async def test_a_slot_starts_a_second_after_the_call_rate_places_earlier_finished() -> None:
    fake = FakeTime()
    fake.advance_on_sleep = True
    limiter = RateLimiter(2.0, clock=fake.clock, sleep=fake.sleep)
    async with limiter.slot("a"):
        fake.now = 0.4  # a slow call: it may have arrived as late as 0.4
    async with limiter.slot("a"):
        assert fake.now == pytest.approx(0.5)
    async with limiter.slot("a"):
        # Spacing alone would start it at 1.0, when the first call may be under a second old.
        assert fake.now == pytest.approx(1.4)
    with pytest.raises(RuntimeError):
        async with limiter.slot("a"):
            raise RuntimeError("a failed call still frees the calls behind it")
    async with limiter.slot("a"):
        assert fake.now == pytest.approx(2.4)
