"""The served process freezes its start-up heap and collects the young generation less often."""

from __future__ import annotations

import gc

from aiohttp import web

from bot.heap import YOUNG_THRESHOLD, settle_heap


async def test_settle_heap_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        await settle_heap(web.Application())

        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG_THRESHOLD, before[1], before[2])
    finally:
        # The test process builds many apps: frozen objects would never be collected.
        gc.unfreeze()
        gc.set_threshold(*before)
