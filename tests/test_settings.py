"""Loading settings: defaults, file plus environment, and every problem reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.settings import SECRET_PATHS, Problem, Settings, load_or_exit, load_settings

# CONTRACT.md section 1, verbatim: placeholders and all, no secrets.
CONTRACT_SAMPLE = """\
[database]
url = "sqlite+aiosqlite:///./bridge.db"      # or postgresql+asyncpg://...

[http]
host = "127.0.0.1"
port = 8080

[dingtalk]
mode = "stream"                               # "stream" (default) or "http" (encrypted HTTP callbacks)
api_base = "https://api.dingtalk.com"         # new-style OpenAPI
oapi_base = "https://oapi.dingtalk.com"       # old-style OpenAPI, where used
app_key = "..."                               # also called clientId
# app_secret (clientSecret): a secret, from the environment only: APPROVAL_BRIDGE__DINGTALK__APP_SECRET
robot_code = "..."                            # the app's robot, for chat messages
admins = ["staffId1"]                         # DingTalk user ids allowed to run admin commands
# for mode = "http": callback_token and callback_aes_key (43 chars), both secrets; the owner key checked
# in each message is app_key, or callback_owner_key (the corpId) for a corp-level subscription

[erp]
adapter = "generic"                           # generic | kingdee | odoo | ...
base_url = "http://127.0.0.1:9000"
# webhook_secret: HMAC key for sections 2 and 3, from the environment only: APPROVAL_BRIDGE__ERP__WEBHOOK_SECRET

# One section per native adapter; its secret comes from the environment, e.g.
# APPROVAL_BRIDGE__ERP__KINGDEE__APP_SECRET, APPROVAL_BRIDGE__ERP__ODOO__API_KEY,
# APPROVAL_BRIDGE__ERP__ERPNEXT__API_SECRET.
[erp.kingdee]
server_url = "http://erp.example.com/k3cloud/"
acct_id = "5f0000000000aa"
username = "bridge"
app_id = "123456_..."
lcid = 2052
org_number = "100"
poll_interval_s = 60

[erp.odoo]
url = "https://odoo.example.com"
db = "prod"
username = "bridge@example.com"
poll_interval_s = 60

[erp.erpnext]
url = "https://erp.example.com"
api_key = "..."
poll_interval_s = 60

[approvals.purchase_order]
process_code = "PROC-..."                     # DingTalk approval template for purchase orders

[approvals.replenishment]
process_code = "PROC-..."                     # template for below-safety-stock purchase requests

[users]                                       # ERP user -> DingTalk user id
"u1001" = "dt-user-1001"
"""  # noqa: E501


DEFAULT_ERP = "http://127.0.0.1:9000"


def write(tmp_path: Path, text: str, name: str = "bridge.toml") -> Path:
    """A real config file in the test's folder."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def keys(problems: list[Problem]) -> set[tuple[str, str]]:
    """(source, key) of each problem, for assertions that ignore wording."""
    return {(p.source, p.key) for p in problems}


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./bridge.toml here
    result = load_settings(None, {})
    assert result.problems == []
    assert result.settings == Settings()
    assert result.file == Path("bridge.toml")
    erp = result.settings.erp
    assert (erp.adapter, erp.base_url, erp.webhook_secret) == ("generic", DEFAULT_ERP, None)
    assert (erp.max_body_bytes, erp.timestamp_tolerance_s) == (1024 * 1024, 300)


