"""The arithmetic of the economy and memory scenarios (the scenarios run in the bench)."""

from __future__ import annotations

import os

import pytest

from bot.bench.machine import rss_bytes
from bot.bench.scenarios.economy import metered, poller_gets, short_api, sweep_calls
from bot.bench.scenarios.memory import MB, PENDING, growth_per_minute, peak_rss_bytes


def test_metered_leaves_out_tokens_messages_and_the_gateway() -> None:
    apis = {
        "POST /v1.0/oauth2/accessToken": {"calls": 3},
        "GET /gettoken": {"calls": 1},
        "POST /v1.0/robot/oToMessages/batchSend": {"calls": 5},
        "POST /topapi/message/corpconversation/asyncsend_v2": {"calls": 2},
        "POST /v1.0/gateway/connections/open": {"calls": 1},
        "POST /v1.0/workflow/processInstances": {"calls": 40},
        "GET /v1.0/workflow/processInstances": {"calls": 4},
        "POST /v1.0/workflow/processInstances/terminate": {"calls": 0},
    }
    assert metered(apis) == {
        "POST /v1.0/workflow/processInstances": 40,
        "GET /v1.0/workflow/processInstances": 4,
    }


def test_a_poller_asks_at_least_once_then_once_a_minute_until_the_decision() -> None:
    assert poller_gets([0.5]) == 1
    assert poller_gets([60.0]) == 1
    assert poller_gets([60.1]) == 2
    assert poller_gets([1.0, 119.0, 181.0]) == pytest.approx((1 + 2 + 4) / 3)
    assert poller_gets([86_400.0]) == 1440
    assert poller_gets([]) == 0


def test_api_names_are_shortened_for_the_notes() -> None:
    assert short_api("POST /v1.0/workflow/processInstances") == "POST processInstances"
    assert (
        short_api("POST /v1.0/workflow/processes/instanceIds/query")
        == "POST processes/instanceIds/query"
    )
    assert short_api("POST /topapi/processinstance/get") == "POST /topapi/processinstance/get"


def test_growth_is_the_least_squares_slope_in_mb_per_minute() -> None:
    flat = [(float(t), 100 * MB) for t in range(0, 600, 5)]
    assert growth_per_minute(flat) == 0
    rising = [(float(t), 100 * MB + t * MB // 60) for t in range(0, 600, 5)]
    assert growth_per_minute(rising) == pytest.approx(1.0, rel=0.01)
    # One early step (an allocator arena) weighs less than a steady climb of the same size.
    step = [(float(t), (100 if t < 30 else 101) * MB) for t in range(0, 600, 5)]
    slope = growth_per_minute(step)
    assert slope is not None and 0 < slope < 0.2
    assert growth_per_minute([(0.0, MB)]) is None
    assert growth_per_minute([(1.0, MB), (1.0, 2 * MB)]) is None


def test_pending_count_is_read_from_the_metrics_exposition() -> None:
    body = (
        b'approval_bridge_approvals{state="received"} 3.0\n'
        b'approval_bridge_approvals{state="pending"} 100000.0\n'
        b'approval_bridge_approvals{state="pending_x"} 7.0\n'
    )
    found = PENDING.search(body)
    assert found is not None and int(float(found.group(1))) == 100_000


def test_a_forgotten_approval_costs_the_sweeps_a_fetch_not_a_week_of_listing() -> None:
    ours, relist = sweep_calls(7 * 86_400.0)
    # Relisting a week of 500 a day: 175 pages, 24 times a day, over 500 approvals.
    assert relist == pytest.approx(175 * 24 / 500)
    # One fetch, then the ~84 raised in the last 4 h: 1 + 5 pages, 24 times a day.
    assert ours == pytest.approx((1 + 5) * 24 / 500)
    assert sweep_calls(3_600.0)[0] <= sweep_calls(3_600.0)[1]


def test_peak_rss_is_at_least_the_current_rss() -> None:
    pid = os.getpid()
    current = rss_bytes(pid)  # first: the peak read after it cannot be lower
    assert peak_rss_bytes(pid) >= current > 0
