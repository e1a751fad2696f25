"""`approval-bridge check`: every load problem plus the semantic checks, reported at once."""

from __future__ import annotations

import asyncio
import copy
import itertools
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from pydantic import SecretStr, ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from approvals.models import DocType
from bot import check_erp
from bot.logs import MASK, MIN_SECRET_LEN
from bot.settings import (
    ENVIRONMENT,
    SECRET_PATHS,
    KeyPath,
    LoadResult,
    Problem,
    Settings,
    Severity,
    config_file,
    env_var,
    load_settings,
)
from cards.forms import DEFAULT_LABELS, unknown_fields

DATABASE_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
NATIVE_SECRETS = {"kingdee": "app_secret", "odoo": "api_key", "erpnext": "api_secret"}
_AES_KEY = re.compile(r"[A-Za-z0-9+/]{43}")  # base64 of 32 bytes, without the trailing "="


def check(path: Path | None, environ: Mapping[str, str] | None = None) -> list[Problem]:
    """Every problem with the configuration: loading and validation, then semantic checks."""
    result = load_settings(path, environ)
    settings, broken = _best_effort(result)
    if settings is None:  # the file did not parse: nothing to reason about
        return list(result.problems)
    return [*result.problems, *_semantic(settings, _Findings(result, broken))]


def format_report(problems: Sequence[Problem]) -> str:
    """The problems grouped by source (the file first), one `file:key: message — fix` a line."""
    if not problems:
        return "no problems"
    groups: dict[str, list[Problem]] = {}
    for problem in problems:
        groups.setdefault(problem.source, []).append(problem)
    lines = []
    for source in sorted(groups, key=lambda s: s == ENVIRONMENT):
        lines.append(f"{source}: {_tally(groups[source])}")
        lines.extend(f"  {problem}" for problem in groups[source])
        lines.append("")
    lines.append(f"{_tally(problems)}: the configuration is not valid")
    return "\n".join(lines)


def run_check(
    path: Path | None, environ: Mapping[str, str] | None, out: TextIO, err: TextIO
) -> int:
    """The CLI command: "configuration OK" on `out` and 0, or the report on `err` and 1."""
    env = os.environ if environ is None else environ
    problems = check(path, env)
    if problems:
        err.write(_masked(format_report(problems), env) + "\n")
        return 1
    file = config_file(path, env)
    note = "" if file.is_file() else " (no such file: defaults and environment only)"
    out.write(f"configuration OK: {file}{note}\n")
    settings = load_settings(path, env).settings
    if settings is None:
        return 0
    # A native ERP is polled: check that it answers and that the integration user may act.
    items = asyncio.run(check_erp.erp_findings(settings))
    for item in items:
        mark = "ok" if item.ok else "FAILED"
        detail = f" ({item.detail})" if item.detail else ""
        out.write(_masked(f"{settings.erp.adapter}: {item.what}: {mark}{detail}", env) + "\n")
    failed = check_erp.problems(settings, items)
    if failed:
        lines = [str(problem) for problem in failed]
        lines.append(f"the {settings.erp.adapter} ERP check failed: {len(failed)} of {len(items)}")
        err.write(_masked("\n".join(lines), env) + "\n")
        return 1
    return 0


def _masked(report: str, environ: Mapping[str, str]) -> str:
    """The report with every secret given in the environment masked.

    A value refused for a key is quoted back to help; were a secret pasted into the wrong key
    as well, that would print it.
    """
    for path in SECRET_PATHS:
        value = environ.get(env_var(path), "").strip()
        if len(value) >= MIN_SECRET_LEN:
            report = report.replace(value, MASK)
    return report


def _tally(problems: Sequence[Problem]) -> str:
    """'2 errors, 1 warning'."""
    errors = sum(p.severity == "error" for p in problems)
    counts = ((errors, "error"), (len(problems) - errors, "warning"))
    return ", ".join(f"{n} {word}{'s' if n != 1 else ''}" for n, word in counts if n)


def _best_effort(result: LoadResult) -> tuple[Settings | None, list[KeyPath]]:
    """The settings; when values were refused, settings without them, so a typo hides nothing."""
    if result.settings is not None or result.data is None:
        return result.settings, []
    data = copy.deepcopy(dict(result.data))
    broken = []
    for loc, kind in result.invalid:
        path = tuple(str(p) for p in itertools.takewhile(lambda p: isinstance(p, str), loc))
        # A section lacking a required key cannot be built at all: leave it out whole.
        path = path[:-1] if kind == "missing" else path
        node: Any = data
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if path and isinstance(node, dict):
            node.pop(path[-1], None)
            broken.append(path)
    try:
        return Settings.model_validate(data), broken
    except ValidationError:  # not expected; the load problems then stand alone
        return None, []


class _Findings:
    """Collects semantic problems, each placed where its value came from."""

    def __init__(self, where: LoadResult, broken: list[KeyPath]) -> None:
        self.where = where
        self.broken = broken
        self.problems: list[Problem] = []

    def is_broken(self, path: KeyPath) -> bool:
        """Whether loading already refused this key, a key inside it, or its section."""
        return any(b[: len(path)] == path or path[: len(b)] == b for b in self.broken)

    def at(self, path: KeyPath, message: str, fix: str, severity: Severity = "error") -> None:
        """A problem with a key: its env var when set from the environment, else the file."""
        if not self.is_broken(path):
            self.problems.append(Problem(*self.where.locate(path), message, fix, severity))

    def secret(
        self, path: KeyPath, message: str, fix: str = "", severity: Severity = "error"
    ) -> None:
        """A problem with a secret, which only ever comes from the environment."""
        var = env_var(path)
        fix = fix or f"set {var} in the service's environment (never in the file)"
        if not self.is_broken(path):
            self.problems.append(Problem(ENVIRONMENT, var, message, fix, severity))


