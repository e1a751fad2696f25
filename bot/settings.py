"""Settings: every package's config model, loaded from one TOML file plus the environment."""

from __future__ import annotations

import difflib
import json
import os
import sys
import tomllib
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_core import ErrorDetails

from approvals import config as core
from erp_adapter.config import ErpConfig
from erp_adapter.config_types import HttpUrlStr

ENV_PREFIX = "APPROVAL_BRIDGE__"
CONFIG_ENV = "APPROVAL_BRIDGE_CONFIG"
DEFAULT_FILE = Path("bridge.toml")
ENVIRONMENT = "environment"
DOCS = "docs/configuration.md"

KeyPath = tuple[str, ...]
Override = tuple[KeyPath, Any, str]  # (config path, value, env var name)
Severity = Literal["error", "warning"]
Loc = tuple[str | int, ...]  # a location in the input, as pydantic reports it


class HttpConfig(core.CoreModel):
    """`[http]`: where the service listens (webhooks, callbacks, health, metrics, dashboard)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    """Open connections at most; one more is answered 503 and closed at once."""
    header_timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    """A new connection must deliver its request head within this, else it is closed."""
    body_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    """A request body must be complete this long after its head, else 408 and closed."""
    keepalive_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 15.0
    """An idle kept-alive connection is closed after this (and the next head must be in)."""


class DingTalkConfig(core.CoreModel):
    """`[dingtalk]`: the app, its robot, admins, and the HTTP-callback keys."""

    mode: Literal["stream", "http"] = "stream"
    api_base: HttpUrlStr = "https://api.dingtalk.com"
    oapi_base: HttpUrlStr = "https://oapi.dingtalk.com"
    app_key: str = ""
    app_secret: SecretStr | None = None
    robot_code: str = ""
    admins: list[str] = Field(default_factory=list)
    allow_readonly_for_all: bool = False
    callback_token: SecretStr | None = None
    callback_aes_key: SecretStr | None = None
    callback_owner_key: str | None = None
    agent_id: int | None = None
    """The app's AgentId, needed only for work notifications."""
    timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    rate_limit_qps: Annotated[float, Field(gt=0, le=1000)] = 20.0
    """Calls per second per API; DingTalk's standard edition allows 20."""
    monthly_call_budget: Annotated[int, Field(ge=100, le=100_000_000)] = 10_000
    reconcile_interval_min: Annotated[int, Field(ge=1, le=15)] = 5
    sweep_interval_min: Annotated[int, Field(ge=5, le=1440)] = 60
    """A full reconciliation sweep at least this often while the stream looks healthy."""
    stream_watchdog_s: Annotated[float, Field(ge=10, le=3600)] = 90.0
    """Replace a stream connection that has carried no frame (not even a ping) for this long."""
    quota_probe_s: Annotated[float, Field(ge=1, le=3600)] = 300.0
    """Once DingTalk refuses calls for the monthly quota (90020), calls are held and one is let
    through this often to notice that calls are allowed again."""


class DashboardConfig(core.CoreModel):
    """`[dashboard]`: who may read the dashboard (`/`); without credentials it stays closed."""

    token: SecretStr | None = None
    """A bearer token (`Authorization: Bearer ...`). **Environment only.**"""
    username: str = ""
    password: SecretStr | None = None
    """With `username`, HTTP basic auth. **Environment only.**"""


def _clock_time(value: str) -> str:
    """Accept HH:MM (24-hour)."""
    try:
        hours, minutes = (int(part) for part in value.split(":"))
    except ValueError:
        raise ValueError("must be HH:MM, e.g. 09:00") from None
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise ValueError("must be HH:MM, e.g. 09:00")
    return f"{hours:02d}:{minutes:02d}"


ClockTime = Annotated[str, AfterValidator(_clock_time)]


class ReminderConfig(core.CoreModel):
    """`[reminders]`: nudging approvers, escalating to admins, and the daily digest."""

    enabled: bool = True
    remind_after_h: Annotated[float, Field(gt=0, le=24 * 30)] = 4.0
    """Working hours an approval may wait before its approvers get a reminder."""
    escalate_after_h: Annotated[float, Field(gt=0, le=24 * 90)] = 24.0
    """Working hours before it is escalated to the admins (or `escalation_conversation`)."""
    working_days: list[Annotated[int, Field(ge=1, le=7)]] = Field(
        default=[1, 2, 3, 4, 5], min_length=1
    )
    """ISO weekdays that count (1 = Monday)."""
    work_start: ClockTime = "09:00"
    work_end: ClockTime = "18:00"
    escalation_conversation: str | None = None
    """A group's openConversationId to escalate to, instead of messaging each admin."""
    digest_at: ClockTime = "09:00"
    """When admins get the daily digest of what is overdue (in `timezone`)."""


