"""The `approval-bridge` console script as a user runs it (CONTRACT §1 and §4)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from approvals.config import DatabaseConfig
from approvals.db.types import from_micros
from approvals.memory import MemoryGateway, MemoryNotifier
from bot.app import Ports, SchemaOutdated, create_app
from bot.settings import Settings
from tests import dbutil

SCRIPT = Path(sys.executable).with_name("approval-bridge")
SECRETS = {
    "APPROVAL_BRIDGE__ERP__WEBHOOK_SECRET": "whsec-cli-test",
    "APPROVAL_BRIDGE__DINGTALK__APP_SECRET": "appsec-cli-test",
}

CONFIG = """\
[database]
url = "sqlite+aiosqlite:///{db}"

[http]
host = "127.0.0.1"
port = {port}

[dingtalk]
app_key = "dingabc"
robot_code = "dingabc"
admins = ["dt-user-1001"]

[erp]
adapter = "generic"
base_url = "http://127.0.0.1:9000"

[approvals.purchase_order]
process_code = "{po_code}"

[approvals.replenishment]
process_code = "PROC-7F3A21B0-RP"

[users]
"u1001" = "dt-user-1001"
"""

HEADER = "material_code,supplier_code,unit_price,currency,quantity,ordered_at,doc_no"
GOOD_CSV = (
    "\ufeff"  # a BOM, as spreadsheet programs write it
    + "doc_no,material_code,supplier_code,unit_price,currency,quantity,ordered_at\n"
    + "PO-H-1,M-001,S001,11.20,CNY,100,2026-01-05\n"
    + "PO-H-1,M-002,S001,0.40,CNY,5000,2026-01-05\n"
    + "PO-H-2,M-001,S002,12.40,CNY,300,2026-03-01T09:30:00+08:00\n"
    + "PO-H-3,M-003,S002,260,cny,10,2026-04-10\n"
)


def write_config(
    folder: Path, db: Path, *, port: int = 18080, po_code: str = "PROC-7F3A21B0-PO"
) -> Path:
    path = folder / "bridge.toml"
    path.write_text(CONFIG.format(db=db, port=port, po_code=po_code), encoding="utf-8")
    return path


def cli(
    cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run the console script in `cwd` with a clean APPROVAL_BRIDGE* environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("APPROVAL_BRIDGE")}
    base["PYTHONUTF8"] = "1"
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "bot.cli"]
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=base | (SECRETS if env is None else env),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
    )


def price_rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT doc_no, material_code, supplier_code, unit_price, currency, quantity, "
            "amount, ordered_at, source FROM price ORDER BY doc_no, material_code"
        ).fetchall()


def tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


@pytest.fixture
def migrated(tmp_path: Path, sqlite_template: Path) -> tuple[Path, Path]:
    """(config file, database file) of a migrated SQLite database."""
    db = tmp_path / "bridge.db"
    dbutil.copy_sqlite(sqlite_template, db)
    return write_config(tmp_path, db), db


def test_db_upgrade_creates_the_schema_then_says_it_is_current(tmp_path: Path) -> None:
    db = tmp_path / "data" / "bridge.db"
    db.parent.mkdir()
    write_config(tmp_path, db)  # found as ./bridge.toml, the default

    first = cli(tmp_path, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert "upgraded from nothing to" in first.stdout
    head = first.stdout.strip().rsplit(" ", 1)[-1]
    assert {"approval", "revision", "job", "audit", "price", "alembic_version"} <= tables(db)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]

    second = cli(tmp_path, "db", "upgrade", "--config", str(tmp_path / "bridge.toml"))
    assert second.returncode == 0, second.stderr
    assert f"already at {head}" in second.stdout
    assert "upgraded" not in second.stdout


def test_prices_import_is_idempotent(tmp_path: Path, migrated: tuple[Path, Path]) -> None:
    config, db = migrated
    csv = tmp_path / "prices.csv"
    csv.write_text(GOOD_CSV, encoding="utf-8")

    first = cli(tmp_path, "prices", "import", str(csv), "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert "4 rows read, 4 loaded, 0 skipped" in first.stdout
    loaded = price_rows(db)
    assert len(loaded) == 4
    by_key = {(r[0], r[1]): r for r in loaded}
    assert from_micros(by_key["PO-H-1", "M-001"][3]) == Decimal("11.20")
    assert by_key["PO-H-3", "M-003"][4] == "CNY"
    assert {r[8] for r in loaded} == {"import"}

    again = cli(tmp_path, "prices", "import", str(csv), "--config", str(config))
    assert again.returncode == 0, again.stderr
    assert "4 rows read, 4 loaded, 0 skipped" in again.stdout
    assert price_rows(db) == loaded, "importing the same file again changed the table"

    # A row is identified by (doc_no, material_code): a new price updates it, never duplicates it.
    csv.write_text(GOOD_CSV.replace("PO-H-1,M-001,S001,11.20", "PO-H-1,M-001,S001,11.35"))
    changed = cli(tmp_path, "prices", "import", str(csv), "--config", str(config))
    assert changed.returncode == 0, changed.stderr
    after = {(r[0], r[1]): r for r in price_rows(db)}
    assert set(after) == set(by_key)
    assert from_micros(after["PO-H-1", "M-001"][3]) == Decimal("11.35")
    assert {k: v for k, v in after.items() if k != ("PO-H-1", "M-001")} == {
        k: v for k, v in by_key.items() if k != ("PO-H-1", "M-001")
    }


def test_prices_import_skips_bad_rows_and_names_their_lines(
    tmp_path: Path, migrated: tuple[Path, Path]
) -> None:
    config, db = migrated
    csv = tmp_path / "mixed.csv"
    csv.write_text(
        f"{HEADER}\n"
        "M-001,S001,11.20,CNY,100,2026-01-05,PO-H-1\n"
        "M-002,S001,abc,CNY,100,2026-01-05,PO-H-2\n"
        "M-003,S001,260,CNY,10,2026-01-05,PO-H-3\n"
        "M-004,S001,1.00,CNY,10,not-a-date,PO-H-4\n",
        encoding="utf-8",
    )
    result = cli(tmp_path, "prices", "import", str(csv), "--config", str(config))
    assert result.returncode == 1, result.stderr
    assert f"{csv}:3: skipped" in result.stderr
    assert "unit_price" in result.stderr
    assert f"{csv}:5: skipped" in result.stderr
    assert "ordered_at" in result.stderr
    assert f"{csv}:2:" not in result.stderr and f"{csv}:4:" not in result.stderr
    assert "4 rows read, 2 loaded, 2 skipped" in result.stdout
    assert [(r[0], r[1]) for r in price_rows(db)] == [("PO-H-1", "M-001"), ("PO-H-3", "M-003")]


def test_prices_import_of_a_missing_file_exits_2(
    tmp_path: Path, migrated: tuple[Path, Path]
) -> None:
    config, db = migrated
    missing = tmp_path / "nowhere.csv"
    result = cli(tmp_path, "prices", "import", str(missing), "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert "nowhere.csv" in result.stderr
    assert "no such file" in result.stderr
    assert price_rows(db) == []


def test_prices_import_on_an_unmigrated_database_exits_2(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    config = write_config(tmp_path, db)
    csv = tmp_path / "prices.csv"
    csv.write_text(GOOD_CSV, encoding="utf-8")
    result = cli(tmp_path, "prices", "import", str(csv), "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert "approval-bridge db upgrade" in result.stderr
    if db.exists():  # nothing was created behind the user's back
        assert "price" not in tables(db)


def test_check_accepts_a_valid_configuration(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "bridge.db")
    result = cli(tmp_path, "check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout
    assert result.stderr == ""


def test_check_lists_every_problem(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "bridge.db", port=99999, po_code="PROC-...")
    env = {"APPROVAL_BRIDGE__DINGTALK__APP_SECRET": "appsec"}  # no webhook secret
    result = cli(tmp_path, "check", "--config", str(config), env=env)
    assert result.returncode == 1, result.stdout
    assert "configuration OK" not in result.stdout
    report = result.stderr
    assert f"{config}:http.port" in report
    assert f"{config}:approvals.purchase_order.process_code" in report
    assert "APPROVAL_BRIDGE__ERP__WEBHOOK_SECRET" in report
    assert "3 errors" in report
    assert "not valid" in report


def test_run_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "fresh.db")
    result = cli(tmp_path, "run", "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert "approval-bridge db upgrade" in result.stderr
    assert "Traceback" not in result.stderr


async def test_create_app_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    app = create_app(
        Settings(database=DatabaseConfig(url=url)), Ports(MemoryGateway(), MemoryNotifier())
    )
    runner = web.AppRunner(app)
    with pytest.raises(SchemaOutdated, match="approval-bridge db upgrade"):
        await runner.setup()
    await runner.cleanup()
