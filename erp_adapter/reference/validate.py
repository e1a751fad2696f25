"""Input checks of the reference ERP: order data, stock alerts and write-backs."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal

from erp_adapter.reference.errors import InputError

Decision = Literal["approved", "rejected"]
_CENT = Decimal("0.01")
_MAX_TEXT = 512


def parse_json(raw: bytes) -> Any:
    """Decode a JSON request body; NaN and Infinity are refused."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not allowed")

    try:
        return json.loads(raw.decode("utf-8"), parse_constant=refuse)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"body is not valid JSON: {exc}") from None


def jsonable(data: dict[str, Any], loc: str) -> dict[str, Any]:
    """`data` itself, once it is known to serialise as JSON (Python callers may pass anything)."""
    try:
        json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{loc} must be plain JSON data: {exc}") from None
    return data


def obj(value: Any, loc: str) -> dict[str, Any]:
    """A JSON object, or an InputError naming where it was expected."""
    if not isinstance(value, dict):
        raise InputError(f"{loc} must be a JSON object")
    return value


def text(data: dict[str, Any], key: str, loc: str, *, required: bool = True) -> str | None:
    """A non-empty string field (stripped), or None when optional and absent."""
    value = data.get(key)
    if not required and (value is None or value == ""):
        return None
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{loc}.{key} must be a non-empty string")
    if len(value) > _MAX_TEXT:
        raise InputError(f"{loc}.{key} is longer than {_MAX_TEXT} characters")
    return value.strip()


def need(data: dict[str, Any], key: str, loc: str) -> str:
    """A required non-empty string field."""
    value = text(data, key, loc)
    assert value is not None
    return value


def decimal(data: dict[str, Any], key: str, loc: str, *, minimum: Decimal | None = None) -> Decimal:
    """A decimal-string field (never a JSON number), at least `minimum` when given."""
    value = data.get(key)
    if not isinstance(value, str):
        raise InputError(f'{loc}.{key} must be a decimal string such as "12.50"')
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        raise InputError(f'{loc}.{key} must be a decimal string such as "12.50"') from None
    if not number.is_finite():
        raise InputError(f"{loc}.{key} must be a finite number")
    if minimum is not None and number < minimum:
        raise InputError(f"{loc}.{key} must be at least {minimum}")
    return number


def integer(value: Any, loc: str) -> int:
    """A JSON integer (booleans refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{loc} must be an integer")
    return value


def _party(data: dict[str, Any], key: str, loc: str, id_key: str, *, required: bool) -> None:
    """Check a nested {id_key, name} object such as a supplier or a buyer."""
    if data.get(key) is None and not required:
        return
    party = obj(data.get(key), f"{loc}.{key}")
    need(party, id_key, f"{loc}.{key}")
    text(party, "name", f"{loc}.{key}", required=False)


def _line(raw: Any, index: int) -> dict[str, Any]:
    loc = f"lines[{index}]"
    line = dict(obj(raw, loc))
    line["line_no"] = integer(line.get("line_no", index + 1), f"{loc}.line_no")
    line["material_code"] = need(line, "material_code", loc)
    for key in ("material_name", "spec", "unit"):
        text(line, key, loc, required=False)
    quantity = decimal(line, "quantity", loc, minimum=Decimal(0))
    if quantity == 0:
        raise InputError(f"{loc}.quantity must be greater than 0")
    price = decimal(line, "unit_price", loc, minimum=Decimal(0))
    if line.get("tax_rate") is not None:
        decimal(line, "tax_rate", loc, minimum=Decimal(0))
    if line.get("amount") is None:
        line["amount"] = f"{(quantity * price).quantize(_CENT, ROUND_HALF_UP):f}"
    else:
        decimal(line, "amount", loc, minimum=Decimal(0))
    return line


def purchase_order(raw: Any, revision: int) -> dict[str, Any]:
    """A purchase order's data (CONTRACT §2) at `revision`; missing amounts are computed."""
    data = dict(obj(raw, "order"))
    if "revision" in data and integer(data["revision"], "order.revision") != revision:
        raise InputError(f"order.revision must be {revision} (or left out)")
    data["doc_no"] = need(data, "doc_no", "order")
    data["revision"] = revision
    _party(data, "buyer", "order", "erp_user", required=True)
    _party(data, "supplier", "order", "code", required=True)
    _party(data, "department", "order", "code", required=False)
    data["currency"] = text(data, "currency", "order", required=False) or "CNY"
    text(data, "remark", "order", required=False)
    expected = text(data, "expected_date", "order", required=False)
    if expected is not None:
        try:
            dt.date.fromisoformat(expected)
        except ValueError:
            raise InputError("order.expected_date must be an ISO date (YYYY-MM-DD)") from None
    lines = data.get("lines")
    if not isinstance(lines, list) or not lines:
        raise InputError("order.lines must be a non-empty list")
    data["lines"] = [_line(line, i) for i, line in enumerate(lines)]
    numbers = [line["line_no"] for line in data["lines"]]
    if len(set(numbers)) != len(numbers):
        raise InputError("order.lines have duplicate line_no values")
    if data.get("total_amount") is None:
        total = sum((Decimal(line["amount"]) for line in data["lines"]), Decimal(0))
        data["total_amount"] = f"{total:f}"
    else:
        decimal(data, "total_amount", "order", minimum=Decimal(0))
    return jsonable(data, "order")


