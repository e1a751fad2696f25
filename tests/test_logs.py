"""Logs: text or JSON lines, one line per state transition, and never a secret in any of them."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr

from bot import logs
from bot.app import create_app
from bot.demo import demo_settings
from bot.sandbox.options import SandboxOptions
from bot.sandbox.server import Sandbox
from bot.settings import DashboardConfig, LogConfig, Settings
from erp_adapter.erpnext.config import ErpnextConfig
from erp_adapter.kingdee.config import KingdeeConfig
from erp_adapter.odoo.config import OdooConfig
from erp_adapter.reference.erp import ReferenceErp
from tests import dbutil
from tests.harness import order, signed
from tests.test_metrics import (
    instrument,
    observed_bridge,
    observed_settings,
    pending_instance,
    run_flow,
    serve,
    wait_done,
)

TRANSITION = re.compile(r"(\S+) r(\d+) \(approval (\w+)\): (\w+) -> (\w+) \[(\w+) by ([\w-]+)\]")


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put the root logger back as pytest had it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in ("aiohttp.access", "alembic")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, value in quiet.items():
        logging.getLogger(name).setLevel(value)


def test_redactor_masks_values_and_shapes(root_logging: None) -> None:
    out = io.StringIO()
    logs.configure("DEBUG", "text", out, secrets=["s3cr3t-value", "ab"])
    log = logging.getLogger("bot.test")
    log.info("secret %s and %r", "s3cr3t-value", {"k": "s3cr3t-value"})
    log.info("GET /v1.0/x?access_token=tok123&id=1 and x-acs-dingtalk-access-token: tok456")
    log.info('{"accessToken": "tok789", "expireIn": 7200} ticket=abc%2Bdef')
    log.info("Authorization: Bearer abcdefghijkl; X-Bridge-Signature: v1=%s", "0f" * 32)
    log.info("postgresql+asyncpg://bridge:pa55word@db/prod and the ab in tab stays")
    try:
        raise ValueError("refused s3cr3t-value")
    except ValueError:
        log.exception("failed with %s", "appSecret=xyz987")
    text = out.getvalue()
    for leaked in ("s3cr3t-value", "tok123", "tok456", "tok789", "abc%2Bdef", "abcdefghijkl"):
        assert leaked not in text
    assert "0f" * 32 not in text and "pa55word" not in text and "xyz987" not in text
    assert "secret *** and {'k': '***'}" in text
    assert "access_token=***&id=1" in text and "ticket=***" in text
    assert "ValueError: refused ***" in text  # the traceback too
    assert "the ab in tab stays" in text  # secrets too short to mask are left alone


def test_json_lines_keep_extra_fields_redacted(root_logging: None) -> None:
    out = io.StringIO()
    logs.configure("INFO", "json", out, secrets=["hush-hush-123"])
    logging.getLogger("bot.test").warning(
        "token %s", "hush-hush-123", extra={"doc_no": "PO-1", "body": {"secret": "hush-hush-123"}}
    )
    entry = json.loads(out.getvalue())
    assert entry["msg"] == "token ***" and entry["doc_no"] == "PO-1"
    assert entry["body"] == {"secret": "***"} and entry["level"] == "WARNING"


def test_secrets_of_settings() -> None:
    settings = Settings.model_validate(
        {
            "dingtalk": {"app_secret": "a" * 8, "callback_token": "b" * 8},
            "erp": {"webhook_secret": "c" * 8},
            "dashboard": {"token": "d" * 8, "username": "ops", "password": "e" * 8},
        }
    )
    assert sorted(logs.secrets_of(settings)) == [x * 8 for x in "abcde"]


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_one_line_per_transition(
    fmt: str, root_logging: None, sqlite_template: Path, tmp_path: Path
) -> None:
    out = io.StringIO()
    logs.configure("INFO", fmt, out)
    settings = observed_settings(sqlite_template, tmp_path, token="t" * 24)
    async with observed_bridge(settings, refuse={"PO-BAD"}) as bridge:
        ids = await run_flow(bridge)
    lines = out.getvalue().splitlines()
    if fmt == "json":
        entries = [json.loads(line) for line in lines]  # every line is one JSON object
        moves = [e for e in entries if e["logger"] == "approvals.transitions"]
        assert all(TRANSITION.fullmatch(e["msg"]) for e in moves)
        found = [(e["doc_no"], e["from_state"], e["to_state"], e["trigger"]) for e in moves]
        assert {e["approval_id"] for e in moves} == set(ids.values())
    else:
        matches = [TRANSITION.search(line) for line in lines]
        found = [(m[1], m[4], m[5], m[6]) for m in matches if m is not None]
        assert {m[3] for m in matches if m is not None} == set(ids.values())
    yes = [step for step in found if step[0] == "PO-YES"]
    assert yes == [
        ("PO-YES", "received", "submitting", "submit"),
        ("PO-YES", "submitting", "pending", "instance_created"),
        ("PO-YES", "pending", "approved", "approve"),
        ("PO-YES", "approved", "writing_back", "write_back"),
        ("PO-YES", "writing_back", "done", "acknowledged"),
    ]
    assert ("PO-BAD", "writing_back", "failed", "write_back_failed") in found
    assert ("PO-GONE", "pending", "cancelled", "cancel") in found


async def test_full_flow_at_debug_leaks_no_secret(
    root_logging: None, sqlite_template: Path, tmp_path: Path
) -> None:
    """Webhooks, a bad signature, a token refresh, stream events, write-backs, the dashboard."""
    out = io.StringIO()
    sandbox = Sandbox(SandboxOptions()).start_in_thread()
    try:
        async with ReferenceErp(secret="erp-webhook-secret-4711") as erp:
            settings = secret_settings(sqlite_template, tmp_path, erp, sandbox.url)
            secrets = logs.secrets_of(settings)
            assert len(secrets) == 9
            logs.configure("DEBUG", "text", out, secrets)
            tokens = await flow(settings, erp, sandbox)
    finally:
        await sandbox.stop_async()
    text = out.getvalue()
    assert "dingtalk stream: connected" in text and "bad_signature" in text
    assert len(tokens) == 2, "the access token was not refreshed"
    for value in [*secrets, *tokens]:
        assert value not in text
    assert not re.search(r"v1=[0-9a-f]{16}", text), "a webhook signature was logged"
    # websockets logs its request line at DEBUG: the stream ticket (a credential) is masked.
    assert "?ticket=***" in text and not re.search(r"ticket=(?!\*\*\*)", text)
    assert re.search(r"PO-LOG-1 r1 \(approval \w+\): pending -> approved", text)
    # The filter is really in this pipeline: what is logged on purpose comes out masked.
    assert "canary: *** accessToken=***" in text


def secret_settings(
    sqlite_template: Path, tmp_path: Path, erp: ReferenceErp, sandbox: str
) -> Settings:
    """The demo's settings, with every kind of secret set (most unused: they must not leak)."""
    url = dbutil.copy_sqlite(sqlite_template, tmp_path / "bridge.db")
    base = demo_settings(url, erp, sandbox)
    secret = SecretStr
    return base.model_copy(
        update={
            "dingtalk": base.dingtalk.model_copy(
                update={
                    "callback_token": secret("callback-token-1234"),
                    "callback_aes_key": secret("k" * 42 + "A"),
                }
            ),
            "erp": base.erp.model_copy(
                update={
                    "kingdee": KingdeeConfig.model_validate(
                        {
                            "server_url": "http://127.0.0.1:9/k3cloud/",
                            "acct_id": "5f",
                            "username": "b",
                            "app_id": "1_x",
                            "org_number": "100",
                            "app_secret": "kingdee-secret-55",
                        }
                    ),
                    "odoo": OdooConfig.model_validate(
                        {
                            "url": "http://127.0.0.1:9",
                            "db": "p",
                            "username": "b",
                            "api_key": "odoo-key-66",
                        }
                    ),
                    "erpnext": ErpnextConfig.model_validate(
                        {
                            "url": "http://127.0.0.1:9",
                            "api_key": "k",
                            "api_secret": "erpnext-secret-77",
                        }
                    ),
                }
            ),
            "dashboard": DashboardConfig(
                token=secret("dashboard-token-8888"),
                username="ops",
                password=secret("dash-pass-999"),
            ),
            "log": LogConfig(level="DEBUG"),
        }
    )


