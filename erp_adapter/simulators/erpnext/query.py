"""`frappe.get_list` over in-memory rows: filters, or_filters, fields, order_by and paging."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from erp_adapter.simulators.erpnext.errors import DataError, OperationalError

Row = dict[str, Any]
DEFAULT_PAGE = 20
"""What `/api/resource` returns when the client names no page length."""

_OPS = ("=", "!=", ">", ">=", "<", "<=", "like", "not like", "in", "not in", "is", "between")


def json_param(value: Any, default: Any) -> Any:
    """A request parameter that Frappe accepts either as JSON text or as a JSON value."""
    if value is None or value == "":
        return default
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise DataError(f"Invalid JSON: {value[:80]}") from None
    return value


def _coerce(stored: Any, value: Any) -> Any:
    """The filter value in the stored value's type, as MariaDB would compare them."""
    if value is None:
        return None
    try:
        if isinstance(stored, dt.datetime):
            return dt.datetime.fromisoformat(str(value))
        if isinstance(stored, dt.date):
            return dt.date.fromisoformat(str(value)[:10])
        if isinstance(stored, bool | int | Decimal):
            return Decimal(str(value))
    except (ValueError, InvalidOperation):
        return value
    return str(value)


def _like(pattern: str) -> re.Pattern[str]:
    parts = (".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _test(stored: Any, op: str, value: Any) -> bool:
    """One condition; SQL semantics: NULL matches nothing but `is not set`."""
    if op == "is":
        empty = stored is None or stored == ""
        return empty if str(value).lower() == "not set" else not empty
    if op in ("in", "not in"):
        values = value if isinstance(value, list) else str(value).split(",")
        hit = any(stored is not None and stored == _coerce(stored, v) for v in values)
        return hit if op == "in" else stored is not None and not hit
    if stored is None:
        return False
    if op in ("like", "not like"):
        hit = _like(str(value)).fullmatch(str(stored)) is not None
        return hit if op == "like" else not hit
    if op == "between":
        low, high = (_coerce(stored, v) for v in value)
        return bool(low <= stored <= high)
    other = _coerce(stored, value)
    try:
        result: bool = {
            "=": stored == other,
            "!=": stored != other,
            ">": stored > other,
            ">=": stored >= other,
            "<": stored < other,
            "<=": stored <= other,
        }[op]
        return result
    except TypeError:
        return False


def conditions(raw: Any) -> list[tuple[str, str, Any]]:
    """Frappe's filter forms: {f: v}, {f: [op, v]}, [[f, op, v]] and [[doctype, f, op, v]]."""
    out: list[tuple[str, str, Any]] = []
    if isinstance(raw, dict):
        for field, value in raw.items():
            if isinstance(value, list) and len(value) == 2 and str(value[0]).lower() in _OPS:
                out.append((field, str(value[0]).lower(), value[1]))
            else:
                out.append((field, "=", value))
        return out
    if not isinstance(raw, list):
        raise DataError("filters must be a list or a dict")
    for item in raw:
        if not isinstance(item, list) or len(item) not in (3, 4):
            raise DataError(f"Invalid filter: {item!r}")
        field, op, value = item[-3:]
        if str(op).lower() not in _OPS:
            raise DataError(f"Operator must be one of {', '.join(_OPS)}")
        out.append((str(field), str(op).lower(), value))
    return out


def _order(spec: str) -> list[tuple[str, bool]]:
    """`modified desc, name asc` as (field, descending) pairs; backticked names allowed."""
    keys: list[tuple[str, bool]] = []
    for part in spec.split(","):
        words = part.replace("`", "").split()
        if not words:
            continue
        field = words[0].rsplit(".", 1)[-1]
        keys.append((field, len(words) > 1 and words[1].lower() == "desc"))
    return keys


def _sort_key(value: Any) -> tuple[int, Any]:
    """NULLs first, as MariaDB sorts them ascending."""
    return (0, "") if value is None else (1, value)


def _by(field: str) -> Callable[[Row], tuple[int, Any]]:
    return lambda row: _sort_key(row.get(field))


def select(
    rows: Iterable[Row],
    *,
    columns: set[str],
    fields: list[str],
    filters: Any,
    or_filters: Any,
    order_by: str,
    start: int,
    page_length: int,
    visible: Callable[[Row], bool] | None = None,
) -> list[Row]:
    """Rows matching `filters` (AND) and any of `or_filters`, sorted, paged, projected."""
    wanted = list(columns) if fields == ["*"] else fields
    for field in [*wanted, *(c[0] for c in conditions(filters) + conditions(or_filters))]:
        if field.rsplit(".", 1)[-1] not in columns:
            raise OperationalError(f"(1054, \"Unknown column '{field}' in 'field list'\")")
    must = conditions(filters)
    either = conditions(or_filters)
    hits = [
        row
        for row in rows
        if (visible is None or visible(row))
        and all(_test(row.get(f), op, v) for f, op, v in must)
        and (not either or any(_test(row.get(f), op, v) for f, op, v in either))
    ]
    for field, descending in reversed(_order(order_by)):  # stable sorts, last key first
        hits.sort(key=_by(field), reverse=descending)
    page = hits[start : start + page_length] if page_length > 0 else hits[start:]
    return [{f: row.get(f) for f in wanted} for row in page]
