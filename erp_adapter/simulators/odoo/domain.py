"""Odoo search domains: Polish-notation `&`, `|`, `!` over `[field, operator, value]` leaves."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

Resolve = Callable[[dict[str, Any], str], Any]
"""Reads a (possibly dotted) field of a record as a comparable value (None when empty)."""

OPERATORS = frozenset(
    {"=", "!=", ">", ">=", "<", "<=", "in", "not in", "like", "ilike", "not like", "not ilike"}
)


class DomainError(ValueError):
    """A malformed domain (Odoo answers with a ValueError traceback)."""


def _coerce(value: Any, sample: Any) -> Any:
    """The domain value in the type of the record's value (dates arrive as strings)."""
    if value is False or value is None:
        return None
    if isinstance(sample, dt.datetime) and isinstance(value, str):
        text = value if len(value) > 10 else value + " 00:00:00"
        return dt.datetime.strptime(text[:19], "%Y-%m-%d %H:%M:%S")  # noqa: DTZ007 naive UTC, as Odoo stores
    if isinstance(sample, dt.date) and isinstance(value, str):
        return dt.date.fromisoformat(value[:10])
    if isinstance(sample, Decimal) and isinstance(value, int | float):
        return Decimal(str(value))
    return value


def _like(pattern: Any, value: Any, *, fold: bool) -> bool:
    if value is None:
        return False
    text, needle = str(value), str(pattern)
    if fold:
        text, needle = text.casefold(), needle.casefold()
    return needle.replace("%", "") in text


def _leaf(record: dict[str, Any], leaf: Sequence[Any], resolve: Resolve) -> bool:
    if len(leaf) != 3:
        raise DomainError(f"Invalid leaf {list(leaf)!r}")
    field, op, raw = leaf
    if op not in OPERATORS:
        raise DomainError(f"Invalid operator {op!r} in leaf {list(leaf)!r}")
    value = resolve(record, str(field))
    if op in ("in", "not in"):
        if not isinstance(raw, list | tuple):
            raise DomainError(f"Invalid value for {op!r} in leaf {list(leaf)!r}")
        found = _contains([_coerce(item, value) for item in raw], value)
        return found if op == "in" else not found
    if op in ("like", "ilike", "not like", "not ilike"):
        matched = _like(raw, value, fold=op.endswith("ilike"))
        return not matched if op.startswith("not") else matched
    target = _coerce(raw, value)
    if op == "=":
        return _equal(value, target)
    if op == "!=":
        return not _equal(value, target)
    if value is None or target is None:
        return False  # SQL: NULL compares to nothing
    if isinstance(value, Decimal):
        target = Decimal(str(target))
    ordered = {">": value > target, ">=": value >= target, "<": value < target}
    return bool(ordered.get(op, value <= target))


def _equal(value: Any, target: Any) -> bool:
    if isinstance(value, list):  # x2many: "contains"
        return target in value if target is not None else not value
    if isinstance(value, Decimal) and isinstance(target, int | float):
        return value == Decimal(str(target))
    return bool(value == target)


def _contains(items: list[Any], value: Any) -> bool:
    if isinstance(value, list):
        return any(item in value for item in items)
    return any(_equal(value, item) for item in items)


def matches(record: dict[str, Any], domain: Sequence[Any], resolve: Resolve) -> bool:
    """Whether a record satisfies a domain (consecutive leaves are implicitly ANDed)."""
    items = list(domain)
    if not items:
        return True
    position = 0

    def parse() -> bool:
        nonlocal position
        if position >= len(items):
            raise DomainError("Domain is missing an operand")
        item = items[position]
        position += 1
        if item == "!":
            return not parse()
        if item in ("&", "|"):
            left, right = parse(), parse()
            return (left and right) if item == "&" else (left or right)
        if isinstance(item, list | tuple):
            return _leaf(record, item, resolve)
        raise DomainError(f"Invalid domain term {item!r}")

    result = True
    while position < len(items):
        result = parse() and result
    return result