def stock_alert(raw: Any) -> dict[str, Any]:
    """A `stock.below_safety` event's data (CONTRACT §2)."""
    data = dict(obj(raw, "alert"))
    data["material_code"] = need(data, "material_code", "alert")
    data["warehouse"] = need(data, "warehouse", "alert")
    for key in ("material_name", "unit"):
        text(data, key, "alert", required=False)
    on_hand = decimal(data, "on_hand", "alert")
    safety = decimal(data, "safety_stock", "alert", minimum=Decimal(0))
    if decimal(data, "reorder_qty", "alert", minimum=Decimal(0)) == 0:
        raise InputError("alert.reorder_qty must be greater than 0")
    if on_hand >= safety:
        raise InputError("alert.on_hand must be below alert.safety_stock")
    _party(data, "preferred_supplier", "alert", "code", required=False)
    _party(data, "requester", "alert", "erp_user", required=True)
    return jsonable(data, "alert")


@dataclass(frozen=True, slots=True)
class WriteBack:
    """The fields of a write-back (CONTRACT §3) that the reference ERP acts on."""

    approval_id: str
    doc_type: Literal["purchase_order", "replenishment"]
    doc_no: str
    revision: int | None
    decision: Decision
    material_code: str | None = None
    warehouse: str | None = None
    quantity: str | None = None


def write_back(raw: Any) -> WriteBack:
    """Check a write-back body; a replenishment must carry material, warehouse and quantity."""
    body = obj(raw, "body")
    doc_type = body.get("doc_type")
    if doc_type not in ("purchase_order", "replenishment"):
        raise InputError('body.doc_type must be "purchase_order" or "replenishment"')
    decision = body.get("decision")
    if decision not in ("approved", "rejected"):
        raise InputError('body.decision must be "approved" or "rejected"')
    decided_at = need(body, "decided_at", "body")
    try:
        aware = dt.datetime.fromisoformat(decided_at).utcoffset() is not None
    except ValueError:
        aware = False
    if not aware:
        raise InputError("body.decided_at must be an ISO date-time with a UTC offset")
    if body.get("approvers") is not None and not isinstance(body["approvers"], list):
        raise InputError("body.approvers must be a list")
    revision = body.get("revision")
    if doc_type == "purchase_order" or revision is not None:
        revision = integer(revision, "body.revision")
    approval_id = need(body, "approval_id", "body")
    doc_no = need(body, "doc_no", "body")
    if doc_type == "purchase_order":
        return WriteBack(approval_id, "purchase_order", doc_no, revision, decision)
    if decimal(body, "quantity", "body", minimum=Decimal(0)) == 0:
        raise InputError("body.quantity must be greater than 0")
    return WriteBack(
        approval_id,
        "replenishment",
        doc_no,
        revision,
        decision,
        material_code=need(body, "material_code", "body"),
        warehouse=need(body, "warehouse", "body"),
        quantity=body["quantity"].strip(),
    )
