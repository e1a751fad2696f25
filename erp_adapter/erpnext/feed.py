"""Reading purchase orders in change order: the cursor queries, their lines, their buyers."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from approvals.errors import Permanent
from approvals.models import Person
from erp_adapter.erpnext.client import ALL, Doc, FrappeClient, FrappeError
from erp_adapter.erpnext.config import ErpnextConfig
from erp_adapter.erpnext.mapping import to_local
from erp_adapter.native.base import Cursor

log = logging.getLogger(__name__)
PO = "Purchase Order"
CHUNK = 100
"""Names per `in` filter, to keep GET URLs short."""

ITEM_FIELDS = ("parent", "idx", "item_code", "item_name", "uom", "qty", "rate", "amount")
TAX_FIELDS = ("parent", "charge_type", "rate", "add_deduct_tax", "included_in_print_rate")


def chunks(names: Iterable[str]) -> Iterable[list[str]]:
    """Names in slices of at most CHUNK."""
    items = list(dict.fromkeys(names))
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def head_fields(config: ErpnextConfig) -> list[str]:
    """Order fields to read; `workflow_state` only exists once a Workflow was set up."""
    fields = [
        "name", "modified", "docstatus", "status", "supplier", "supplier_name", "currency",
        "grand_total", "schedule_date", "transaction_date", "company",
    ]  # fmt: skip
    fields.append("workflow_state" if config.workflow else "_user_tags")
    extra = (config.buyer_field, config.department_field, config.remark_field)
    fields.extend(f for f in extra if f and f not in fields)
    return fields


async def heads_after(
    client: FrappeClient,
    fields: Sequence[str],
    filters: list[list[Any]],
    after: Cursor,
    limit: int,
    zone: ZoneInfo,
) -> list[Doc]:
    """Orders with (modified, name) after the cursor, in that order: two indexed queries.

    Frappe's filters cannot say (modified > t) OR (modified = t AND name > k), so the same
    instant's remaining names and the later instants are read apart and concatenated.
    """
    stamp = to_local(after[0], zone)
    same = await client.get_list(
        PO,
        fields,
        [*filters, ["modified", "=", stamp], ["name", ">", after[1]]],
        order_by="name asc",
        limit=limit,
    )
    if len(same) >= limit:
        return same[:limit]
    later = await client.get_list(
        PO, fields, [*filters, ["modified", ">", stamp]], limit=limit - len(same)
    )
    return [*same, *later]


async def children(
    client: FrappeClient, doctype: str, fields: Sequence[str], parents: Sequence[str]
) -> dict[str, list[Doc]]:
    """Child rows of the named orders by parent (read through the parent's permission)."""
    found: dict[str, list[Doc]] = defaultdict(list)
    for names in chunks(parents):
        rows = await client.get_list(
            doctype, fields, [["parent", "in", names]], order_by="idx asc", limit=ALL, parent=PO
        )
        for row in rows:
            found[str(row["parent"])].append(row)
    return found


class Users:
    """ERP users by User name (e-mail), with their login ids; cached for the process."""

    def __init__(self, client: FrappeClient, config: ErpnextConfig) -> None:
        self._client = client
        self._config = config
        self._known: dict[str, Person] = {}

    async def people(self, names: Iterable[str]) -> dict[str, Person]:
        """A Person for each User name (`username` or name as `user_id` says)."""
        wanted = [n for n in dict.fromkeys(names) if n]
        missing = [n for n in wanted if n not in self._known]
        for part in chunks(missing):
            try:
                rows = await self._client.get_list(
                    "User", ["name", "username", "full_name"], [["name", "in", part]], limit=ALL
                )
            except FrappeError as exc:
                if exc.status != 403:
                    raise
                if self._config.user_id == "username":
                    raise Permanent(
                        "ERPNext will not let the API user read User records, so buyers' "
                        "usernames are unknown: give its role read on User (Role Permission "
                        'Manager) or set user_id = "name"' + f" ({exc})"
                    ) from exc
                rows = [{"name": n} for n in part]
            for row in rows:
                name = str(row["name"])
                login = row.get("username") if self._config.user_id == "username" else name
                self._known[name] = Person(
                    erp_user=str(login or name), name=str(row.get("full_name") or "")
                )
        return {n: self._known.get(n) or Person(erp_user=n) for n in wanted}
