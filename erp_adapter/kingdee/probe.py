"""`check()`: connectivity, login and each right the bridge needs, with what to do about it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from approvals.errors import Permanent, Retryable
from erp_adapter.kingdee.client import KingdeeClient, KingdeeRefused
from erp_adapter.kingdee.config import KingdeeConfig
from erp_adapter.native.base import CheckItem

PROBE_NUMBER = "BRIDGE-CHECK-0"
"""A bill number that does not exist: K3Cloud checks the right before it looks the bill up."""
_AUTH_WORDS = ("签名", "应用", "用户", "密钥", "数据中心", "登录")


async def run_checks(config: KingdeeConfig, client: KingdeeClient) -> list[CheckItem]:
    """Connect and log in, then read and probe each operation the bridge performs."""
    items: list[CheckItem] = []
    try:
        if config.auth == "session":
            await client.login()
        else:
            await client.query("PUR_PurchaseOrder", ["FID"], "", "", 0, 1)
    except Retryable as exc:
        items.append(CheckItem(f"reach {config.server_url}", False, f"{exc}; check server_url"))
        return items
    except KingdeeRefused as exc:
        if exc.msg_code != 2 and not any(w in m for m in exc.messages for w in _AUTH_WORDS):
            raise
        items.append(CheckItem(f"reach {config.server_url}", True))
        items.append(CheckItem(f"log in as {config.username}", False, _login_hint(config, exc)))
        return items
    except Permanent as exc:
        items.append(CheckItem(f"reach {config.server_url}", True))
        items.append(CheckItem(f"log in as {config.username}", False, _login_hint(config, exc)))
        return items
    items.append(CheckItem(f"reach {config.server_url}", True))
    items.append(CheckItem(f"log in as {config.username} ({config.auth})", True))

    po, req = "PUR_PurchaseOrder", "PUR_Requisition"
    probes: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("read purchase orders (采购订单 查看)", lambda: client.query(po, ["FID"], "", "", 0, 1)),
        (
            "read materials (物料 查看)",
            lambda: client.query("BD_MATERIAL", ["FNumber"], "", "", 0, 1),
        ),
        (
            "read stock (即时库存 查看)",
            lambda: client.query("STK_Inventory", ["FBaseQty"], "", "", 0, 1),
        ),
    ]
    numbers = {"Numbers": [PROBE_NUMBER], "Ids": ""}
    if config.workflow:
        probes.append(
            ("approve in the workflow (WorkflowAudit)", lambda: _workflow(client, config))
        )
    else:
        probes.append(
            ("audit purchase orders (采购订单 审核)", lambda: client.operate("Audit", po, numbers))
        )
        probes.append(
            (
                "send orders back (采购订单 撤销)",
                lambda: client.operate("CancelAssign", po, numbers),
            )
        )
    if config.void_on_reject:
        probes.append(
            (
                "void orders (采购订单 作废)",
                lambda: client.operate("ExcuteOperation:Cancel", po, numbers),
            )
        )
    probes.append(
        (
            "create requisitions (采购申请单 新增)",
            lambda: client.operate("Save", req, {"Model": {}}),
        )
    )
    probes.append(
        ("submit requisitions (采购申请单 提交)", lambda: client.operate("Submit", req, numbers))
    )
    if config.audit_requisitions:
        probes.append(
            ("audit requisitions (采购申请单 审核)", lambda: client.operate("Audit", req, numbers))
        )
    for what, probe in probes:
        items.append(await _probe(what, probe))
    return items


async def _workflow(client: KingdeeClient, config: KingdeeConfig) -> object:
    data = {"FormId": "PUR_PurchaseOrder", "Numbers": [PROBE_NUMBER], "ApprovalType": 1}
    data["UserName"] = config.workflow_user or config.username
    return await client.call("WorkflowAudit", {"data": data})


async def _probe(what: str, probe: Callable[[], Awaitable[object]]) -> CheckItem:
    try:
        await probe()
    except KingdeeRefused as exc:
        if exc.msg_code == 2:
            detail = f"{'; '.join(exc.messages)}: grant it to the integration user in K3Cloud"
            return CheckItem(what, False, detail)
        # Any other refusal of the made-up bill (not found, no entries) means the right is there.
        return CheckItem(what, True, "right present")
    except (Retryable, Permanent) as exc:
        return CheckItem(what, False, str(exc))
    return CheckItem(what, True)


def _login_hint(config: KingdeeConfig, exc: Exception) -> str:
    return (
        f"{exc}. Check acct_id, username, app_id and APPROVAL_BRIDGE__ERP__KINGDEE__APP_SECRET "
        "against the 第三方系统登录授权 registration (the app must be enabled for this user)"
    )