def test_contract_sample_loads(tmp_path: Path) -> None:
    result = load_settings(write(tmp_path, CONTRACT_SAMPLE), {})
    assert result.problems == []
    settings = result.settings
    assert settings is not None
    assert settings.dingtalk.admins == ["staffId1"]
    assert settings.erp.kingdee is not None
    assert (settings.erp.kingdee.lcid, settings.erp.kingdee.app_secret) == (2052, None)
    assert settings.erp.odoo is not None
    assert settings.erp.odoo.db == "prod"
    assert settings.erp.erpnext is not None
    assert settings.erp.erpnext.poll_interval_s == 60
    assert settings.approvals.purchase_order.process_code == "PROC-..."
    assert settings.users == {"u1001": "dt-user-1001"}


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    file = write(tmp_path, CONTRACT_SAMPLE)
    environ = {
        "APPROVAL_BRIDGE__HTTP__PORT": "9090",
        "approval_bridge__http__host": "10.1.2.3",  # names are case-insensitive
        "APPROVAL_BRIDGE__ERP__KINGDEE__APP_SECRET": "kd-secret",
        "APPROVAL_BRIDGE__ERP__KINGDEE__LCID": "1033",
        "APPROVAL_BRIDGE__ERP__WEBHOOK_SECRET": "{starts-like-json",
        "APPROVAL_BRIDGE__DINGTALK__ADMINS": '["a", "b"]',
        "APPROVAL_BRIDGE__DINGTALK__ALLOW_READONLY_FOR_ALL": "true",
        "APPROVAL_BRIDGE__USERS": '{"U2002": "dt-user-2002"}',
        "APPROVAL_BRIDGE__LOG__LEVEL": "debug",
        "UNRELATED": "ignored",
    }
    result = load_settings(file, environ)
    assert result.problems == []
    settings = result.settings
    assert settings is not None
    assert settings.http.port == 9090
    assert settings.http.host == "10.1.2.3"
    kingdee = settings.erp.kingdee
    assert kingdee is not None
    assert kingdee.app_secret is not None
    assert kingdee.app_secret.get_secret_value() == "kd-secret"
    assert kingdee.lcid == 1033
    assert kingdee.server_url == "http://erp.example.com/k3cloud/"  # the rest of the file stays
    assert settings.erp.webhook_secret is not None
    assert settings.erp.webhook_secret.get_secret_value() == "{starts-like-json"
    assert settings.dingtalk.admins == ["a", "b"]
    assert settings.dingtalk.allow_readonly_for_all is True
    assert settings.users == {"u1001": "dt-user-1001", "U2002": "dt-user-2002"}
    assert settings.log.level == "DEBUG"
    assert result.locate(("http", "port")) == ("environment", "APPROVAL_BRIDGE__HTTP__PORT")
    assert result.locate(("http", "host")) == ("environment", "approval_bridge__http__host")
    assert result.locate(("erp", "base_url")) == (str(file), "erp.base_url")


def test_json_section_merges_and_deeper_variables_win(tmp_path: Path) -> None:
    file = write(tmp_path, '[http]\nhost = "10.0.0.1"\n')
    environ = {
        "APPROVAL_BRIDGE__HTTP": '{"port": 7000}',
        "APPROVAL_BRIDGE__HTTP__PORT": "7001",
    }
    settings = load_settings(file, environ).settings
    assert settings is not None
    assert settings.http.host == "10.0.0.1"
    assert settings.http.port == 7001


def test_config_file_named_by_the_environment(tmp_path: Path) -> None:
    file = write(tmp_path, "[http]\nport = 8181\n", name="other.toml")
    result = load_settings(None, {"APPROVAL_BRIDGE_CONFIG": str(file)})
    assert result.file == file
    assert result.settings is not None
    assert result.settings.http.port == 8181


