"""`approval-bridge check`: semantic problems, the report, and the exit code."""

from __future__ import annotations

import io
from pathlib import Path

from bot.check import check, format_report, run_check
from bot.settings import Problem
from tests.test_settings import CONTRACT_SAMPLE, keys, write

VALID = """\
[database]
url = "postgresql+asyncpg://bridge@db.internal/bridge"

[dingtalk]
app_key = "dingabc"
robot_code = "dingabc"
admins = ["dt-user-1001"]

[approvals.purchase_order]
process_code = "PROC-7F3A21B0-PO"

[approvals.replenishment]
process_code = "PROC-7F3A21B0-RP"

[users]
"u1001" = "dt-user-1001"
"""

SECRETS = {
    "APPROVAL_BRIDGE__ERP__WEBHOOK_SECRET": "whsec",
    "APPROVAL_BRIDGE__DINGTALK__APP_SECRET": "appsec",
}
AES_KEY = "a" * 43


def run(path: Path | None, environ: dict[str, str]) -> tuple[int, str, str]:
    """run_check with captured output."""
    out, err = io.StringIO(), io.StringIO()
    code = run_check(path, environ, out, err)
    return code, out.getvalue(), err.getvalue()


def test_a_valid_configuration_passes(tmp_path: Path) -> None:
    file = write(tmp_path, VALID)
    assert check(file, SECRETS) == []
    code, out, err = run(file, SECRETS)
    assert (code, out, err) == (0, f"configuration OK: {file}\n", "")


def test_defaults_report_what_is_missing(tmp_path: Path) -> None:
    file = write(tmp_path, "")
    problems = check(file, {})
    severity = {p.key: p.severity for p in problems}
    assert severity == {
        "APPROVAL_BRIDGE__ERP__WEBHOOK_SECRET": "error",
        "dingtalk.app_key": "warning",
        "APPROVAL_BRIDGE__DINGTALK__APP_SECRET": "warning",
        "approvals.purchase_order.process_code": "error",
        "approvals.replenishment.process_code": "error",
    }
    assert all("reach DingTalk" in p.message for p in problems if p.severity == "warning")


def test_contract_sample_placeholders_are_flagged(tmp_path: Path) -> None:
    file = write(tmp_path, CONTRACT_SAMPLE)
    problems = {p.key: p for p in check(file, SECRETS)}
    assert set(problems) == {
        "approvals.purchase_order.process_code",
        "approvals.replenishment.process_code",
    }  # staffId1 is not among the [users] ids, which is fine: an admin need not be an ERP user
    assert "placeholder 'PROC-...'" in problems["approvals.replenishment.process_code"].message


def test_http_mode_needs_callback_keys(tmp_path: Path) -> None:
    file = write(tmp_path, VALID.replace("[dingtalk]\n", '[dingtalk]\nmode = "http"\n'))
    assert keys(check(file, SECRETS)) == {
        ("environment", "APPROVAL_BRIDGE__DINGTALK__CALLBACK_TOKEN"),
        ("environment", "APPROVAL_BRIDGE__DINGTALK__CALLBACK_AES_KEY"),
    }
    callback = {
        "APPROVAL_BRIDGE__DINGTALK__CALLBACK_TOKEN": "tok",
        "APPROVAL_BRIDGE__DINGTALK__CALLBACK_AES_KEY": AES_KEY,
    }
    assert check(file, SECRETS | callback) == []
    short = callback | {"APPROVAL_BRIDGE__DINGTALK__CALLBACK_AES_KEY": "tooshort"}
    [problem] = check(file, SECRETS | short)
    assert problem.key == "APPROVAL_BRIDGE__DINGTALK__CALLBACK_AES_KEY"
    assert "43" in problem.message
    assert "tooshort" not in str(problem)


def test_database_url_driver_and_password(tmp_path: Path) -> None:
    file = write(tmp_path, VALID.replace("postgresql+asyncpg://bridge@", "mysql://bridge:pw@"))
    problems = check(file, SECRETS)
    assert keys(problems) == {(str(file), "database.url")}
    assert [p.message for p in problems] == [
        "unsupported driver 'mysql'",
        "password in file: secrets belong in the environment",
    ]
    assert all("pw" not in p.message for p in problems)
    from_env = {"APPROVAL_BRIDGE__DATABASE__URL": "sqlite:///x.db"}
    [problem] = check(file, SECRETS | from_env)
    assert (problem.source, problem.key) == ("environment", "APPROVAL_BRIDGE__DATABASE__URL")
    with_password = {"APPROVAL_BRIDGE__DATABASE__URL": "postgresql+asyncpg://b:pw@h/db"}
    assert check(file, SECRETS | with_password) == []


def test_users_and_admins(tmp_path: Path) -> None:
    text = VALID.replace('"u1001" = "dt-user-1001"', '"u1001" = "dt-user-1001"\n"u1002" = " "')
    file = write(tmp_path, text.replace('admins = ["dt-user-1001"]', 'admins = ["dt-user-9"]'))
    problems = {p.key: p for p in check(file, SECRETS)}
    assert set(problems) == {"users.u1002"}  # an admin who is no ERP user is valid
    assert problems["users.u1002"].severity == "error"