class LogConfig(core.CoreModel):
    """`[log]`: log level and line format."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["text", "json"] = "text"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        """Accept `debug` too: logging itself knows only the upper-case names."""
        return value.upper() if isinstance(value, str) else value


class Settings(core.CoreModel):
    """The whole configuration; built once by `load_settings` and passed down explicitly."""

    database: core.DatabaseConfig = core.DatabaseConfig()
    http: HttpConfig = HttpConfig()
    dingtalk: DingTalkConfig = DingTalkConfig()
    erp: ErpConfig = ErpConfig()
    approvals: core.ApprovalsConfig = core.ApprovalsConfig()
    prices: core.PriceConfig = core.PriceConfig()
    jobs: core.JobConfig = core.JobConfig()
    intake: core.IntakeConfig = core.IntakeConfig()
    users: dict[str, str] = Field(default_factory=dict)
    log: LogConfig = LogConfig()
    dashboard: DashboardConfig = DashboardConfig()
    reminders: ReminderConfig = ReminderConfig()
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        """Fail at load time rather than when the scheduler or a card first needs the zone."""
        try:
            ZoneInfo(value)
        except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"unknown time zone {value!r}, expected an IANA name") from None
        return value


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration, where it is, and how to fix it."""

    source: str
    key: str
    message: str
    fix: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.source}:{self.key}" if self.key else self.source
        return f"{where}: {self.severity}: {self.message} — {self.fix}"


@dataclass(frozen=True)
class LoadResult:
    """Settings (None when they could not be built) and every problem found on the way."""

    settings: Settings | None
    problems: list[Problem]
    file: Path
    origins: Mapping[KeyPath, str]
    """Config path -> the env var that set it, or "" when the file did."""
    data: Mapping[str, Any] | None = None
    """The merged input that was validated; None when the file could not be used."""
    invalid: tuple[tuple[Loc, str], ...] = ()
    """(location, pydantic error type) of every value validation refused."""

    def locate(self, path: KeyPath) -> tuple[str, str]:
        """(source, key) naming where a config key's value came from, for a `Problem`."""
        name = _origin(self.origins, path)
        return (ENVIRONMENT, name) if name else (str(self.file), dotted(path))


def env_var(path: KeyPath) -> str:
    """The environment variable that overrides a config path."""
    return ENV_PREFIX + "__".join(part.upper() for part in path)


def dotted(loc: Loc) -> str:
    """A config path as `erp.kingdee.lcid`, `dingtalk.admins[0]`, or `users."a.b"`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            bare = part.replace("_", "").replace("-", "").isalnum()
            out += ("." if out else "") + (part if bare else json.dumps(part))
    return out


def config_file(path: Path | None, environ: Mapping[str, str]) -> Path:
    """The file to read: `path`, else $APPROVAL_BRIDGE_CONFIG, else ./bridge.toml."""
    return path if path is not None else Path(environ.get(CONFIG_ENV) or DEFAULT_FILE)


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> LoadResult:
    """Read the file, apply env overrides, validate, and collect every problem at once."""
    env = os.environ if environ is None else environ
    file = config_file(path, env)
    named_by = "--config" if path is not None else (CONFIG_ENV if env.get(CONFIG_ENV) else None)
    data, problems = _read(file, named_by)
    usable = data is not None
    data = data or {}
    problems += _take_secrets(data, str(file))
    origins: dict[KeyPath, str] = dict.fromkeys(_paths(data, ()), "")
    overrides, env_problems = _env_overrides(env)
    problems += env_problems
    for target, value, name in overrides:
        _merge(data, target, value)
        origins.update(dict.fromkeys(_paths(value, target), name))
    settings: Settings | None = None
    errors: list[ErrorDetails] = []
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems += [_from_error(e, file, origins) for e in errors]
    invalid = tuple((tuple(e["loc"]), e["type"]) for e in errors)
    if not usable:
        return LoadResult(None, problems, file, origins)
    return LoadResult(settings, problems, file, origins, data, invalid)


def load_or_exit(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings for `run` and friends; prints every problem to stderr and exits 2 on any."""
    result = load_settings(path, environ)
    if result.settings is None or result.problems:
        print(f"approval-bridge: the configuration is not valid ({result.file}):", file=sys.stderr)
        for problem in result.problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(2)
    return result.settings


