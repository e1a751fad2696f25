"""`approval-bridge bench`: every scenario runs and produces figures (sizes reduced, not timed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from pydantic import TypeAdapter

from approvals.models import ErpEvent, OrderSubmitted, StockBelowSafety
from bot.bench.events import BodyFactory, signature
from bot.bench.report import ScenarioResult, at_least, at_most, exactly, info, percentile
from bot.bench.runner import SCENARIOS
from erp_adapter.signing import verify
from tests import dbutil

EVENTS: TypeAdapter[Any] = TypeAdapter(ErpEvent)


def bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPROVAL_BRIDGE")}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def assert_figures(report: dict[str, Any], names: list[str]) -> None:
    by_name = {s["name"]: s for s in report["scenarios"]}
    assert list(by_name) == names
    for name, scenario in by_name.items():
        assert scenario["error"] is None, (name, scenario["error"])
        assert scenario["figures"], name
        missing = [f["name"] for f in scenario["figures"] if f["value"] is None]
        assert not missing, (name, missing)
        assert scenario["seconds"] > 0


def test_quick_bench_runs_every_scenario_and_reports_figures() -> None:
    started = time.monotonic()
    done = bench("--quick", "--json")

    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["quick"] is True
    assert report["machine"]["database"] == "SQLite"
    assert_figures(report, list(SCENARIOS))
    # Progress goes to stderr, one line per step, so a person sees it move.
    assert "intake: ceiling" in done.stderr
    print(f"bench --quick took {time.monotonic() - started:.0f} s")


def test_bench_runs_against_postgresql() -> None:
    admin, reason = dbutil.postgres_admin_dsn()
    if admin is None:
        if dbutil.in_ci():
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)

    done = bench("--quick", "--json", "--scenario", "intake", "--database-url", admin)

    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["machine"]["database"] == "PostgreSQL"
    assert_figures(report, ["intake"])


def test_table_is_the_default_output() -> None:
    done = bench("--quick", "--scenario", "price")

    assert done.returncode == 0, done.stderr[-3000:]
    assert "approval-bridge bench" in done.stdout
    assert "price" in done.stdout and "machine:" in done.stdout


def test_unknown_scenario_is_refused_with_the_choices() -> None:
    done = bench("--scenario", "warp-speed")

    assert done.returncode == 2
    assert "warp-speed" in done.stderr and "intake" in done.stderr


@pytest.mark.parametrize("kind", ["order", "stock"])
def test_load_bodies_are_valid_signed_contract_events(kind: str) -> None:
    factory = BodyFactory(kind, "PO-T", lines=4, materials=3)
    secret = b"s3cret"

    bodies = [factory.body(n) for n in range(6)]
    events = [EVENTS.validate_json(body) for body in bodies]

    assert len({e.event_id for e in events}) == 6
    if kind == "order":
        assert all(isinstance(e, OrderSubmitted) and len(e.data.lines) == 4 for e in events)
        assert len({e.data.doc_no for e in events}) == 6
    else:
        assert all(isinstance(e, StockBelowSafety) for e in events)
        assert len({e.data.material_code for e in events}) == 3
    stamp = int(time.time())
    mac = signature(secret, stamp, bodies[0]).decode()
    assert verify(secret, str(stamp), mac, bodies[0], time.time(), 300) is None


def test_percentile_is_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 101)]

    assert percentile(samples, 50) == 50
    assert percentile(samples, 99) == 99
    assert percentile(samples, 100) == 100
    assert percentile([], 99) is None


def test_targets_are_judged_and_shown() -> None:
    result = ScenarioResult(
        "x",
        [
            at_least("rate", 5200.0, 5000, "/s"),
            at_most("p99", 61.5, 50, "ms"),
            exactly("throttled", 0, 0),
            info("ceiling", 0.4167),
        ],
    )

    assert [f.met for f in result.figures] == [True, False, True, None]
    assert not result.targets_met
    assert [f.shown() for f in result.figures] == ["5,200 /s", "61.50 ms", "0", "0.417"]
