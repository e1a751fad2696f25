"""Identifiers are unique, fixed-width, URL-safe and sort by creation time."""

from __future__ import annotations

import time

from approvals.ids import new_id


def test_ids_are_unique_fixed_width_and_url_safe() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert {len(i) for i in ids} == {26}
    assert set("".join(ids)) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def test_ids_sort_by_creation_time() -> None:
    first = new_id()
    time.sleep(0.002)
    assert new_id() > first