def _read(file: Path, named_by: str | None) -> tuple[dict[str, Any] | None, list[Problem]]:
    """Parse the TOML file; None when it is unusable (a missing default file is just empty)."""
    source = str(file)
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh), []
    except FileNotFoundError:
        if named_by is None:
            return {}, []  # no file at the default place: defaults and the environment only
        if named_by == CONFIG_ENV:
            fix = f"point {CONFIG_ENV} at an existing TOML file, or unset it for ./{DEFAULT_FILE}"
            return None, [Problem(ENVIRONMENT, CONFIG_ENV, f"no such file: {file}", fix)]
        fix = f"check the path given with --config, or leave it out to use ./{DEFAULT_FILE}"
        return None, [Problem(source, "", "no such file", fix)]
    except tomllib.TOMLDecodeError as exc:
        fix = "fix the TOML syntax there (the file's keys are checked once it parses)"
        return None, [Problem(source, "", f"invalid TOML: {exc}", fix)]
    except (OSError, UnicodeDecodeError) as exc:
        fix = "make it a readable UTF-8 TOML file"
        return None, [Problem(source, "", f"cannot read the file: {exc}", fix)]


def _take_secrets(data: dict[str, Any], source: str) -> list[Problem]:
    """Remove secrets from the file's data: they are accepted from the environment only."""
    problems = []
    for path in sorted(SECRET_PATHS):
        node: Any = data
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node:
            del node[path[-1]]
            var = env_var(path)
            fix = f"delete it from the file and set the environment variable {var} instead"
            problems.append(Problem(source, dotted(path), f"secret in file: move it to {var}", fix))
    return problems


def _env_overrides(environ: Mapping[str, str]) -> tuple[list[Override], list[Problem]]:
    """`APPROVAL_BRIDGE__A__B=v` as (("a", "b"), v, name), shallowest first so deeper keys win."""
    found: list[Override] = []
    problems = []
    for name, raw in environ.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        target = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if not all(target):
            fix = f"name it {ENV_PREFIX}SECTION__KEY, e.g. {ENV_PREFIX}HTTP__PORT"
            problems.append(Problem(ENVIRONMENT, name, "empty level in the name", fix))
            continue
        value: Any = raw
        # String keys (secrets above all) are taken verbatim even when they start with [ or {.
        if raw.lstrip().startswith(("[", "{")) and _type_at(target) not in (str, SecretStr):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                fix = 'give valid JSON (double-quoted strings), e.g. \'["a", "b"]\''
                problems.append(Problem(ENVIRONMENT, name, f"invalid JSON: {exc}", fix))
                continue
        found.append((target, value, name))
    found.sort(key=lambda item: (len(item[0]), item[2]))
    return found, problems


def _merge(data: dict[str, Any], path: KeyPath, value: Any) -> None:
    """Set `path` to `value`, merging JSON objects key by key into existing tables."""
    node = data
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    if isinstance(value, dict) and isinstance(node.get(path[-1]), dict):
        for key, item in value.items():
            _merge(node, (*path[-1:], key), item)
    else:
        node[path[-1]] = value


def _paths(value: Any, prefix: KeyPath) -> Iterator[KeyPath]:
    """Every path a value sets: itself (unless the root) and, for a table, all below it."""
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, str(key)))


def _origin(origins: Mapping[KeyPath, str], loc: Loc) -> str:
    """The env var behind the nearest recorded path at or above `loc`; "" for the file."""
    for end in range(len(loc), 0, -1):
        name = origins.get(tuple(str(p) for p in loc[:end]))
        if name is not None:
            return name
    return ""


