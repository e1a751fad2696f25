"""Sizes of the reliability suite (reduced in CI, full with `make reliability`) and its figures."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import dbutil

LONG = os.environ.get("APPROVAL_BRIDGE_RELIABILITY", "") == "long"
"""The long mode: the full sizes of issue 6 (`make reliability`); CI runs the reduced ones."""
REPORT = os.environ.get("APPROVAL_BRIDGE_RELIABILITY_REPORT", "")
"""Where to write the figures as JSON (docs/reliability.md is written from them)."""


def size(reduced: int, full: int) -> int:
    """The reduced size in CI and plain `make test`, the full one in the long mode."""
    return full if LONG else reduced


def span(reduced: float, full: float) -> float:
    """A duration in seconds: reduced, or full in the long mode."""
    return full if LONG else reduced


class Figures:
    """What each reliability test measured: load held, faults injected, what was lost."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def record(self, test: str, **values: Any) -> None:
        """Keep one test's figures (plain JSON values)."""
        self.rows.append({"test": test, "mode": "long" if LONG else "reduced", **values})


@pytest.fixture(scope="session")
def figures() -> Iterator[Figures]:
    """The session's figures; written to APPROVAL_BRIDGE_RELIABILITY_REPORT when it is set."""
    collected = Figures()
    yield collected
    if REPORT:
        Path(REPORT).write_text(
            json.dumps(collected.rows, indent=2, ensure_ascii=False, default=str) + "\n",
            encoding="utf-8",
        )


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The PostgreSQL server's admin URL; skips (outside CI) when there is none."""
    admin, reason = dbutil.postgres_admin_dsn()
    if admin is None:
        if dbutil.in_ci():
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)
    return admin
