"""What every scenario is handed: the size, the placement, the database server, a progress line."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bot.bench.machine import Placement
from bot.bench.stack import Stack, StackOptions


@dataclass(frozen=True)
class BenchContext:
    """One bench run's settings, shared by its scenarios."""

    quick: bool
    placement: Placement
    workdir: Path
    server_url: str | None = None
    """A PostgreSQL server URL (each scenario gets a new database on it); None for SQLite."""
    progress: TextIO = sys.stderr

    def size(self, full: int, quick: int) -> int:
        """The full size, or the reduced one under `--quick`."""
        return quick if self.quick else full

    def seconds(self, full: float, quick: float) -> float:
        """The full duration, or the reduced one under `--quick`."""
        return quick if self.quick else full

    def say(self, text: str) -> None:
        """One progress line on stderr (never on stdout, which may carry the JSON report)."""
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=self.progress, flush=True)

    @contextlib.asynccontextmanager
    async def stack(
        self,
        name: str,
        options: StackOptions | None = None,
    ) -> AsyncIterator[Stack]:
        """A fresh bridge, sandbox, ERP and database for one part of a scenario."""
        async with Stack.up(
            self.workdir / name,
            self.placement,
            options or StackOptions(),
            self.server_url,
        ) as stack:
            yield stack
