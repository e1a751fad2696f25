"""Crash points: parsing, counting, and a real SIGKILL of a child process that reaches one."""

from __future__ import annotations

import random
import signal
import subprocess
import sys

import pytest

from approvals import failpoints


def test_parse_takes_counts_and_probabilities() -> None:
    triggers = failpoints.parse("create.returned=3, writeback.acknowledged=p0.25")
    assert set(triggers) == {"create.returned", "writeback.acknowledged"}
    assert triggers["create.returned"].countdown == 3
    assert triggers["writeback.acknowledged"].probability == 0.25
    assert failpoints.parse("") == {}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nowhere=1", "unknown failpoint 'nowhere'"),
        ("create.returned=0", "at least 1"),
        ("create.returned=p0", "probability"),
        ("create.returned=p1.5", "probability"),
        ("create.returned=soon", "invalid literal"),
    ],
)
def test_parse_refuses_what_it_cannot_honour(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        failpoints.parse(spec)


def test_a_count_fires_once_on_the_nth_reach() -> None:
    trigger = failpoints.parse("create.returned=3")["create.returned"]
    rng = random.Random(1)
    assert [trigger.fires(rng) for _ in range(5)] == [False, False, True, False, False]


def test_an_armed_point_kills_the_process_on_its_nth_reach() -> None:
    program = (
        "import os, sys\n"
        "from approvals import failpoints\n"
        "failpoints.arm_from_env({'APPROVAL_BRIDGE_FAILPOINTS': 'create.returned=2'})\n"
        "for i in range(3):\n"
        "    print(i, flush=True)\n"
        "    failpoints.reach('create.returned')\n"
        "    failpoints.reach('writeback.acknowledged')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["0", "1"]


def test_unarmed_points_do_nothing() -> None:
    failpoints.arm_from_env({})
    failpoints.reach("create.returned")  # would kill this test process if it were armed
    assert failpoints.parse("") == {}
