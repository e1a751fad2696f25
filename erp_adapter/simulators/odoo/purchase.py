"""Purchase orders in the simulated Odoo: creation, amounts, and the `button_*` state machine."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from erp_adapter.simulators.odoo.errors import BadCall, UserError
from erp_adapter.simulators.odoo.orm import GROUP_PURCHASE_MANAGER, Env, Record

_CENT = Decimal("0.01")


def _money(value: Decimal) -> Decimal:
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def uom_field(env: Env) -> str:
    """`product_uom` up to 18.0, `product_uom_id` from saas-18.1 / 19 (odoo/odoo#186250)."""
    return "product_uom_id" if env.store.version >= 19 else "product_uom"


def create_order(env: Env, vals: Record) -> int:
    """`purchase.order.create`: an RFQ (draft) with its lines, amounts computed."""
    env.check("purchase.order", "create")
    store = env.store
    vals = dict(vals)
    line_cmds = vals.pop("order_line", [])
    _check_fields(env, "purchase.order", vals)
    if not vals.get("partner_id"):
        raise UserError("The operation cannot be completed: Missing required field 'Vendor'")
    company = store.get("res.company", int(vals.get("company_id") or 1))
    count = store.next_id.get("purchase.order", 1)
    row: Record = {
        "name": f"P{count:05d}",
        "state": "draft",
        "date_order": env.now,
        "company_id": company["id"],
        "currency_id": company["currency_id"],
        "user_id": env.uid,
        "picking_type_id": _default_picking_type(env),
        "notes": None,
        "invoice_status": "no",
    }
    if store.version >= 19:
        row["locked"] = False
    row |= {k: _internal(env, "purchase.order", k, v) for k, v in vals.items()}
    order_id = store.insert("purchase.order", row, env.now)
    store.get("purchase.order", order_id)["order_line"] = []
    _apply_lines(env, order_id, line_cmds)
    recompute(env, order_id)
    return order_id


def write_order(env: Env, ids: Sequence[int], vals: Record) -> bool:
    """`purchase.order.write`: fields and `order_line` commands; bumps `write_date`."""
    env.check("purchase.order", "write")
    vals = dict(vals)
    line_cmds = vals.pop("order_line", [])
    _check_fields(env, "purchase.order", vals)
    for order_id in ids:
        row = env.store.get("purchase.order", order_id)
        state_before = row["state"]
        row.update({k: _internal(env, "purchase.order", k, v) for k, v in vals.items()})
        row["write_date"] = env.now
        _apply_lines(env, order_id, line_cmds)
        recompute(env, order_id)
        if row["state"] != state_before:  # the lines' stored related `state` is recomputed
            for line_id in row["order_line"]:
                env.store.get("purchase.order.line", line_id)["write_date"] = env.now
    return True


def _check_fields(env: Env, model: str, vals: Record) -> None:
    specs = env.store.fields(model)
    for name in vals:
        if name not in specs:
            raise BadCall("ValueError", f"Invalid field {name!r} on model {model!r}")


def _internal(env: Env, model: str, name: str, value: Any) -> Any:
    """A value from the wire in the store's types."""
    spec = env.store.fields(model)[name]
    if value is False and spec.type != "boolean":
        return None
    if spec.type in ("float", "monetary"):
        return _decimal(value)
    if spec.type == "many2many":
        ids: list[int] = []
        for command in value:  # [(6, 0, ids)] or [(4, id)]
            if command[0] == 6:
                ids = [int(i) for i in command[2]]
            elif command[0] == 4:
                ids.append(int(command[1]))
        return ids
    if spec.type == "datetime" and isinstance(value, str):
        return dt.datetime.strptime(value[:19], "%Y-%m-%d %H:%M:%S")  # noqa: DTZ007 naive UTC
    return value


def _default_picking_type(env: Env) -> int | None:
    warehouses = sorted(env.store.table("stock.warehouse").values(), key=lambda w: w["id"])
    return warehouses[0].get("in_type_id") if warehouses else None


def _apply_lines(env: Env, order_id: int, commands: Sequence[Any]) -> None:
    store = env.store
    order = store.get("purchase.order", order_id)
    for command in commands or []:
        kind = command[0]
        if kind == 0:
            order["order_line"].append(_create_line(env, order_id, dict(command[2])))
        elif kind == 1:
            line = store.get("purchase.order.line", int(command[1]))
            _check_fields(env, "purchase.order.line", command[2])
            for key, value in command[2].items():
                line[key] = _internal(env, "purchase.order.line", key, value)
            line["write_date"] = env.now
        elif kind == 2:
            store.table("purchase.order.line").pop(int(command[1]), None)
            order["order_line"].remove(int(command[1]))
        else:
            raise BadCall("ValueError", f"Unsupported x2many command {command!r}")


def _create_line(env: Env, order_id: int, vals: Record) -> int:
    store = env.store
    _check_fields(env, "purchase.order.line", vals)
    product = store.get("product.product", int(vals["product_id"]))
    order = store.get("purchase.order", order_id)
    sellers = [
        s
        for s in store.table("product.supplierinfo").values()
        if s["product_id"] == product["id"] and s["partner_id"] == order["partner_id"]
    ]
    description = store.display_name("product.product", product)
    if product.get("description_purchase"):
        description += "\n" + product["description_purchase"]
    row: Record = {
        "order_id": order_id,
        "sequence": 10,
        "name": description,
        "product_qty": Decimal(1),
        uom_field(env): product.get("uom_po_id") or product.get("uom_id"),
        # price_unit is computed from the vendor's pricelist when not given
        "price_unit": sellers[0]["price"] if sellers else Decimal(0),
        "discount": Decimal(0),
        "taxes_id": list(store.default_taxes),
        "date_planned": order.get("date_planned") or env.now,
        "display_type": None,
    }
    row |= {k: _internal(env, "purchase.order.line", k, v) for k, v in vals.items()}
    return store.insert("purchase.order.line", row, env.now)


def recompute(env: Env, order_id: int) -> None:
    """Line subtotals, taxes and totals, and the order's amounts (currency-rounded)."""
    store = env.store
    order = store.get("purchase.order", order_id)
    untaxed = tax_total = Decimal(0)
    for line_id in order["order_line"]:
        line = store.get("purchase.order.line", line_id)
        base = line["product_qty"] * line["price_unit"] * (1 - line["discount"] / 100)
        rate = sum((store.get("account.tax", t)["amount"] for t in line["taxes_id"]), Decimal(0))
        line["price_subtotal"] = _money(base)
        line["price_tax"] = _money(base * rate / 100)
        line["price_total"] = line["price_subtotal"] + line["price_tax"]
        line["product_uom_qty"] = line["product_qty"]
        untaxed += line["price_subtotal"]
        tax_total += line["price_tax"]
    order["amount_untaxed"], order["amount_tax"] = untaxed, tax_total
    planned = [store.get("purchase.order.line", i)["date_planned"] for i in order["order_line"]]
    order["date_planned"] = min((p for p in planned if p), default=None)  # stored compute
    order["amount_total"] = untaxed + tax_total


def approval_allowed(env: Env, order: Record) -> bool:
    """`_approval_allowed`: one step, or two steps under the threshold, or a Purchase Manager."""
    company = env.store.get("res.company", order["company_id"])
    return (
        company["po_double_validation"] == "one_step"
        or (
            company["po_double_validation"] == "two_step"
            and order["amount_total"] < company["po_double_validation_amount"]
        )
        or GROUP_PURCHASE_MANAGER in env.groups()
    )


def button_confirm(env: Env, ids: Sequence[int]) -> bool:
    """Draft/sent -> purchase, or `to approve` when the user may not approve it."""
    env.check("purchase.order", "write")
    for order_id in ids:
        order = env.store.get("purchase.order", order_id)
        if order["state"] not in ("draft", "sent"):
            continue
        if approval_allowed(env, order):
            button_approve(env, [order_id])
        else:
            write_order(env, [order_id], {"state": "to approve"})
    return True


def button_approve(env: Env, ids: Sequence[int], force: bool = False) -> dict[str, Any]:
    """-> purchase (then locked per `po_lock`); silently skips orders the user may not approve."""
    env.check("purchase.order", "write")
    store = env.store
    allowed = [i for i in ids if approval_allowed(env, store.get("purchase.order", i))]
    write_order(
        env, allowed, {"state": "purchase", "date_approve": env.now.strftime("%Y-%m-%d %H:%M:%S")}
    )
    for order_id in allowed:
        order = store.get("purchase.order", order_id)
        if store.get("res.company", order["company_id"])["po_lock"] == "lock":
            locked = {"locked": True} if store.version >= 19 else {"state": "done"}
            write_order(env, [order_id], locked)
    return {}


def button_cancel(env: Env, ids: Sequence[int]) -> None:
    """-> cancel; refuses locked orders on 19 (UserError). Returns None (XML-RPC cannot say it)."""
    env.check("purchase.order", "write")
    for order_id in ids:
        order = env.store.get("purchase.order", order_id)
        if order.get("locked") or order.get("bills_posted"):
            raise UserError(
                f"Unable to cancel purchase order(s): {order['name']}. "
                "You must first unlock them or cancel the related vendor bills."
            )
    write_order(env, ids, {"state": "cancel"})


def button_draft(env: Env, ids: Sequence[int]) -> dict[str, Any]:
    """-> draft (an RFQ again)."""
    write_order(env, ids, {"state": "draft"})
    return {}


def message_post(
    env: Env,
    ids: Sequence[int],
    body: str = "",
    message_type: str = "notification",
    subtype_xmlid: str | None = None,
    **_ignored: Any,
) -> int:
    """A chatter message on one record; a plain-text body is escaped as Odoo 17+ does."""
    if len(ids) != 1:
        raise BadCall("ValueError", f"Expected singleton: purchase.order{tuple(ids)!r}")
    env.check("purchase.order", "read")
    order = env.store.get("purchase.order", ids[0])
    user = env.store.get("res.users", env.uid)
    return env.store.insert(
        "mail.message",
        {
            "name": "",
            "model": "purchase.order",
            "res_id": order["id"],
            "body": f"<p>{html.escape(str(body))}</p>",
            "message_type": message_type,
            "subtype_xmlid": subtype_xmlid,
            "author_id": user.get("partner_id"),
        },
        env.now,
    )
