"""The dashboard: who may read it, what it shows, and that it pulls in nothing from outside."""

from __future__ import annotations

import base64
import datetime as dt
import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from approvals.readmodels import DayCount
from bot.dashboard import Gate
from bot.settings import DashboardConfig
from cards.web import bar_chart
from tests.harness import event, order
from tests.test_metrics import observed_bridge, observed_settings, run_flow

TOKEN = "dash-token-0123456789abcdef"
USER, PASSWORD = "ops", "pässword-9876"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer   {TOKEN} ", True),
        (basic(USER, PASSWORD), True),
        (None, False),
        ("", False),
        ("Bearer", False),
        (f"Bearer {TOKEN}x", False),
        (f"Bearer {TOKEN[:-1]}", False),
        (f"Token {TOKEN}", False),
        (basic(USER, "wrong"), False),
        (basic("other", PASSWORD), False),
        (basic(USER, ""), False),
        ("Basic " + base64.b64encode(USER.encode()).decode(), False),
        ("Basic not-base64!!", False),
        ("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), False),
        (basic(USER, TOKEN), False),
    ],
)
def test_gate(header: str | None, allowed: bool) -> None:
    config = DashboardConfig(token=SecretStr(TOKEN), username=USER, password=SecretStr(PASSWORD))
    assert Gate(config).allows(header) is allowed


def test_gate_schemes() -> None:
    assert Gate(DashboardConfig()).closed
    # A username without its password (or the reverse) is not basic auth.
    assert Gate(DashboardConfig(username=USER)).closed
    assert Gate(DashboardConfig(password=SecretStr(PASSWORD))).closed
    only_token = Gate(DashboardConfig(token=SecretStr(TOKEN)))
    assert only_token.challenges() == ['Bearer realm="approval-bridge"']
    assert not only_token.allows(basic(USER, TOKEN))
    only_basic = Gate(DashboardConfig(username=USER, password=SecretStr(PASSWORD)))
    assert only_basic.challenges() == ['Basic realm="approval-bridge", charset="UTF-8"']
    assert not only_basic.allows(f"Bearer {PASSWORD}")


async def test_refusals_over_http(sqlite_template: Path, tmp_path: Path) -> None:
    settings = observed_settings(sqlite_template, tmp_path, token=TOKEN)
    settings = settings.model_copy(
        update={
            "dashboard": DashboardConfig(
                token=SecretStr(TOKEN), username=USER, password=SecretStr(PASSWORD)
            )
        }
    )
    async with observed_bridge(settings, refuse=set()) as bridge:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": basic(USER, "x")}):
            async with bridge.http.get(bridge.url + "/", headers=headers) as response:
                assert response.status == 401
                challenges = response.headers.getall("WWW-Authenticate")
                assert 'Bearer realm="approval-bridge"' in challenges
                assert any(c.startswith("Basic ") for c in challenges)
                assert "approval-bridge" not in await response.text()
        for auth in (f"Bearer {TOKEN}", basic(USER, PASSWORD)):
            async with bridge.http.get(bridge.url + "/", headers={"Authorization": auth}) as ok:
                assert ok.status == 200
                assert ok.content_type == "text/html"
                assert "default-src 'none'" in ok.headers["Content-Security-Policy"]
                assert ok.headers["Cache-Control"] == "no-store"
        # Read-only: nothing but GET and HEAD is served.
        post = bridge.http.post(bridge.url + "/", headers={"Authorization": f"Bearer {TOKEN}"})
        async with post as response:
            assert response.status == 405
        # Health stays open beside it.
        async with bridge.http.get(bridge.url + "/healthz") as response:
            assert response.status == 200


async def test_closed_without_credentials(sqlite_template: Path, tmp_path: Path) -> None:
    settings = observed_settings(sqlite_template, tmp_path)
    async with observed_bridge(settings, refuse=set()) as bridge:
        for auth in ({}, {"Authorization": "Bearer "}, {"Authorization": basic("", "")}):
            async with bridge.http.get(bridge.url + "/", headers=auth) as response:
                assert response.status == 403
                assert "APPROVAL_BRIDGE__DASHBOARD__TOKEN" in await response.text()
                assert "WWW-Authenticate" not in response.headers


