"""The pure helpers of the pipeline and burst scenarios: the busiest API, the minimum, counters."""

from __future__ import annotations

import pytest

from bot.bench.scenarios.pipeline import busiest, call_counts, over_minimum

CREATE = "POST /v1.0/workflow/processInstances"
TOKEN = "POST /v1.0/oauth2/accessToken"
STREAM = "POST /v1.0/gateway/connections/open"


def test_the_busiest_api_is_a_rate_limited_one_and_never_the_token() -> None:
    calls = {CREATE: {"calls": 60}, TOKEN: {"calls": 900}, STREAM: {"calls": 500}}
    assert busiest(calls) == (CREATE, 60)
    assert busiest({}) == ("", 0)


def test_over_the_minimum_is_in_percent_of_calls_over_the_rate() -> None:
    assert over_minimum(3.15, 60, 20) == pytest.approx(5.0)
    assert over_minimum(2.0, 40, 20) == pytest.approx(0.0)
    assert over_minimum(1.0, 0, 20) is None


def test_call_counts_leave_out_what_happened_before() -> None:
    before = {"calls": {"apis": {TOKEN: {"calls": 1, "throttled": 0}}}}
    after = {
        "calls": {
            "apis": {
                TOKEN: {"calls": 1, "throttled": 0},
                CREATE: {"calls": 62, "throttled": 2},
            }
        }
    }
    assert call_counts(before, after) == {CREATE: {"calls": 62, "throttled": 2}}
