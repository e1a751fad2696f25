"""`approval-bridge check` for ERPNext: reachability, the API key, and each right used."""

from __future__ import annotations

from typing import Any

from approvals.errors import BridgeError
from erp_adapter.erpnext.client import FrappeClient, FrappeError
from erp_adapter.erpnext.config import ErpnextConfig
from erp_adapter.erpnext.feed import PO, head_fields
from erp_adapter.native.base import CheckItem

REQUISITION_ROLES = {"Purchase Manager", "Purchase User", "Stock User", "Stock Manager"}
"""Roles a fresh ERPNext lets create and submit a Material Request."""


async def _probe(what: str, call: Any, fix: str) -> CheckItem:
    try:
        await call
    except FrappeError as exc:
        return CheckItem(what, False, f"{exc}; {fix}")
    except BridgeError as exc:
        return CheckItem(what, False, str(exc))
    return CheckItem(what, True)


async def run(client: FrappeClient, config: ErpnextConfig) -> list[CheckItem]:
    """Each check in turn; later ones are skipped when the site or the key fails."""
    try:
        pong = await client.get("ping")
    except FrappeError as exc:  # Frappe checks the keys before it routes, even for ping
        reached = CheckItem("connect", True, f"{client.base_url} answered {exc.status}")
        return [reached, CheckItem("login", False, str(exc))]
    except BridgeError as exc:
        return [CheckItem("connect", False, f"{client.base_url}: {exc}")]
    items = [CheckItem("connect", pong == "pong", f"{client.base_url} answered {pong!r}")]
    try:
        user = str(await client.get("frappe.auth.get_logged_user"))
    except BridgeError as exc:
        return [*items, CheckItem("login", False, str(exc))]
    items.append(CheckItem("login", True, f"API key of {user}"))
    roles = await _roles(client, user)
    items.append(
        await _probe(
            "read purchase orders",
            client.get_list(PO, head_fields(config), limit=1),
            "give the API user's role read on Purchase Order; check the configured field names",
        )
    )
    admin = user == "Administrator" or "System Manager" in roles
    role = config.approver_role
    act = "approve and reject orders"
    if admin or role in roles:
        items.append(CheckItem(act, True, f"{user} has {role!r}"))
    else:
        how = "the workflow's Approve/Reject transitions" if config.workflow else "submit"
        items.append(
            CheckItem(act, False, f"{user} lacks the role {role!r} that {how} need(s); add it")
        )
    if admin or roles & REQUISITION_ROLES:
        items.append(CheckItem("create requisitions", True, "may create Material Requests"))
    else:
        wanted = ", ".join(sorted(REQUISITION_ROLES))
        items.append(
            CheckItem("create requisitions", False, f"{user} has none of {wanted}; add one")
        )
    items.append(
        await _probe(
            "read stock",
            client.get_list("Bin", ["item_code"], limit=1),
            "give the API user's role read on Bin, Item and Warehouse (e.g. Stock User)",
        )
    )
    if config.user_id == "username":
        items.append(
            await _probe(
                "read users",
                client.get_list("User", ["name", "username"], limit=1),
                'give its role read on User (Role Permission Manager) or set user_id = "name"',
            )
        )
    return items


async def _roles(client: FrappeClient, user: str) -> set[str]:
    """The API user's roles, from its own User document (every user may read its own)."""
    try:
        doc = await client.get_doc("User", user)
    except BridgeError:
        return set()
    rows = doc.get("roles") if doc else None
    return (
        {str(r.get("role")) for r in rows if isinstance(r, dict)}
        if isinstance(rows, list)
        else set()
    )
