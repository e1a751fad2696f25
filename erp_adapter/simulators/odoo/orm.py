"""An in-memory Odoo database: records, access rights, and the generic ORM methods over RPC."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from erp_adapter.simulators.odoo import domain as domains
from erp_adapter.simulators.odoo import schema
from erp_adapter.simulators.odoo.errors import AccessError, BadCall, MissingError, UserError

Record = dict[str, Any]

GROUP_USER = "base.group_user"
GROUP_PURCHASE_USER = "purchase.group_purchase_user"
GROUP_PURCHASE_MANAGER = "purchase.group_purchase_manager"
GROUP_STOCK_USER = "stock.group_stock_user"
GROUP_LABELS = {
    GROUP_USER: "Role / User",
    GROUP_PURCHASE_USER: "Purchase / User",
    GROUP_PURCHASE_MANAGER: "Purchase / Administrator",
    GROUP_STOCK_USER: "Inventory / User",
}
IMPLIED = {GROUP_PURCHASE_MANAGER: (GROUP_PURCHASE_USER,)}

# (read, write/create) groups per model; models not listed are readable by every internal user.
ACCESS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "purchase.order": ((GROUP_PURCHASE_USER,), (GROUP_PURCHASE_USER,)),
    "purchase.order.line": ((GROUP_PURCHASE_USER,), (GROUP_PURCHASE_USER,)),
    "stock.warehouse.orderpoint": ((GROUP_STOCK_USER, GROUP_PURCHASE_USER), (GROUP_STOCK_USER,)),
    "mail.message": ((GROUP_USER,), (GROUP_USER,)),
}


@dataclass
class Store:
    """Every table of the simulated database, and its clock."""

    version: int
    clock: Callable[[], dt.datetime]
    tables: dict[str, dict[int, Record]] = field(default_factory=dict)
    next_id: dict[str, int] = field(default_factory=dict)
    xmlids: dict[str, int] = field(default_factory=dict)
    """Group external ids -> ids of `res.groups`."""
    default_taxes: list[int] = field(default_factory=list)
    """Taxes new purchase lines get (the company's default purchase tax)."""

    def fields(self, model: str) -> dict[str, schema.Field]:
        """The model's fields on this version; an unknown model is Odoo's UserError."""
        try:
            return schema.fields_for(model, self.version)
        except KeyError:
            raise UserError(f"Object {model} doesn't exist") from None

    def table(self, model: str) -> dict[int, Record]:
        """The rows of a model (created empty on first use)."""
        self.fields(model)
        return self.tables.setdefault(model, {})

    def insert(self, model: str, values: Record, now: dt.datetime) -> int:
        """A new row with its id and access-log timestamps."""
        table = self.table(model)
        new_id = self.next_id.get(model, 1)
        self.next_id[model] = new_id + 1
        table[new_id] = {"id": new_id, "create_date": now, "write_date": now} | values
        return new_id

    def get(self, model: str, record_id: int) -> Record:
        """One row, or Odoo's MissingError."""
        row = self.table(model).get(record_id)
        if row is None:
            label = schema.MODEL_LABELS.get(model, model)
            raise MissingError(
                f"Record does not exist or has been deleted.\n(Record: {model}({record_id},), "
                f"User: {label})"
            )
        return row

    def value(self, model: str, row: Record, name: str) -> Any:
        """A field's internal value (ids for relations, Decimal for numbers, None when empty)."""
        if name == "display_name":
            return self.display_name(model, row)
        if model == "purchase.order.line" and name in _LINE_RELATED:
            return self.get("purchase.order", row["order_id"]).get(_LINE_RELATED[name])
        if model == "product.product" and name == "seller_ids":
            sellers = self.table("product.supplierinfo").values()
            return [s["id"] for s in sellers if s.get("product_id") == row["id"]]
        if model == "stock.warehouse.orderpoint" and name == "qty_to_order":
            return _qty_to_order(row)
        return row.get(name)

    def display_name(self, model: str, row: Record) -> str:
        """What Odoo shows for a record in a many2one."""
        if model == "product.product" and row.get("default_code"):
            return f"[{row['default_code']}] {row['name']}"
        if model == "stock.picking.type" and row.get("warehouse_id"):
            warehouse = self.get("stock.warehouse", row["warehouse_id"])
            return f"{warehouse['name']}: {row['name']}"
        if model == "purchase.order.line":
            return f"{self.get('purchase.order', row['order_id'])['name']} - {row.get('name')}"
        return str(row.get("name") or f"{model},{row['id']}")

    def resolve(self, model: str) -> domains.Resolve:
        """A field reader for domains on `model`, following dotted many2one paths."""

        def read(row: Record, path: str) -> Any:
            head, _, rest = path.partition(".")
            spec = self.fields(model).get(head)
            if spec is None:
                raise BadCall("ValueError", f"Invalid field {model}.{head} in leaf {path!r}")
            value = self.value(model, row, head)
            if not rest:
                return value
            if spec.type != "many2one" or not value:
                return None
            return self.resolve(spec.relation)(self.get(spec.relation, value), rest)

        return read


_LINE_RELATED = {
    "partner_id": "partner_id",
    "state": "state",
    "date_order": "date_order",
    "date_approve": "date_approve",
    "currency_id": "currency_id",
}


def _qty_to_order(row: Record) -> Decimal:
    forecast = row.get("qty_forecast") or Decimal(0)
    if forecast >= (row.get("product_min_qty") or Decimal(0)):
        return Decimal(0)
    missing = (row.get("product_max_qty") or Decimal(0)) - forecast
    multiple = row.get("qty_multiple") or Decimal(1)
    return -(-missing // multiple) * multiple if multiple > 0 else missing


def render(store: Store, model: str, row: Record, name: str, *, classic_write: bool) -> Any:
    """A field's value on the wire: `[id, name]` for many2one, `false` when empty, UTC strings."""
    spec = store.fields(model)[name]
    value = store.value(model, row, name)
    if spec.type == "many2one":
        if not value:
            return False
        if classic_write:
            return value
        return [value, store.display_name(spec.relation, store.get(spec.relation, value))]
    if spec.type in ("one2many", "many2many"):
        return list(value or [])
    if value is None:
        return 0.0 if spec.type in ("float", "monetary") else False
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")  # Odoo drops the microseconds it stores
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


@dataclass
class Env:
    """One call: the database, the calling user, and the instant of its transaction."""

    store: Store
    uid: int
    now: dt.datetime

    def groups(self) -> set[str]:
        """External ids of the user's groups, implied ones included."""
        user = self.store.get("res.users", self.uid)
        names = {xmlid for xmlid, gid in self.store.xmlids.items() if gid in user["groups"]}
        for group in list(names):
            names.update(IMPLIED.get(group, ()))
        return names

    def check(self, model: str, mode: str) -> None:
        """Raise Odoo's AccessError when the user may not `read`/`write`/`create` the model."""
        rule = ACCESS.get(model)
        if rule is None:
            if mode != "read" and model not in ("purchase.order", "mail.message"):
                allowed: tuple[str, ...] = ("base.group_system",)
            else:
                return
        else:
            allowed = rule[0] if mode == "read" else rule[1]
        if self.groups() & set(allowed):
            return
        label = schema.MODEL_LABELS.get(model, model)
        verb = {"read": "access", "write": "modify", "create": "create"}.get(mode, mode)
        groups = "\n".join(f"\t- {GROUP_LABELS.get(g, g)}" for g in allowed)
        raise AccessError(
            f"You are not allowed to {verb} '{label}' ({model}) records.\n\n"
            f"This operation is allowed for the following groups:\n{groups}\n\n"
            "Contact your administrator to request access if necessary."
        )


def _order_key(store: Store, model: str, order: str | None) -> Callable[[Record], Any]:
    terms: list[tuple[str, bool]] = []
    for part in (order or "id").split(","):
        words = part.split()
        if not words:
            continue
        if words[0] not in store.fields(model):
            raise BadCall("ValueError", f"Invalid field {words[0]!r} on model {model!r}")
        terms.append((words[0], len(words) > 1 and words[1].lower() == "desc"))
    if not any(name == "id" for name, _ in terms):
        terms.append(("id", False))

    def key(row: Record) -> Any:
        parts = []
        for name, desc in terms:
            value = store.value(model, row, name)
            # NULLs sort last ascending, as PostgreSQL does.
            parts.append(_Sortable(value, desc))
        return parts

    return key


class _Sortable:
    """A value that sorts with NULLs last and an optional reversal."""

    def __init__(self, value: Any, desc: bool) -> None:
        self.value, self.desc = value, desc

    def __lt__(self, other: _Sortable) -> bool:
        a, b = self.value, other.value
        if a is None or b is None:
            return (a is not None) if not self.desc else (a is None and b is not None)
        return bool(a > b) if self.desc else bool(a < b)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Sortable) and self.value == other.value

    __hash__ = None  # type: ignore[assignment]


def search(
    env: Env,
    model: str,
    domain: Sequence[Any] | None = None,
    offset: int = 0,
    limit: int | None = None,
    order: str | None = None,
    count: bool = False,
) -> list[int] | int:
    """`search`: ids matching a domain, sorted, paged."""
    env.check(model, "read")
    store = env.store
    resolve = store.resolve(model)
    try:
        rows = [r for r in store.table(model).values() if _active(store, model, r, domain)]
        rows = [r for r in rows if domains.matches(r, domain or [], resolve)]
    except domains.DomainError as exc:
        raise BadCall("ValueError", str(exc)) from None
    if count:
        return len(rows)
    rows.sort(key=_order_key(store, model, order or None))
    rows = rows[int(offset or 0) :]
    if limit:
        rows = rows[: int(limit)]
    return [r["id"] for r in rows]


def _active(store: Store, model: str, row: Record, domain: Sequence[Any] | None) -> bool:
    """Archived records are hidden unless the domain mentions `active`."""
    if "active" not in store.fields(model):
        return True
    mentions = any(isinstance(t, list | tuple) and t and t[0] == "active" for t in domain or [])
    return mentions or row.get("active", True) is not False


def read(
    env: Env,
    model: str,
    ids: Sequence[int] | int,
    fields: Sequence[str] | None = None,
    load: str = "_classic_read",
) -> list[Record]:
    """`read`: the records' fields as Odoo serialises them."""
    env.check(model, "read")
    store = env.store
    specs = store.fields(model)
    names = list(fields or [])
    for name in names:
        if name not in specs:
            raise BadCall("ValueError", f"Invalid field {name!r} on model {model!r}")
    if not names:
        names = [n for n in specs if n != "id"]
    id_list = [ids] if isinstance(ids, int) else list(ids)
    result = []
    for record_id in id_list:
        row = store.get(model, record_id)
        values: Record = {"id": record_id}
        for name in names:
            if name != "id":
                values[name] = render(
                    store, model, row, name, classic_write=load == "_classic_write"
                )
        result.append(values)
    return result


def search_read(
    env: Env,
    model: str,
    domain: Sequence[Any] | None = None,
    fields: Sequence[str] | None = None,
    offset: int = 0,
    limit: int | None = None,
    order: str | None = None,
) -> list[Record]:
    """`search_read`: search then read, in the search's order."""
    ids = search(env, model, domain, offset, limit, order)
    assert isinstance(ids, list)
    return read(env, model, ids, fields)


def fields_get(
    env: Env,
    model: str,
    allfields: Sequence[str] | None = None,
    attributes: Sequence[str] | None = None,
) -> dict[str, Record]:
    """`fields_get`: the model's field definitions."""
    result: dict[str, Record] = {}
    for name, spec in env.store.fields(model).items():
        if allfields and name not in allfields:
            continue
        full: Record = {
            "type": spec.type,
            "string": spec.string,
            "readonly": spec.readonly,
            "required": False,
            "searchable": True,
            "sortable": True,
        }
        if spec.relation:
            full["relation"] = spec.relation
        if spec.selection:
            full["selection"] = [list(item) for item in spec.selection]
        result[name] = {k: v for k, v in full.items() if not attributes or k in attributes}
    return result