def _from_error(error: ErrorDetails, file: Path, origins: Mapping[KeyPath, str]) -> Problem:
    """Map one pydantic error to a Problem naming the file key or env var that caused it."""
    loc, kind = tuple(error["loc"]), error["type"]
    path = tuple(str(p) for p in loc if isinstance(p, str))
    name = _origin(origins, loc)
    source, key = (ENVIRONMENT, name) if name else (str(file), dotted(loc))
    value = error.get("input")
    message = error["msg"].removeprefix("Value error, ")
    # Never echo a secret, nor a database URL (it may carry a password).
    hidden = SECRET_PATHS | {("database", "url")}
    is_secret = any(loc[:n] in hidden for n in range(len(loc) + 1))
    if isinstance(value, str | int | float) and not is_secret and kind != "value_error":
        message += f" (got {value!r:.60})"
    if kind == "extra_forbidden":
        message = "unknown section" if isinstance(value, dict) else "unknown key"
        return Problem(source, key, message, _suggest(path, bool(name)))
    if kind == "missing":
        message = f"required key {dotted(path)} is missing" if name else "required key is missing"
        fix = f"add {path[-1]} = ... under [{dotted(path[:-1])}], or set {env_var(path)}"
        return Problem(source, key, message, fix)
    return Problem(source, key, message, _fix(kind, path, name, error.get("ctx", {})))


def _suggest(path: KeyPath, from_env: bool) -> str:
    """A 'did you mean' for an unknown key, from the keys its section does have."""
    parent = _type_at(path[:-1])
    known = list(parent.model_fields) if _is_model(parent) else []
    close = difflib.get_close_matches(path[-1], known, n=1)
    if not close:
        return f"remove it; the keys here are: {', '.join(known) or '(none)'}"
    meant = (*path[:-1], close[0])
    if meant in SECRET_PATHS:
        return f"did you mean the secret {dotted(meant)}? set {env_var(meant)} instead"
    return f"did you mean {env_var(meant) if from_env else close[0]}? rename it, or remove it"


def _fix(kind: str, path: KeyPath, name: str, ctx: Mapping[str, Any]) -> str:
    """One sentence on how to fix a value pydantic refused, in file or environment terms."""
    unquoted = "" if name else ", without quotes"
    if kind == "list_type":
        return f'give a JSON list, e.g. {name}=\'["a", "b"]\'' if name else "use a TOML array"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"give a JSON object, or set {name}__KEY" if name else f"make it [{dotted(path)}]"
    if kind == "literal_error":
        return f"use one of {ctx.get('expected', 'the listed values')}"
    if kind.startswith(("int_", "float_")):
        return f"give a {'whole ' if kind.startswith('int_') else ''}number{unquoted}"
    if kind.startswith(("greater_", "less_")):
        return "use a value within the range given"
    if kind.startswith("bool_"):
        return f"use true or false{unquoted}"
    if kind == "string_type":
        return "write the value in double quotes"
    return f"correct the value (see {DOCS})"


def _unwrap(tp: Any) -> Any:
    """The type inside Annotated[...] and `X | None`."""
    if get_origin(tp) is Annotated:
        return _unwrap(get_args(tp)[0])
    args = [a for a in get_args(tp) if a is not type(None)]
    is_optional = get_origin(tp) in (Union, types.UnionType) and len(args) == 1
    return _unwrap(args[0]) if is_optional else tp


def _is_model(tp: Any) -> bool:
    """Whether a declared type is a config section (a pydantic model class)."""
    return get_origin(tp) is None and isinstance(tp, type) and issubclass(tp, BaseModel)


def _type_at(path: KeyPath) -> Any:
    """The declared type at a config path, or None when no field is there."""
    tp: Any = Settings
    for part in path:
        if _is_model(tp) and part in tp.model_fields:
            tp = _unwrap(tp.model_fields[part].annotation)
        elif get_origin(tp) is dict:
            tp = _unwrap(get_args(tp)[1])
        else:
            return None
    return tp


def _secret_paths(model: type[BaseModel], prefix: KeyPath) -> Iterator[KeyPath]:
    """Every SecretStr field, however deeply nested."""
    for name, info in model.model_fields.items():
        tp = _unwrap(info.annotation)
        if tp is SecretStr:
            yield (*prefix, name)
        elif _is_model(tp):
            yield from _secret_paths(tp, (*prefix, name))


SECRET_PATHS: frozenset[KeyPath] = frozenset(_secret_paths(Settings, ()))
"""Config paths of every secret: accepted from the environment only."""
