"""Runs the chosen scenarios one after another and reports them (`approval-bridge bench`)."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TextIO

from bot.bench.context import BenchContext
from bot.bench.machine import Placement, describe
from bot.bench.report import ScenarioResult, print_table, write_json
from bot.bench.scenarios import burst, economy, intake, memory, pipeline, price

Scenario = Callable[[BenchContext], Awaitable[ScenarioResult]]

SCENARIOS: dict[str, Scenario] = {
    "intake": intake.run,
    "pipeline": pipeline.run,
    "economy": economy.run,
    "price": price.run,
    "memory": memory.run,
    "burst": burst.run,
}


def run_bench(
    *,
    quick: bool,
    as_json: bool,
    only: Sequence[str] = (),
    database_url: str | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Run the scenarios; 0 when every one of them ran (targets are reported, not enforced)."""
    unknown = [name for name in only if name not in SCENARIOS]
    if unknown:
        print(
            f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}",
            file=sys.stderr,
        )
        return 2
    placement = Placement.detect()
    placement.pin_self()
    with tempfile.TemporaryDirectory(prefix="approval-bridge-bench-") as folder:
        ctx = BenchContext(
            quick=quick, placement=placement, workdir=Path(folder), server_url=database_url
        )
        results = asyncio.run(_run_all(ctx, list(only) or list(SCENARIOS)))
    machine = describe(placement, "PostgreSQL" if database_url else "SQLite")
    if as_json:
        write_json(results, machine, quick, out)
    else:
        print_table(results, machine, out)
    return 0 if all(r.error is None for r in results) else 1


async def _run_all(ctx: BenchContext, names: list[str]) -> list[ScenarioResult]:
    results = []
    for name in names:
        started = time.monotonic()
        try:
            result = await SCENARIOS[name](ctx)
        except Exception as exc:  # one broken scenario must not hide the others' figures
            ctx.say(f"{name}: failed: {exc}")
            traceback.print_exc(file=ctx.progress)
            result = ScenarioResult(name, error=f"{type(exc).__name__}: {exc}")
        result.seconds = time.monotonic() - started
        ctx.say(f"{name}: done in {result.seconds:.1f} s")
        results.append(result)
    return results
