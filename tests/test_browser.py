"""A person's view: approve in the sandbox's page with a real browser, see it on the dashboard.

Headless Chromium is Debian's (`/usr/bin/chromium`), driven by Playwright for Python; nothing is
downloaded. Without either, the test is skipped with the reason, except under CI=true.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr

from bot.app import create_app
from bot.demo import demo_settings
from bot.sandbox.options import SandboxOptions
from bot.sandbox.server import Sandbox
from bot.settings import DashboardConfig
from erp_adapter.reference.erp import ReferenceErp
from tests import dbutil
from tests.harness import order
from tests.test_metrics import instrument, pending_instance, serve

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
TOKEN = "browser-dashboard-token-31415"
WAIT_S = 20.0


def missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is not installed (pip install 'playwright>=1.40')"
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, under Playwright (never `playwright install`)."""
    reason = missing()
    if reason is not None:
        if dbutil.in_ci():
            pytest.fail(f"CI must run the browser test: {reason}")
        pytest.skip(reason)
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=str(CHROMIUM), args=ARGS, headless=True, timeout=30_000
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(SandboxOptions()).start_in_thread()
    yield box
    box.stop()


async def shot(page: Page, path: Path) -> None:
    """Keep a full-page screenshot as a test artifact, and say where it is."""
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


async def test_approve_in_sandbox_page_shows_on_dashboard(
    browser: Browser, sandbox: Sandbox, sqlite_template: Path, tmp_path: Path
) -> None:
    url = dbutil.copy_sqlite(sqlite_template, tmp_path / "bridge.db")
    async with ReferenceErp(secret="browser-erp-secret") as erp:
        settings = demo_settings(url, erp, sandbox.url).model_copy(
            update={"dashboard": DashboardConfig(token=SecretStr(TOKEN))}
        )
        app = create_app(settings)
        instrument(app, settings)
        async with serve(app) as bridge_url:
            erp.bridge_url = bridge_url
            erp.submit_order(order("PO-WEB-1"))
            instance_id = await pending_instance(sandbox, "PO-WEB-1")
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            dashboard = await context.new_page()
            await dashboard.set_extra_http_headers({"Authorization": f"Bearer {TOKEN}"})
            answer = await dashboard.goto(bridge_url + "/")
            assert answer is not None and answer.status == 200
            row = dashboard.locator('#pending tr[data-doc="PO-WEB-1"]')
            assert await row.get_attribute("data-state") == "pending"
            await shot(dashboard, tmp_path / "1-dashboard-pending.png")

            page = await context.new_page()  # no credentials: the sandbox is DingTalk, not us
            await page.goto(sandbox.url + "/sandbox/")
            card = page.locator(f'[id="{instance_id}"]')
            assert "PO-WEB-1" in await card.inner_text()
            await shot(page, tmp_path / "2-sandbox-before.png")
            async with page.expect_navigation():
                await card.get_by_role("button", name="Approve").click()
            assert await page.locator(f'div.card[id="{instance_id}"]').count() == 0
            await shot(page, tmp_path / "3-sandbox-approved.png")

            approved = dashboard.locator('#outcomes tr[data-row="approved"] td[data-days="7"]')
            written = dashboard.locator('#outcomes tr[data-row="written_back"] td[data-days="7"]')
            deadline = time.monotonic() + WAIT_S
            while not (await row.count() == 0 and await written.inner_text() == "1"):
                assert time.monotonic() < deadline, await dashboard.content()
                await asyncio.sleep(0.2)
                await dashboard.reload()
            assert await approved.inner_text() == "1"
            assert "Nothing is waiting for a decision." in await dashboard.inner_text("#pending")
            assert await dashboard.locator("svg.chart rect").count() == 1
            await shot(dashboard, tmp_path / "4-dashboard-decided.png")
            await context.close()
        assert erp.order("PO-WEB-1").status == "approved"
