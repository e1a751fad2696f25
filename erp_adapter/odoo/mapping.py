"""Pure translations between Odoo's wire values and the bridge's types."""

from __future__ import annotations

import datetime as dt
import html
import re
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from typing import Any

from erp_adapter.native.base import Cursor, OrderStatus

KEY_WIDTH = 12
"""Cursor keys are zero-padded ids, so their string order is Odoo's numeric id order."""

_STATUS = {
    "draft": OrderStatus.OPEN,
    "sent": OrderStatus.OPEN,
    "to approve": OrderStatus.PENDING,
    "purchase": OrderStatus.APPROVED,
    "done": OrderStatus.APPROVED,  # "Locked" up to 18.0; 18.3+/19 keep `purchase` + `locked`
    "cancel": OrderStatus.REJECTED,
}
_SCALE = Decimal("0.000001")
_TAG = re.compile(r"<[^>]+>")
_BREAK = re.compile(r"<\s*(br|/p|/div|/li)\b[^>]*>", re.IGNORECASE)


def encode_key(record_id: int) -> str:
    """The cursor key of an Odoo id."""
    return f"{record_id:0{KEY_WIDTH}d}"


def decode_key(key: str) -> int:
    """The Odoo id in a cursor key (`""` is before every id; `<id>/<material>` keeps the id)."""
    head = key.split("/", 1)[0]
    return int(head) if head.strip() else 0


def status(state: str) -> OrderStatus:
    """The bridge's view of a `purchase.order.state`."""
    return _STATUS.get(state, OrderStatus.OPEN)


def parse_utc(value: Any) -> dt.datetime | None:
    """An Odoo datetime (`YYYY-MM-DD HH:MM:SS`, UTC) as an aware datetime; None for `false`."""
    if not value:
        return None
    return dt.datetime.strptime(str(value)[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)


def to_odoo(moment: dt.datetime) -> str:
    """An aware datetime as Odoo's UTC string (whole seconds: Odoo reports no fractions)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def second(moment: dt.datetime) -> dt.datetime:
    """The UTC second a moment falls in."""
    return moment.astimezone(dt.UTC).replace(microsecond=0)


def after_domain(after: Cursor) -> list[Any]:
    """Rows whose (write second, id) is after the cursor.

    Odoo stores `write_date` with microseconds but reports whole seconds, so a row written at
    12:00:00.5 compares greater than '12:00:00': the tie-break is on the whole second.
    """
    start = second(after[0])
    end = start + dt.timedelta(seconds=1)
    return [
        "|",
        ("write_date", ">=", to_odoo(end)),
        "&",
        "&",
        ("write_date", ">=", to_odoo(start)),
        ("write_date", "<", to_odoo(end)),
        ("id", ">", decode_key(after[1])),
    ]


def decimal(value: Any) -> Decimal:
    """An Odoo number (a JSON float) as an exact decimal, via its shortest text."""
    if value is None or value is False:
        return Decimal(0)
    return tidy(Decimal(str(value)))


def tidy(value: Decimal) -> Decimal:
    """Rounded to 6 places, without trailing zeros or an exponent."""
    rounded = value.quantize(_SCALE, rounding=ROUND_HALF_EVEN).normalize()
    return rounded.quantize(Decimal(1)) if rounded == rounded.to_integral() else rounded


def ceil_to(value: Decimal, multiple: Decimal) -> Decimal:
    """`value` rounded up to a multiple (Odoo's `qty_multiple`); never negative."""
    if value <= 0:
        return Decimal(0)
    if multiple <= 0:
        return tidy(value)
    return tidy((value / multiple).to_integral_value(rounding=ROUND_CEILING) * multiple)


def many2one(value: Any) -> tuple[int, str] | None:
    """`[id, display_name]` as a tuple; None for `false`."""
    if isinstance(value, list) and len(value) == 2:
        return int(value[0]), str(value[1])
    if isinstance(value, int) and not isinstance(value, bool) and value:
        return value, ""
    return None


def text(value: Any) -> str:
    """A char/text/html field as plain text (`false` is empty)."""
    if not value or not isinstance(value, str):
        return ""
    plain = _TAG.sub("", _BREAK.sub("\n", value))
    return "\n".join(line.strip() for line in html.unescape(plain).splitlines()).strip()
