"""Garbage-collector settings for the served process, applied once start-up is done."""

from __future__ import annotations

import gc

from aiohttp import web

YOUNG_THRESHOLD = 10_000
"""Allocations between young collections (Python's default is 700): a request allocates
hundreds of short-lived objects, and each young collection is cheap, but 14 times fewer of them
cost less in all."""


async def settle_heap(app: web.Application) -> None:
    """Freeze what start-up built, so full collections stop rescanning it.

    Measured on intake at 3,000 events/s: with the defaults, a full collection walked every
    module, SQLAlchemy and pydantic object, about 100 ms, every few seconds, and set p99 at
    100 ms. Frozen, p99 is about 30 ms. The objects built later are collected as usual.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