def test_native_adapter_needs_its_section_and_secret(tmp_path: Path) -> None:
    file = write(tmp_path, VALID + '\n[erp]\nadapter = "odoo"\n')
    [missing] = check(file, SECRETS)
    assert (missing.key, missing.message) == ("erp.adapter", "'odoo' needs an [erp.odoo] section")
    section = '[erp.odoo]\nurl = "https://odoo.local"\ndb = "prod"\nusername = "bridge"\n'
    file = write(tmp_path, VALID + '\n[erp]\nadapter = "odoo"\n' + section)
    assert keys(check(file, SECRETS)) == {("environment", "APPROVAL_BRIDGE__ERP__ODOO__API_KEY")}
    assert check(file, SECRETS | {"APPROVAL_BRIDGE__ERP__ODOO__API_KEY": "k"}) == []


def test_load_problems_come_first_and_all_together(tmp_path: Path) -> None:
    file = write(tmp_path, VALID + '\n[erp]\nwebhook_secret = "oops"\n')
    problems = check(file, {"APPROVAL_BRIDGE__DINGTALK__APP_SECRET": "appsec"})
    assert [(p.source, p.key) for p in problems] == [
        (str(file), "erp.webhook_secret"),  # from loading
        ("environment", "APPROVAL_BRIDGE__ERP__WEBHOOK_SECRET"),  # the secret was not used
    ]
    broken = write(tmp_path, "[http\n", name="broken.toml")
    [syntax] = check(broken, SECRETS)
    assert "line 1" in syntax.message


def test_report_groups_by_source() -> None:
    problems = [
        Problem("environment", "APPROVAL_BRIDGE__HTTP__PORT", "bad port", "give a number"),
        Problem("bridge.toml", "erp.base_ulr", "unknown key", "did you mean base_url?"),
        Problem("bridge.toml", "dingtalk.app_key", "empty", "set it", "warning"),
    ]
    assert format_report(problems) == (
        "bridge.toml: 1 error, 1 warning\n"
        "  bridge.toml:erp.base_ulr: error: unknown key — did you mean base_url?\n"
        "  bridge.toml:dingtalk.app_key: warning: empty — set it\n"
        "\n"
        "environment: 1 error\n"
        "  environment:APPROVAL_BRIDGE__HTTP__PORT: error: bad port — give a number\n"
        "\n"
        "2 errors, 1 warning: the configuration is not valid"
    )
    assert format_report([]) == "no problems"


def test_run_check_exit_codes_and_output(tmp_path: Path) -> None:
    file = write(tmp_path, VALID.replace("dingabc", ""))  # only warnings
    code, out, err = run(file, SECRETS)
    assert code == 1
    assert out == ""
    assert f"{file}:dingtalk.app_key: warning: app_key (clientId) is empty" in err
    assert err.endswith("1 warning: the configuration is not valid\n")
    code, out, err = run(tmp_path / "missing.toml", SECRETS)
    assert code == 1
    assert f"{tmp_path / 'missing.toml'}: error: no such file" in err


def test_refused_values_do_not_hide_the_semantic_checks(tmp_path: Path) -> None:
    text = VALID.replace("PROC-7F3A21B0-PO", "PROC-...").replace('"dt-user-1001"\n', "5\n")
    file = write(
        tmp_path, text + '\n[erp]\nadapter = "kingdee"\nbase_ulr = "x"\n[erp.kingdee]\nlcid = 1\n'
    )
    problems = {p.key: p for p in check(file, SECRETS)}
    assert set(problems) == {
        "users.u1001",  # refused by validation ...
        "erp.base_ulr",
        *(
            f"erp.kingdee.{key}"
            for key in ("server_url", "acct_id", "username", "app_id", "org_number")
        ),
        "approvals.purchase_order.process_code",  # ... and still checked beyond it
    }  # but nothing on the adapter


def test_unknown_form_field_keys_are_named(tmp_path: Path) -> None:
    text = VALID.replace(
        "[approvals.purchase_order]\n",
        '[approvals.purchase_order]\nfields = {supplier = "供方", suplier = "x"}\n',
    )
    problems = {p.key: p for p in check(write(tmp_path, text), SECRETS)}
    assert set(problems) == {"approvals.purchase_order.fields.suplier"}
    assert "supplier" in problems["approvals.purchase_order.fields.suplier"].fix


def test_a_database_url_with_a_bad_port_is_reported_not_a_crash(tmp_path: Path) -> None:
    bad_port = {"APPROVAL_BRIDGE__DATABASE__URL": "postgresql+asyncpg://b:pw@host:x/db"}
    [problem] = check(write(tmp_path, VALID), SECRETS | bad_port)
    assert (problem.key, problem.message) == (
        "APPROVAL_BRIDGE__DATABASE__URL",
        "not a database URL",
    )
    assert "pw" not in str(problem)


def test_a_secret_pasted_into_another_key_is_masked_in_the_report(tmp_path: Path) -> None:
    secret = "s3cret-value-1234"
    environ = SECRETS | {
        "APPROVAL_BRIDGE__DINGTALK__APP_SECRET": secret,
        "APPROVAL_BRIDGE__HTTP__PORT": secret,
    }
    code, _, err = run(write(tmp_path, VALID), environ)
    assert code == 1
    assert "APPROVAL_BRIDGE__HTTP__PORT: error: Input should be a valid integer" in err
    assert secret not in err
    assert "(got '***')" in err