def _semantic(s: Settings, found: _Findings) -> list[Problem]:
    """What a valid schema cannot say: missing secrets, placeholders, inconsistent choices."""
    # A native adapter polls its ERP: only the generic protocol needs the webhook secret.
    if s.erp.adapter == "generic" and not _given(s.erp.webhook_secret):
        why = (
            "erp.webhook_secret is not set: ERP webhooks cannot be authenticated, none is accepted"
        )
        found.secret(("erp", "webhook_secret"), why)
    _check_dingtalk(s, found)
    for doc in ("purchase_order", "replenishment"):
        code = getattr(s.approvals, doc).process_code.strip()
        if not code or "..." in code:
            state = "is empty" if not code else f"is still the placeholder {code!r}"
            fix = f"set it to the process code of the DingTalk approval template for {doc}"
            found.at(("approvals", doc, "process_code"), f"process code {state}", fix)
        for key in unknown_fields(DocType(doc), getattr(s.approvals, doc)):
            known = ", ".join(sorted(DEFAULT_LABELS[doc]))
            found.at(
                ("approvals", doc, "fields", key),
                f"{key!r} is not a form field of a {doc}",
                f"use one of: {known}",
            )
    _check_database(s.database.url, found)
    for erp_user, user_id in s.users.items():
        if not user_id.strip():
            fix = "set it to the user's DingTalk userId (staffId), or remove the line"
            found.at(("users", erp_user), f"ERP user {erp_user!r} has an empty DingTalk id", fix)
    # Admins need not be ERP users, so an admin missing from [users] is no problem to report:
    # `check` fails on every problem, and this one would fail valid configurations.
    _check_adapter(s, found)
    return found.problems


def _check_dingtalk(s: Settings, found: _Findings) -> None:
    """Credentials to reach DingTalk, and the keys HTTP-callback mode needs."""
    dt = s.dingtalk
    if not dt.app_key.strip():
        fix = "set app_key under [dingtalk] to the app's AppKey (clientId)"
        found.at(
            ("dingtalk", "app_key"),
            "app_key (clientId) is empty: it is needed to reach DingTalk",
            fix,
            "warning",
        )
    if not _given(dt.app_secret):
        msg = "dingtalk.app_secret (clientSecret) is not set: it is needed to reach DingTalk"
        found.secret(("dingtalk", "app_secret"), msg, severity="warning")
    for name in ("callback_token", "callback_aes_key"):
        if dt.mode == "http" and not _given(getattr(dt, name)):
            msg = f'dingtalk.{name} is not set: mode "http" cannot verify or decrypt callbacks'
            found.secret(("dingtalk", name), msg)
    aes = dt.callback_aes_key.get_secret_value() if dt.callback_aes_key else ""
    if aes.strip() and not _AES_KEY.fullmatch(aes):
        msg = f"dingtalk.callback_aes_key must be 43 base64 characters (it has {len(aes)})"
        fix = "copy the aes_key from the app's event subscription settings, all 43 characters"
        found.secret(("dingtalk", "callback_aes_key"), msg, fix)


def _check_database(url: str, found: _Findings) -> None:
    """A driver the bridge ships with, and no password written in the file."""
    fix = "use sqlite+aiosqlite:///path/to/bridge.db or postgresql+asyncpg://user@host/db"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        found.at(("database", "url"), "not a database URL", fix)
        return
    if parsed.drivername not in DATABASE_DRIVERS:
        found.at(("database", "url"), f"unsupported driver {parsed.drivername!r}", fix)
    source, _ = found.where.locate(("database", "url"))
    if parsed.password and source != ENVIRONMENT:
        var = env_var(("database", "url"))
        fix = f"delete url from the file and set the whole URL in {var} instead"
        found.at(("database", "url"), "password in file: secrets belong in the environment", fix)


def _check_adapter(s: Settings, found: _Findings) -> None:
    """A native ERP adapter needs its section and its secret."""
    adapter = s.erp.adapter
    if adapter not in NATIVE_SECRETS:
        return
    section = getattr(s.erp, adapter)
    if section is None and not found.is_broken(("erp", adapter)):
        fix = f'add an [erp.{adapter}] section (see docs/configuration.md), or use "generic"'
        found.at(("erp", "adapter"), f"{adapter!r} needs an [erp.{adapter}] section", fix)
    elif section is not None and not _given(getattr(section, NATIVE_SECRETS[adapter])):
        path = ("erp", adapter, NATIVE_SECRETS[adapter])
        msg = f"{'.'.join(path)} is not set: the {adapter} adapter cannot log in to the ERP"
        found.secret(path, msg)


def _given(value: SecretStr | None) -> bool:
    """Whether a secret is set to something other than blanks."""
    return value is not None and bool(value.get_secret_value().strip())
