"""`approval-bridge check` for Odoo: reachability, login, and each right the bridge needs."""

from __future__ import annotations

from approvals.errors import BridgeError
from erp_adapter.native.base import CheckItem
from erp_adapter.odoo.client import OdooClient
from erp_adapter.odoo.config import OdooConfig

_FIX_GROUPS = "Settings > Users > {login} > Access Rights: set Purchase to {role}"


async def _has_group(client: OdooClient, group: str) -> bool:
    """`res.users.has_group`: a model method on 16, a record method from 17."""
    if (client.major or 0) >= 17 and client.uid is not None:
        return bool(
            await client.call("res.users", "has_group", ids=[client.uid], group_ext_id=group)
        )
    return bool(await client.call("res.users", "has_group", group_ext_id=group))


async def run_checks(client: OdooClient, config: OdooConfig) -> list[CheckItem]:
    """Every check, stopping after the first that makes the rest meaningless."""
    items: list[CheckItem] = []
    try:
        info = await client.version()
    except BridgeError as exc:
        return [CheckItem("Odoo reachable", False, f"{config.url}: {exc}")]
    items.append(CheckItem("Odoo reachable", True, f"Odoo {info.get('server_version')}"))
    try:
        await client.connect(force=True)
    except BridgeError as exc:
        items.append(CheckItem("Odoo login", False, str(exc)))
        return items
    items.append(
        CheckItem("Odoo login", True, f"{config.username} (uid {client.uid}) over {client.api}")
    )
    login = config.username
    probes = [
        ("Odoo: read purchase orders", "purchase.order", "Purchase: User"),
        ("Odoo: read reordering rules", "stock.warehouse.orderpoint", "Inventory: User"),
    ]
    for what, model, role in probes:
        try:
            count = await client.call(model, "search_count", domain=[])
            items.append(CheckItem(what, True, f"{count} visible"))
        except BridgeError as exc:
            items.append(CheckItem(what, False, f"{exc}. Fix: give {login} {role}"))
    rights = [
        ("Odoo: approve purchase orders", "purchase.group_purchase_manager", "Administrator",
         "button_approve silently skips orders above the approval threshold"),
        ("Odoo: create requisitions (RFQs)", "purchase.group_purchase_user", "User",
         "draft RFQs for approved refills cannot be created"),
    ]  # fmt: skip
    for what, group, role, why in rights:
        try:
            ok = await _has_group(client, group)
        except BridgeError as exc:
            items.append(CheckItem(what, False, str(exc)))
            continue
        detail = (
            f"{login} is in {group}"
            if ok
            else (
                f"{login} is not in {group}: {why}. Fix: "
                + _FIX_GROUPS.format(login=login, role=role)
            )
        )
        items.append(CheckItem(what, ok, detail))
    return items
