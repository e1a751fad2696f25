"""The simulated ERPNext site: documents, users and roles, naming, the clock, plain CRUD."""

from __future__ import annotations

import copy
import datetime as dt
import secrets
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from erp_adapter.simulators.erpnext import schema
from erp_adapter.simulators.erpnext.errors import (
    DoesNotExistError,
    PermissionError,
    TimestampMismatchError,
    ValidationError,
)
from erp_adapter.simulators.erpnext.query import DEFAULT_PAGE, Row, json_param, select

Doc = dict[str, Any]
ADMIN = "Administrator"


def coerce(field: str, value: Any) -> Any:
    """A value from a client in the type the database column holds."""
    if value is None or value == "":
        return value
    if field in schema.NUMERIC:
        return Decimal(str(value))
    if field in schema.INTEGER:
        return int(value)
    if field in schema.DATES:
        return dt.date.fromisoformat(str(value)[:10])
    if field in schema.DATETIMES:
        return dt.datetime.fromisoformat(str(value))
    return value


def to_json(value: Any) -> Any:
    """Frappe's `json_handler`: numbers as floats, dates and datetimes as `str()`."""
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.date):  # datetime too: "2026-11-25 10:00:00.123456", no zone
        return str(value)
    return value


class Site:
    """One ERPNext site held in memory; times are site-local and naive, as Frappe keeps them."""

    def __init__(self, timezone: str = "Asia/Shanghai") -> None:
        self.tz = ZoneInfo(timezone)
        self.docs: dict[str, dict[str, Doc]] = {}
        self.custom: dict[str, set[str]] = {}
        self.perms = copy.deepcopy(schema.DEFAULT_PERMS)
        self.secrets: dict[str, dict[str, str]] = {}
        self.frozen: dt.datetime | None = None
        self.counters: dict[str, int] = {}
        self.on_change: list[Callable[[str, Doc], None]] = []

    def now(self) -> dt.datetime:
        """Site-local wall time (naive), or the frozen instant tests set."""
        return self.frozen or dt.datetime.now(self.tz).replace(tzinfo=None)

    def table(self, doctype: str) -> dict[str, Doc]:
        """The stored documents of a doctype by name."""
        return self.docs.setdefault(doctype, {})

    # -- users and permissions -------------------------------------------------------------
    def add_user(self, name: str, username: str, full_name: str, roles: set[str]) -> Doc:
        """A User with roles; keys and passwords live apart from the document."""
        doc = self._new("User", name, ADMIN)
        doc.update(email=name, username=username, full_name=full_name, enabled=1)
        doc.update(first_name=full_name.split(" ")[0], user_type="System User", api_key=None)
        doc["roles"] = [self._child(doc, "roles", i, {"role": r}) for i, r in enumerate(roles)]
        self.table("User")[name] = doc
        return doc

    def roles(self, user: str) -> set[str]:
        """The user's roles, with the automatic ones (All, Guest)."""
        if user == ADMIN:
            return {"Administrator", "System Manager", "All", "Guest"}
        if user == "Guest":
            return {"Guest"}
        doc = self.table("User").get(user)
        own = {row["role"] for row in doc["roles"]} if doc else set()
        return own | {"All", "Guest"}

    def can(self, user: str, doctype: str, ptype: str) -> bool:
        """Whether a role of the user grants `ptype` on the doctype."""
        roles = self.roles(user)
        if "System Manager" in roles and user != "Guest":
            return True
        return bool(self.perms.get(doctype, {}).get(ptype, set()) & roles)

    def require(self, user: str, doctype: str, ptype: str) -> None:
        """Raise Frappe's PermissionError unless the user may."""
        if not self.can(user, doctype, ptype):
            raise PermissionError(
                f"User {user} does not have doctype access via role permission "
                f"for document {doctype}"
                if ptype == "read"
                else f"No permission to {ptype} {doctype}"
            )

    # -- reading ---------------------------------------------------------------------------
    def get(self, doctype: str, name: str) -> Doc:
        """One stored document; DoesNotExistError as Frappe words it."""
        if not schema.known(doctype):
            raise DoesNotExistError(f"DocType {doctype} not found")
        doc = self.table(doctype).get(name)
        if doc is None:
            raise DoesNotExistError(f"{doctype} {name} not found")
        return doc

    def read(self, user: str, doctype: str, name: str) -> Doc:
        """`GET /api/resource/<doctype>/<name>`: a user may always read their own User."""
        doc = self.get(doctype, name)
        if not (doctype == "User" and name == user):
            self.require(user, doctype, "read")
        return doc

    def get_list(self, user: str, doctype: str, params: dict[str, Any]) -> list[Row]:
        """`frappe.client.get_list` with Frappe's parameters (JSON text or values)."""
        if not schema.known(doctype):
            raise DoesNotExistError(f"DocType {doctype} not found")
        parent = params.get("parent")
        if doctype in schema.CHILD_OF:
            # frappe.client.check_parent_permission: child rows only through a readable parent
            if (
                not parent
                or schema.CHILD_OF[doctype] != parent
                or not self.can(user, parent, "read")
            ):
                raise PermissionError("Parent is required and must be readable")
            rows: list[Row] = [
                child
                for doc in self.table(parent).values()
                for field, kind in schema.TABLES[parent].items()
                if kind == doctype
                for child in doc.get(field, [])
            ]
        else:
            self.require(user, doctype, "read")
            rows = list(self.table(doctype).values())
        length = params.get("limit_page_length", params.get("limit", DEFAULT_PAGE))
        return select(
            rows,
            columns=schema.columns(doctype, self.custom),
            fields=[str(f) for f in json_param(params.get("fields"), ["name"])],
            filters=json_param(params.get("filters"), []),
            or_filters=json_param(params.get("or_filters"), []),
            order_by=str(params.get("order_by") or "modified desc"),
            start=int(params.get("limit_start") or 0),
            page_length=int(length or 0),
        )

    # -- writing ---------------------------------------------------------------------------
    def _new(self, doctype: str, name: str, user: str) -> Doc:
        now = self.now()
        doc: Doc = dict.fromkeys(schema.columns(doctype, self.custom))
        doc.update(name=name, owner=user, creation=now, modified=now, modified_by=user)
        doc.update(docstatus=0, idx=0, doctype=doctype)
        return doc

    def _child(self, parent: Doc, field: str, index: int, values: Doc) -> Doc:
        kind = schema.TABLES[parent["doctype"]][field]
        row: Doc = dict.fromkeys(schema.columns(kind, self.custom))
        row.update({k: coerce(k, v) for k, v in values.items() if k in row})
        row.update(name=secrets.token_hex(5), parent=parent["name"], doctype=kind)
        row.update(parenttype=parent["doctype"], parentfield=field, idx=index + 1)
        row.update(docstatus=parent["docstatus"], owner=parent["owner"])
        row["creation"] = parent["creation"]
        return row

    def next_name(self, doctype: str) -> str:
        """The next name of a naming series, e.g. PUR-ORD-2026-00001; else a hash (Comment)."""
        if doctype not in schema.NAMING:
            return secrets.token_hex(5)
        prefix = schema.NAMING[doctype].replace(".YYYY.", str(self.now().year))
        self.counters[prefix] = self.counters.get(prefix, 0) + 1
        return f"{prefix}{self.counters[prefix]:05d}"

    def create(self, user: str, doctype: str, data: Doc, name: str | None = None) -> Doc:
        """A new document with its child rows, not yet validated or saved by a controller."""
        doc = self._new(doctype, name or self.next_name(doctype), user)
        for key, value in data.items():
            if key in schema.TABLES.get(doctype, {}):
                if not isinstance(value, list):
                    raise ValidationError(f"{key} must be a list")
                doc[key] = [self._child(doc, key, i, dict(v)) for i, v in enumerate(value)]
            elif key in doc and key not in ("name", "owner", "creation", "modified", "docstatus"):
                doc[key] = coerce(key, value)
        for field in schema.TABLES.get(doctype, {}):
            doc.setdefault(field, [])
            doc[field] = doc[field] or []
        if doc["name"] in self.table(doctype):
            raise ValidationError(f"{doctype} {doc['name']} already exists")
        return doc

    def check_latest(self, doc: Doc, sent: Doc) -> None:
        """Frappe's `check_if_latest`: a stale `modified` from the client is refused."""
        stamp = sent.get("modified")
        if stamp not in (None, "") and coerce("modified", stamp) != doc["modified"]:
            raise TimestampMismatchError(
                "Document has been modified after you have opened it "
                f"({sent['modified']}, {doc['modified']}). "
                "Please refresh to get the latest document."
            )

    def touch(self, doc: Doc, user: str) -> None:
        """Stamp a save: `modified` moves, children follow the parent's docstatus."""
        doc["modified"] = self.now()
        doc["modified_by"] = user
        for field in schema.TABLES.get(doc["doctype"], {}):
            for row in doc.get(field, []):
                row["docstatus"] = doc["docstatus"]
        for listener in self.on_change:
            listener(doc["doctype"], doc)