def test_a_named_file_that_is_missing_is_a_problem(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    by_argument = load_settings(missing, {})
    assert by_argument.settings is None
    assert keys(by_argument.problems) == {(str(missing), "")}
    by_env = load_settings(None, {"APPROVAL_BRIDGE_CONFIG": str(missing)})
    assert by_env.settings is None
    assert keys(by_env.problems) == {("environment", "APPROVAL_BRIDGE_CONFIG")}


def test_many_mistakes_are_reported_at_once(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        """\
[http]
port = 70000

[erp]
base_ulr = "http://erp.local"
webhook_secret = "do-not-echo-me"

[dingtallk]
app_key = "x"

[users]
u1 = 5
""",
    )
    environ = {
        "APPROVAL_BRIDGE__JOBS__WORKERS": "many",
        "APPROVAL_BRIDGE__DINGTALK__ADMINS": "not-a-list",
        "APPROVAL_BRIDGE__ERP__BASEURL": "http://erp.local",
        "APPROVAL_BRIDGE__TIMEZONE": "Mars/Olympus",
    }
    result = load_settings(file, environ)
    assert result.settings is None
    by_key = {p.key: p for p in result.problems}
    source = str(file)
    assert keys(result.problems) == {
        (source, "http.port"),
        (source, "erp.base_ulr"),
        (source, "erp.webhook_secret"),
        (source, "dingtallk"),
        (source, "users.u1"),
        ("environment", "APPROVAL_BRIDGE__JOBS__WORKERS"),
        ("environment", "APPROVAL_BRIDGE__DINGTALK__ADMINS"),
        ("environment", "APPROVAL_BRIDGE__ERP__BASEURL"),
        ("environment", "APPROVAL_BRIDGE__TIMEZONE"),
    }
    assert "65535" in by_key["http.port"].message
    assert "did you mean base_url?" in by_key["erp.base_ulr"].fix
    assert "did you mean dingtalk?" in by_key["dingtallk"].fix
    assert by_key["dingtallk"].message == "unknown section"
    assert by_key["erp.webhook_secret"].message == (
        "secret in file: move it to APPROVAL_BRIDGE__ERP__WEBHOOK_SECRET"
    )
    assert "double quotes" in by_key["users.u1"].fix
    assert "integer" in by_key["APPROVAL_BRIDGE__JOBS__WORKERS"].message
    assert "JSON list" in by_key["APPROVAL_BRIDGE__DINGTALK__ADMINS"].fix
    assert "APPROVAL_BRIDGE__ERP__BASE_URL" in by_key["APPROVAL_BRIDGE__ERP__BASEURL"].fix
    assert "Mars/Olympus" in by_key["APPROVAL_BRIDGE__TIMEZONE"].message
    assert all("do-not-echo-me" not in str(p) for p in result.problems)
    assert all(p.severity == "error" and p.fix for p in result.problems)


def test_toml_syntax_error_names_the_line_and_env_is_still_checked(tmp_path: Path) -> None:
    file = write(tmp_path, '[http]\nport = 8081\n[erp\nbase_url = "x"\n')
    environ = {
        "APPROVAL_BRIDGE__HTTP__PORT": "eighty",
        "APPROVAL_BRIDGE__DINGTALK__ADMINS": '["unterminated"',
        "APPROVAL_BRIDGE____PORT": "1",
    }
    result = load_settings(file, environ)
    assert result.settings is None
    syntax = result.problems[0]
    assert (syntax.source, syntax.key) == (str(file), "")
    assert "invalid TOML" in syntax.message
    assert "line 3" in syntax.message
    assert keys(result.problems[1:]) == {
        ("environment", "APPROVAL_BRIDGE__HTTP__PORT"),
        ("environment", "APPROVAL_BRIDGE__DINGTALK__ADMINS"),
        ("environment", "APPROVAL_BRIDGE____PORT"),
    }


def test_secret_in_file_is_reported_and_not_used(tmp_path: Path) -> None:
    odoo = '[erp.odoo]\nurl = "https://odoo.local"\ndb = "d"\nusername = "u"\napi_key = "in-file"\n'
    file = write(tmp_path, odoo + '[dingtalk]\ncallback_token = "t"\n')
    result = load_settings(file, {"APPROVAL_BRIDGE__ERP__ODOO__API_KEY": "from-env"})
    assert keys(result.problems) == {
        (str(file), "erp.odoo.api_key"),
        (str(file), "dingtalk.callback_token"),
    }
    settings = result.settings
    assert settings is not None  # built, so `check` can still report everything else
    assert settings.erp.odoo is not None
    assert settings.erp.odoo.api_key == SecretStr("from-env")
    assert settings.dingtalk.callback_token is None


def test_every_secret_is_env_only() -> None:
    assert {".".join(p) for p in SECRET_PATHS} == {
        "dashboard.token",
        "dashboard.password",
        "dingtalk.app_secret",
        "dingtalk.callback_token",
        "dingtalk.callback_aes_key",
        "erp.webhook_secret",
        "erp.kingdee.app_secret",
        "erp.odoo.api_key",
        "erp.erpnext.api_secret",
        "erp.erpnext.webhook_secret",
    }


def test_required_keys_of_a_native_section(tmp_path: Path) -> None:
    file = write(tmp_path, '[erp.erpnext]\nurl = "ftp://erp.local"\n')
    result = load_settings(file, {})
    by_key = {p.key: p for p in result.problems}
    assert set(by_key) == {"erp.erpnext.url", "erp.erpnext.api_key"}
    assert "http" in by_key["erp.erpnext.url"].message
    assert by_key["erp.erpnext.api_key"].message == "required key is missing"
    assert "APPROVAL_BRIDGE__ERP__ERPNEXT__API_KEY" in by_key["erp.erpnext.api_key"].fix


def test_load_or_exit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "[http]\nport = 8082\n")
    assert load_or_exit(good, {}).http.port == 8082
    bad = write(tmp_path, "[http]\nport = -1\n", name="bad.toml")
    with pytest.raises(SystemExit) as exit_info:
        load_or_exit(bad, {})
    assert exit_info.value.code == 2
    assert f"{bad}:http.port: error:" in capsys.readouterr().err
