"""The live part of `approval-bridge check` for a native ERP: reach it, log in, check rights."""

from __future__ import annotations

import aiohttp

from approvals.errors import BridgeError
from bot.settings import Problem, Settings
from erp_adapter.native import registry
from erp_adapter.native.base import CheckItem

SOURCE = "erp"
"""Where live findings come from, in the report (not the file or the environment)."""


async def erp_findings(settings: Settings) -> list[CheckItem]:
    """What the configured native ERP adapter verified; empty for the generic adapter."""
    if settings.erp.adapter not in registry.NATIVE:
        return []
    timeout = aiohttp.ClientTimeout(total=settings.erp.timeout_s * 3)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            native = registry.build(settings.erp, session)
        except registry.AdapterMissing as exc:
            return [CheckItem("adapter", False, str(exc))]
        try:
            return list(await native.check())
        except (TimeoutError, BridgeError, OSError) as exc:
            return [CheckItem(f"reach {native.name}", False, str(exc) or type(exc).__name__)]
        finally:
            await native.close()


def problems(settings: Settings, items: list[CheckItem]) -> list[Problem]:
    """Failed findings as report lines under `erp.<adapter>`."""
    key = f"erp.{settings.erp.adapter}"
    return [
        Problem(SOURCE, key, f"{item.what}: failed", item.detail or "see the adapter's guide")
        for item in items
        if not item.ok
    ]