async def test_content(sqlite_template: Path, tmp_path: Path) -> None:
    settings = observed_settings(sqlite_template, tmp_path, token=TOKEN)
    async with observed_bridge(settings, refuse={"PO-BAD"}) as bridge:
        await run_flow(bridge)
        hostile = order("PO-<b>X</b>") | {
            "supplier": {"code": "S9", "name": "<script>x()</script>"}
        }
        assert (await bridge.post(event("evt-hostile", "purchase_order.submitted", hostile)))[
            0
        ] == 202
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with bridge.http.get(bridge.url + "/", headers=headers) as response:
            html = await response.text()
    pending = section(html, "pending")
    assert 'data-doc="PO-OPEN" data-state="pending"' in pending
    assert pending.index("PO-OPEN") < pending.index("PO-&lt;b&gt;X&lt;/b&gt;")  # oldest first
    for decided in ("PO-YES", "PO-NO", "PO-BAD", "PO-GONE", "PO-LOST"):
        assert f'data-doc="{decided}"' not in pending
    assert re.search(r"12000\.00 CNY", pending)
    outcomes = section(html, "outcomes")
    assert cells(outcomes, "approved") == ["3", "3"]  # last 7 and 30 days
    assert cells(outcomes, "rejected") == ["1", "1"]
    assert cells(outcomes, "write_back_failures") == ["1", "1"]
    assert cells(outcomes, "cancelled") == ["1", "1"]
    assert 'data-row="median"' in outcomes and 'data-row="p90"' in outcomes
    failed = section(html, "failed")
    assert 'data-kind="write_back"' in failed and "PO-BAD" in failed and "is locked" in failed
    assert "retry PO-BAD" in failed
    assert "last sweep" in section(html, "reconcile") and "1 missed outcome applied" in html
    assert "0 jobs queued" in section(html, "queue") or "job queued" in section(html, "queue")
    assert "<svg" in html and "4 in 30 days" in html
    # Autoescaped: what came from the ERP is text, never markup.
    assert "<script>x()" not in html and "&lt;script&gt;x()&lt;/script&gt;" in html
    assert "<b>X</b>" not in html
    # No external assets: no script, stylesheet link, image or frame, and no URL to load.
    assert not re.search(r"<(script|link|img|iframe|object|embed)\b", html, re.I)
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"url\(|@import", html, re.I)


def section(html: str, element_id: str) -> str:
    """The markup of the element with this id (tables and tiles here do not nest themselves)."""
    match = re.search(rf'<(\w+)[^>]*\bid="{element_id}".*?</\1>', html, re.S)
    assert match is not None, element_id
    return match.group(0)


def cells(table: str, row: str) -> list[str]:
    """The numbers of one row of the outcomes table."""
    match = re.search(rf'<tr data-row="{row}">(.*?)</tr>', table, re.S)
    assert match is not None, row
    return re.findall(r'<td class="num"[^>]*>([^<]*)</td>', match.group(1))


def test_chart_is_pure_svg() -> None:
    start = dt.date(2026, 11, 1)
    days = [DayCount(start + dt.timedelta(days=i), i % 3, i % 2) for i in range(30)]
    svg = str(bar_chart(days))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg == str(bar_chart(days))  # deterministic
    assert svg.count("<rect") == sum((d.approved > 0) + (d.rejected > 0) for d in days)
    assert "2026-11-30: 2 approved, 1 rejected" in svg
    assert not re.search(r"(src|href)=", svg)
    empty = str(bar_chart([DayCount(start, 0, 0)]))
    assert "<rect" not in empty and "0 in 1 days" in empty
    tall = str(bar_chart([DayCount(start, 130, 7)]))
    assert ">200</text>" in tall  # a round axis above the peak
