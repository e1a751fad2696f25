"""DingTalk `formComponentValues` for an approval request: header, reference, lines, prices."""

from __future__ import annotations

import json
from collections.abc import Mapping

from approvals.config import ProcessConfig
from approvals.models import DocType
from approvals.ports import InstanceRequest
from cards import filters
from cards.renderer import Renderer, plain
from cards.views import LineView, OrderView, order_view, replenishment_view

FormValue = dict[str, str]
"""One component value: `{"name": <template label>, "value": <string>}` (spec section 3.1)."""

MAX_VALUE_CHARS = 65_535
"""DingTalk's limit on one component value (spec section 3.1)."""

REFERENCE = "reference"
"""The key of the bridge-reference field that finds an instance again after a lost reply."""

PURCHASE_ORDER_LABELS: dict[str, str] = {
    "doc_no": "单据编号",
    "supplier": "供应商",
    "buyer": "采购员",
    "department": "采购部门",
    "currency": "币种",
    "total": "订单金额",
    "expected_date": "期望到货日期",
    "remark": "备注",
    REFERENCE: "桥接单号",
    "lines": "采购明细",
    "price_warnings": "价格预警",
    # Columns of the table field (lines_as = "table"):
    "line_no": "行号",
    "line_material": "物料",
    "line_spec": "规格型号",
    "line_unit": "单位",
    "line_quantity": "数量",
    "line_unit_price": "单价",
    "line_amount": "金额",
    "line_history": "历史价格",
    "line_warnings": "价格提示",
}
"""Our field key -> the default label of the purchase-order template's component."""

REPLENISHMENT_LABELS: dict[str, str] = {
    "doc_no": "单据编号",
    "material": "物料",
    "unit": "单位",
    "warehouse": "仓库",
    "on_hand": "当前库存",
    "safety_stock": "安全库存",
    "reorder_qty": "建议采购数量",
    "preferred_supplier": "首选供应商",
    "requester": "申请人",
    REFERENCE: "桥接单号",
}
"""Our field key -> the default label of the replenishment template's component."""

DEFAULT_LABELS: dict[str, dict[str, str]] = {
    DocType.PURCHASE_ORDER.value: PURCHASE_ORDER_LABELS,
    DocType.REPLENISHMENT.value: REPLENISHMENT_LABELS,
}
"""Defaults per document type, for the README and for `check`."""


def labels(doc_type: DocType, process: ProcessConfig) -> dict[str, str]:
    """The defaults overlaid with `[approvals.<doc_type>.fields]`; an empty label drops a field."""
    merged = dict(DEFAULT_LABELS[doc_type.value])
    merged.update({k: v for k, v in process.fields.items() if k in merged})
    # The reference is how a lost create is found again: it can be renamed, never dropped.
    merged[REFERENCE] = merged[REFERENCE] or DEFAULT_LABELS[doc_type.value][REFERENCE]
    return merged


def unknown_fields(doc_type: DocType, process: ProcessConfig) -> list[str]:
    """Keys in `fields` that name no form field of this document type (for `check`)."""
    return sorted(set(process.fields) - set(DEFAULT_LABELS[doc_type.value]))


def form_values(
    request: InstanceRequest, process: ProcessConfig, tz: str, renderer: Renderer
) -> list[FormValue]:
    """The instance's `formComponentValues`, every value a string."""
    r = renderer
    names = labels(request.doc_type, process)
    if request.doc_type is DocType.PURCHASE_ORDER:
        pairs = _order(order_view(request), process, names, tz, r)
    else:
        pairs = _replenishment(request)
    return [{"name": names[key], "value": value} for key, value in pairs if names[key] and value]


def _order(
    view: OrderView, process: ProcessConfig, names: Mapping[str, str], tz: str, r: Renderer
) -> list[tuple[str, str]]:
    pairs = [
        ("doc_no", view.doc_no),
        ("supplier", view.supplier),
        ("buyer", view.buyer),
        ("department", view.department),
        ("currency", view.currency),
        ("total", filters.money(view.total)),
        ("expected_date", view.expected_date.isoformat() if view.expected_date else ""),
        ("remark", view.remark),
        (REFERENCE, view.reference),
    ]
    if process.lines_as == "table":
        lines = _table(view.lines, names, tz, r)
    else:
        lines = _cap_text(r.render("form/lines.j2", lines=view.lines, tz=tz), len(view.lines))
    pairs.append(("lines", lines))
    warnings = r.render("form/warnings.j2", lines=view.lines)
    pairs.append(("price_warnings", _cap_text(warnings, len(view.lines))))
    return pairs


def _table(lines: tuple[LineView, ...], names: Mapping[str, str], tz: str, r: Renderer) -> str:
    """A TableField value: a JSON string of rows, each a list of `{name, value}` (spec 3.1)."""
    rows = []
    for line in lines:
        cells = [
            ("line_no", str(line.no)),
            ("line_material", line.material),
            ("line_spec", line.spec),
            ("line_unit", line.unit),
            ("line_quantity", plain(line.quantity)),
            ("line_unit_price", filters.money(line.unit_price)),
            ("line_amount", filters.money(line.amount)),
        ]
        if line.price is not None:
            cells.append(("line_history", r.render("form/history.j2", p=line.price, tz=tz)))
            cells.append(("line_warnings", r.render("form/line_warnings.j2", p=line.price)))
        rows.append([{"name": names[k], "value": v} for k, v in cells if names[k]])
    text = json.dumps(rows, ensure_ascii=False)
    while len(text) > MAX_VALUE_CHARS and len(rows) > 1:
        # Too long for one value: keep the first rows; the full order stays in the ERP.
        rows = rows[: len(rows) * 9 // 10]
        text = json.dumps(rows, ensure_ascii=False)
    return text


def _cap_text(text: str, total_lines: int) -> str:
    """Cut text that would exceed DingTalk's value limit, saying so at the end."""
    if len(text) <= MAX_VALUE_CHARS:
        return text
    note = f"\n……（内容过长已截断，共 {total_lines} 行，完整内容见 ERP）"
    return text[: MAX_VALUE_CHARS - len(note)].rsplit("\n", 1)[0] + note


def _replenishment(request: InstanceRequest) -> list[tuple[str, str]]:
    view = replenishment_view(request)
    return [
        ("doc_no", view.doc_no),
        ("material", view.material),
        ("unit", view.unit),
        ("warehouse", view.warehouse),
        ("on_hand", plain(view.on_hand)),
        ("safety_stock", plain(view.safety_stock)),
        ("reorder_qty", plain(view.reorder_qty)),
        ("preferred_supplier", view.preferred_supplier),
        ("requester", view.requester),
        (REFERENCE, view.reference),
    ]