async def flow(settings: Settings, erp: ReferenceErp, sandbox: Sandbox) -> set[str]:
    """Run the bridge through the flow; the access tokens the sandbox handed out."""
    app = create_app(settings)
    instrument(app, settings)
    tokens: set[str] = set()
    assert settings.dashboard.token is not None and settings.dashboard.password is not None
    dash = settings.dashboard.token.get_secret_value()
    pw = settings.dashboard.password.get_secret_value()
    async with serve(app) as url, aiohttp.ClientSession() as http:
        erp.bridge_url = url
        erp.submit_order(order("PO-LOG-1"))
        raw = json.dumps({"event_id": "e"}).encode()
        forged = signed(raw, secret="wrong") | {"X-Bridge-Timestamp": str(int(time.time()))}
        async with http.post(url + "/erp/events", data=raw, headers=forged) as response:
            assert response.status == 401
        first = await pending_instance(sandbox, "PO-LOG-1")
        tokens.add(current_token(sandbox, settings))
        assert await sandbox.invalidate_tokens() == 1
        erp.submit_order(order("PO-LOG-2"))  # raising it needs a new token
        second = await pending_instance(sandbox, "PO-LOG-2")
        tokens.add(current_token(sandbox, settings))
        await sandbox.approve(first)
        await sandbox.refuse(second)
        for auth in (f"Bearer {dash}", "Bearer wrong-token", f"Basic {b64('ops:' + pw)}"):
            async with http.get(url + "/", headers={"Authorization": auth}) as response:
                assert response.status in (200, 401)
        async with http.get(url + "/metrics") as response:
            assert response.status == 200
        await wait_done(app, ["PO-LOG-1", "PO-LOG-2"])
        logging.getLogger("bot.test").warning("canary: %s %s", dash, f"accessToken={first}")
    return tokens


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def current_token(sandbox: Sandbox, settings: Settings) -> str:
    """The app's valid access token (the sandbox hands out the same one while it is valid)."""
    return sandbox.state.tokens.issue(settings.dingtalk.app_key).value
