"""ExecuteBillQuery / BillQuery: select, filter, sort and page rows of a form."""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal
from typing import Any

from erp_adapter.simulators.kingdee.filter import FilterError, Row, parse_filter, parse_order
from erp_adapter.simulators.kingdee.model import OpError, Store
from erp_adapter.simulators.kingdee.rows import canonical_form, flat_rows, known_fields

MAX_LIMIT = 10000
"""The server never returns more rows than this in one call, whatever Limit says."""


def get_key(data: dict[str, Any], name: str, default: Any = None) -> Any:
    """A request key, matched case-insensitively as the server's JSON binder does."""
    for key, value in data.items():
        if key.lower() == name.lower():
            return value
    return default


def run_query(store: Store, data: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """(field keys as asked, rows in FieldKeys order); OpError on a bad form or field."""
    form_id = str(get_key(data, "FormId", "") or "")
    form = canonical_form(form_id)
    if form is None:
        raise OpError(f"业务对象“{form_id}”不存在", 9)
    head, entry = known_fields(store, form)
    fields_raw = str(get_key(data, "FieldKeys", "") or "")
    keys = [k.strip() for k in fields_raw.split(",") if k.strip()]
    if not keys:
        raise OpError("FieldKeys 不能为空", 8)

    def known(name: str) -> bool:
        return name in head or name in entry

    for key in keys:
        if not known(key.lower()):
            raise OpError(f"字段“{key}”不存在", 9, key)
    try:
        predicate, filter_fields = parse_filter(str(get_key(data, "FilterString", "") or ""), known)
        order = parse_order(str(get_key(data, "OrderString", "") or ""), known)
    except FilterError as exc:
        raise OpError(str(exc), 9) from None
    touched = {k.lower() for k in keys} | filter_fields | {f for f, _ in order}
    rows = [r for r in flat_rows(store, form, bool(touched & entry)) if predicate(r)]
    for field, descending in reversed(order):
        rows.sort(key=functools.partial(_sort_key, field), reverse=descending)
    start = max(0, int(get_key(data, "StartRow", 0) or 0))
    limit = int(get_key(data, "Limit", 0) or 0)
    top = int(get_key(data, "TopRowCount", 0) or 0)
    if top > 0:
        rows = rows[:top]
    limit = MAX_LIMIT if limit <= 0 or limit > MAX_LIMIT else limit
    page = rows[start : start + limit]
    return keys, [[_json_value(r.get(k.lower())) for k in keys] for r in page]


def _sort_key(field: str, row: Row) -> tuple[int, Any]:
    # SQL Server sorts NULL first in ascending order.
    value = row.get(field)
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, int(value))
    return (1, value)


def _json_value(value: Any) -> Any:
    """As the .NET serializer writes it: dates ISO without zone, trailing zero digits dropped."""
    if isinstance(value, dt.datetime):
        text = value.strftime("%Y-%m-%dT%H:%M:%S")
        if value.microsecond:
            text += f".{value.microsecond:06d}".rstrip("0")
        return text
    if isinstance(value, Decimal):
        number = float(value)  # JSON numbers, as the real server sends them
        return int(number) if number.is_integer() else number
    return value


def as_dicts(keys: list[str], rows: list[list[Any]]) -> list[Row]:
    """BillQuery's shape: one object per row keyed by the field keys as asked."""
    return [dict(zip(keys, row, strict=True)) for row in rows]
