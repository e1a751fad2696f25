"""`approval-bridge demo` as a user runs it: exit 0 and a timeline of every key step."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).with_name("approval-bridge")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """One run of the demo, shared by the checks below."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPROVAL_BRIDGE")}
    env["PYTHONUTF8"] = "1"
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "bot.cli"]
    return subprocess.run(
        [*command, "demo"],
        cwd=tmp_path_factory.mktemp("demo"),  # no bridge.toml here: the demo needs none
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )


def lines(demo: subprocess.CompletedProcess[str]) -> list[str]:
    return demo.stdout.splitlines()


def first(timeline: list[str], pattern: str) -> int:
    """Index of the first timeline line matching `pattern`."""
    for i, line in enumerate(timeline):
        if re.search(pattern, line):
            return i
    raise AssertionError(f"no line matches {pattern!r} in:\n" + "\n".join(timeline))


def test_demo_exits_0_and_says_every_document_reached_its_end_state(
    demo: subprocess.CompletedProcess[str],
) -> None:
    assert demo.returncode == 0, demo.stdout + demo.stderr
    timeline = lines(demo)
    assert timeline[-1].endswith("every document reached its end state")
    assert "✗" not in demo.stdout
    assert "Traceback" not in demo.stderr
    # Every line is stamped with the time since the start, then who acted.
    stamped = re.compile(r"^\s*\d+\.\d\ds  (setup|erp|bridge|approver|dingtalk|result)\s")
    assert all(stamped.match(line) for line in timeline), demo.stdout


def test_demo_shows_price_context_with_a_warning(demo: subprocess.CompletedProcess[str]) -> None:
    timeline = lines(demo)
    first(timeline, r"price history imported: \d+ purchases")
    # What the approver sees in the DingTalk form. Within its usual range: no warning.
    usual = timeline[first(timeline, r"approver\s+sees M-001 .*@ 12\.00")]
    assert re.search(r"历史 \d+ 次：最低 [\d.]+，最高 [\d.]+，均价 [\d.]+", usual), usual
    assert "较均价 +" in usual and "最近" in usual and "⚠" not in usual
    # The dearer-than-ever order: a clear warning.
    dear = timeline[first(timeline, r"approver\s+sees M-002 .*@ 0\.52")]
    assert "⚠ 高于历史最高价" in dear, dear


def test_demo_timeline_shows_each_step_in_order(demo: subprocess.CompletedProcess[str]) -> None:
    t = lines(demo)
    # Approval: decided in DingTalk, applied, written back, seen in the ERP.
    assert (
        first(t, r"approver\s+\S+ approved PO-DEMO-001 in DingTalk")
        < first(t, r"PO-DEMO-001 r1: approve → approved")
        < first(t, r"PO-DEMO-001 r1: acknowledged → done \(erp_ref=")
        < first(t, r"PO-DEMO-001 r1 is approved in the ERP ✓")
    )
    # Rejection.
    assert (
        first(t, r"approver\s+\S+ rejected PO-DEMO-002 in DingTalk")
        < first(t, r"PO-DEMO-002 r1: reject → rejected")
        < first(t, r"PO-DEMO-002 r1: acknowledged → done")
        < first(t, r"PO-DEMO-002 r1 is rejected in the ERP ✓")
    )
    # Supersede: a new revision replaces the pending one, and that one is approved.
    assert (
        first(t, r"erp\s+PO-DEMO-003 changed")
        < first(t, r"PO-DEMO-003 r1: supersede → superseded")
        < first(t, r"PO-DEMO-003 r2: instance_created → pending")
        < first(t, r"PO-DEMO-003 r2: acknowledged → done")
        < first(t, r"PO-DEMO-003 r2 is approved in the ERP ✓")
    )
    # Cancel.
    assert (
        first(t, r"erp\s+PO-DEMO-004 cancelled")
        < first(t, r"PO-DEMO-004 r1: cancel → cancelled")
        < first(t, r"PO-DEMO-004 r1 is cancelled in the ERP ✓")
    )
    assert not any(re.search(r"PO-DEMO-004 .*acknowledged", line) for line in t)
    # Folding: three stock alerts, one replenishment approval, one requisition.
    assert len([line for line in t if "below safety stock" in line]) == 3
    folded = [line for line in t if re.search(r"RPL-\S+ r1: folded", line)]
    assert len(folded) == 2
    assert len({line.split()[2] for line in folded}) == 1
    first(t, r"RPL-\S+ r1: acknowledged → done \(erp_ref=PR-")
    requisitions = [line for line in t if "purchase requisition" in line]
    assert len(requisitions) == 1
    assert re.search(r"PR-\d+ raised: 200 × M-003 for WH1 ✓", requisitions[0])
    first(t, r"6 approval instances raised, 2 withdrawn")


def test_keep_running_prints_the_urls_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("APPROVAL_BRIDGE")}
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "bot.cli"]
    with subprocess.Popen(
        [*command, "demo", "--keep-running"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    ) as process:
        assert process.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 90
        for line in process.stdout:
            seen.append(line)
            if "press Ctrl-C to stop" in line or time.monotonic() > deadline:
                break
        assert any("/sandbox/" in line for line in seen), "".join(seen)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
