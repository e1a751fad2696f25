"""Approval form values: header, reference, lines as table or text, price context, labels."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import jinja2
import pytest

from approvals.config import ProcessConfig
from approvals.models import DocType, PurchaseOrder, StockAlert
from approvals.ports import InstanceRequest
from approvals.prices import PriceStats, price_context
from cards.forms import (
    DEFAULT_LABELS,
    MAX_VALUE_CHARS,
    PURCHASE_ORDER_LABELS,
    REPLENISHMENT_LABELS,
    form_values,
    labels,
    unknown_fields,
)
from cards.renderer import Renderer, plain

TZ = "Asia/Shanghai"
RECEIVED = dt.datetime(2026, 11, 25, 2, 0, tzinfo=dt.UTC)
RENDERER = Renderer()

# History of M-001: 10.00 .. 12.50, weighted average 11.70, last 12.00 on 2026-10-01 20:00 UTC.
HISTORY = PriceStats(
    material_code="M-001",
    count=5,
    min=Decimal("10"),
    max=Decimal("12.5"),
    sum_amount=Decimal("5850"),
    sum_quantity=Decimal("500"),
    last_price=Decimal("12"),
    last_at=dt.datetime(2026, 10, 1, 20, 0, tzinfo=dt.UTC),
    last_supplier="S001",
)


def order(*prices: str, lines: list[dict[str, Any]] | None = None) -> PurchaseOrder:
    """An order whose line n buys material M-00n at the n-th price."""
    return PurchaseOrder.model_validate(
        {
            "doc_no": "PO-2026-000123",
            "revision": 2,
            "buyer": {"erp_user": "u1001", "name": "张三"},
            "department": {"code": "D01", "name": "采购部"},
            "supplier": {"code": "S001", "name": "杭州某某五金有限公司"},
            "currency": "CNY",
            "total_amount": "13560.00",
            "expected_date": "2026-12-01",
            "remark": "月度备料",
            "lines": lines
            or [
                {
                    "line_no": n,
                    "material_code": f"M-00{n}",
                    "material_name": "硬质合金刀片",
                    "spec": "CNMG120408",
                    "unit": "片",
                    "quantity": "1000",
                    "unit_price": price,
                }
                for n, price in enumerate(prices, start=1)
            ],
        }
    )


def po_request(po: PurchaseOrder, stats: list[PriceStats | None]) -> InstanceRequest:
    contexts = tuple(price_context(ln, s, 10.0) for ln, s in zip(po.lines, stats, strict=True))
    return InstanceRequest(
        "apr-1", 2, DocType.PURCHASE_ORDER, po.doc_no, po, contexts, received_at=RECEIVED
    )


def as_dict(values: list[dict[str, str]]) -> dict[str, str]:
    assert all(set(v) == {"name", "value"} for v in values)
    assert all(isinstance(v["value"], str) for v in values)
    names = [v["name"] for v in values]
    assert len(names) == len(set(names)), "a label appears twice"
    return {v["name"]: v["value"] for v in values}


def test_order_header_and_reference_in_order() -> None:
    values = form_values(po_request(order("12.00"), [HISTORY]), ProcessConfig(), TZ, RENDERER)
    assert [v["name"] for v in values] == [
        "单据编号",
        "供应商",
        "采购员",
        "采购部门",
        "币种",
        "订单金额",
        "期望到货日期",
        "备注",
        "桥接单号",
        "采购明细",
        "价格预警",
    ]
    form = as_dict(values)
    assert form["单据编号"] == "PO-2026-000123"
    assert form["供应商"] == "杭州某某五金有限公司（S001）"
    assert form["采购员"] == "张三（u1001）"
    assert form["采购部门"] == "采购部（D01）"
    assert form["订单金额"] == "13560.00"
    assert form["期望到货日期"] == "2026-12-01"
    assert form["桥接单号"] == "apr-1:2"
    assert form["价格预警"] == "无"


def test_lines_as_a_table_field() -> None:
    request = po_request(order("14.00", "3"), [HISTORY, None])
    rows = json.loads(as_dict(form_values(request, ProcessConfig(), TZ, RENDERER))["采购明细"])
    assert [[c["name"] for c in row] for row in rows] == [
        ["行号", "物料", "规格型号", "单位", "数量", "单价", "金额", "历史价格", "价格提示"]
    ] * 2
    first = {c["name"]: c["value"] for c in rows[0]}
    assert first["物料"] == "M-001 硬质合金刀片"
    assert first["数量"] == "1000"
    assert first["单价"] == "14.00"
    assert first["金额"] == "14000.00"
    assert first["历史价格"] == (
        "历史 5 次：最低 10.00，最高 12.50，均价 11.70\n"
        "最近 12.00（2026-10-02，供应商 S001）\n"  # shown in Asia/Shanghai
        "较均价 +19.7%，较最近 +16.7%"
    )
    assert first["价格提示"] == "⚠ 高于历史最高价（12.50）\n⚠ 高于均价 19.7%"
    second = {c["name"]: c["value"] for c in rows[1]}
    assert second["历史价格"] == "无历史采购记录"
    assert second["价格提示"] == "⚠ 无历史价格"


def test_lines_as_one_text_field() -> None:
    request = po_request(order("14.00", "3"), [HISTORY, None])
    form = as_dict(form_values(request, ProcessConfig(lines_as="text"), TZ, RENDERER))
    assert form["采购明细"] == (
        "1. M-001 硬质合金刀片 CNMG120408\n"
        "数量 1000 片，单价 14.00，金额 14000.00\n"
        "历史 5 次：最低 10.00，最高 12.50，均价 11.70\n"
        "最近 12.00（2026-10-02，供应商 S001）\n"
        "较均价 +19.7%，较最近 +16.7%\n"
        "⚠ 高于历史最高价（12.50）\n"
        "⚠ 高于均价 19.7%\n"
        "\n"
        "2. M-002 硬质合金刀片 CNMG120408\n"
        "数量 1000 片，单价 3.00，金额 3000.00\n"
        "无历史采购记录\n"
        "⚠ 无历史价格"
    )


@pytest.mark.parametrize(
    ("price", "stats", "warnings", "summary"),
    [
        ("11.00", HISTORY, "", "无"),
        ("12.50", HISTORY, "", "无"),  # at the maximum, 6.8 % over the average: under 10 %
        ("12.80", HISTORY, "⚠ 高于历史最高价（12.50）", "⚠ 高于历史最高价（12.50）"),
        ("9.00", None, "⚠ 无历史价格", "⚠ 无历史价格"),
        (
            "14.00",
            HISTORY,
            "⚠ 高于历史最高价（12.50）\n⚠ 高于均价 19.7%",
            "⚠ 高于历史最高价（12.50）；⚠ 高于均价 19.7%",
        ),
    ],
)
def test_price_warning_wording(
    price: str, stats: PriceStats | None, warnings: str, summary: str
) -> None:
    form = as_dict(form_values(po_request(order(price), [stats]), ProcessConfig(), TZ, RENDERER))
    cell = {c["name"]: c["value"] for c in json.loads(form["采购明细"])[0]}
    assert cell["价格提示"] == warnings
    expected = "无" if summary == "无" else f"第1行 M-001 硬质合金刀片：{summary}"
    assert form["价格预警"] == expected


def test_above_average_only_is_worded_with_its_percentage() -> None:
    wide = HISTORY.model_copy(update={"max": Decimal("20")})
    form = as_dict(form_values(po_request(order("14.00"), [wide]), ProcessConfig(), TZ, RENDERER))
    assert form["价格预警"] == "第1行 M-001 硬质合金刀片：⚠ 高于均价 19.7%"


def test_labels_are_configurable_and_empty_ones_drop_the_field() -> None:
    process = ProcessConfig(
        fields={
            "doc_no": "采购订单号",
            "remark": "",
            "reference": "",  # cannot be dropped: it finds lost instances
            "line_history": "价格参考",
            "line_spec": "",
            "bogus": "x",
        }
    )
    form = as_dict(form_values(po_request(order("11"), [HISTORY]), process, TZ, RENDERER))
    assert form["采购订单号"] == "PO-2026-000123"
    assert "单据编号" not in form and "备注" not in form
    assert form["桥接单号"] == "apr-1:2"
    row = json.loads(form["采购明细"])[0]
    assert [c["name"] for c in row] == [
        "行号",
        "物料",
        "单位",
        "数量",
        "单价",
        "金额",
        "价格参考",
        "价格提示",
    ]
    assert unknown_fields(DocType.PURCHASE_ORDER, process) == ["bogus"]
    assert labels(DocType.PURCHASE_ORDER, process)["reference"] == "桥接单号"
    renamed = ProcessConfig(fields={"reference": "外部单号"})
    form = as_dict(form_values(po_request(order("11"), [HISTORY]), renamed, TZ, RENDERER))
    assert form["外部单号"]


def test_replenishment_form() -> None:
    alert = StockAlert.model_validate(
        {
            "material_code": "M-001",
            "material_name": "硬质合金刀片",
            "unit": "片",
            "warehouse": "WH1",
            "on_hand": "80",
            "safety_stock": "500.000000",
            "reorder_qty": "1000",
            "preferred_supplier": {"code": "S001", "name": "杭州某某"},
            "requester": {"erp_user": "u1002", "name": "李四"},
        }
    )
    request = InstanceRequest("apr-9", 1, DocType.REPLENISHMENT, "RPL-9", alert, (), RECEIVED)
    values = form_values(request, ProcessConfig(fields={"warehouse": "收货仓库"}), TZ, RENDERER)
    assert values == [
        {"name": "单据编号", "value": "RPL-9"},
        {"name": "物料", "value": "M-001 硬质合金刀片"},
        {"name": "单位", "value": "片"},
        {"name": "收货仓库", "value": "WH1"},
        {"name": "当前库存", "value": "80"},
        {"name": "安全库存", "value": "500"},
        {"name": "建议采购数量", "value": "1000"},
        {"name": "首选供应商", "value": "杭州某某（S001）"},
        {"name": "申请人", "value": "李四（u1002）"},
        {"name": "桥接单号", "value": "apr-9:1"},
    ]
    assert unknown_fields(DocType.REPLENISHMENT, ProcessConfig(fields={"lines": "x"})) == ["lines"]


def test_optional_empty_header_fields_are_left_out() -> None:
    bare = order("11").model_copy(update={"remark": "", "department": None, "expected_date": None})
    form = as_dict(form_values(po_request(bare, [HISTORY]), ProcessConfig(), TZ, RENDERER))
    assert {"备注", "采购部门", "期望到货日期"}.isdisjoint(form)
    assert form["桥接单号"] == "apr-1:2"


@pytest.mark.parametrize("lines_as", ["table", "text"])
def test_a_huge_order_is_cut_to_dingtalks_value_limit(lines_as: str) -> None:
    lines = [
        {
            "line_no": n,
            "material_code": "M-001",
            "material_name": "很长的物料名称" * 60,
            "unit": "片",
            "quantity": "1",
            "unit_price": "11",
        }
        for n in range(1, 301)
    ]
    po = order(lines=lines)
    request = po_request(po, [HISTORY] * len(po.lines))
    process = ProcessConfig.model_validate({"lines_as": lines_as})
    form = as_dict(form_values(request, process, TZ, RENDERER))
    assert len(form["采购明细"]) <= MAX_VALUE_CHARS
    if lines_as == "text":
        assert form["采购明细"].endswith("……（内容过长已截断，共 300 行，完整内容见 ERP）")
    else:
        assert 1 <= len(json.loads(form["采购明细"])) < 300


def test_default_labels_are_exported_for_the_readme() -> None:
    assert DEFAULT_LABELS == {
        "purchase_order": PURCHASE_ORDER_LABELS,
        "replenishment": REPLENISHMENT_LABELS,
    }
    assert PURCHASE_ORDER_LABELS["reference"] == REPLENISHMENT_LABELS["reference"] == "桥接单号"


def test_renderer_escapes_html_only_and_is_strict() -> None:
    loader = jinja2.DictLoader({"page.html.j2": "<p>{{ x }}</p>", "card.j2": "{{ x }}"})
    renderer = Renderer(loader)
    assert renderer.render("page.html.j2", x="<b>") == "<p>&lt;b&gt;</p>"
    assert renderer.render("card.j2", x="<b>") == "<b>"
    with pytest.raises(jinja2.UndefinedError):
        renderer.render("card.j2")
    shipped = Renderer().env.list_templates()
    assert {"form/lines.j2", "form/warnings.j2", "form/history.j2"} <= set(shipped)
    assert plain(Decimal("1000.000000")) == "1000"
    assert plain(Decimal("2.50")) == "2.5"
    assert plain(None) == "—"
