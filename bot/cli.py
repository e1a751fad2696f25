"""The `approval-bridge` command line (CONTRACT section 1)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from approvals import failpoints
from approvals.db.engine import Database
from approvals.db.migrate import status, upgrade
from approvals.price_import import ImportReport, import_prices
from approvals.progress import ProgressBar
from bot import logs
from bot.app import SchemaOutdated, create_app
from bot.dingtalk import StartupError
from bot.heap import settle_heap
from bot.metrics import METRICS
from bot.server import serve
from bot.settings import Settings, load_or_exit


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="approval-bridge",
        description="Bridge ERP purchase orders and stock alerts to DingTalk approvals.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument(
            "--config",
            type=Path,
            help="TOML file (default ./bridge.toml or $APPROVAL_BRIDGE_CONFIG)",
        )
        return sub

    demo = commands.add_parser("demo", help="run the whole flow locally with no credentials")
    demo.add_argument(
        "--keep-running", action="store_true", help="leave the services up and print their URLs"
    )
    demo.add_argument(
        "--erp",
        choices=("kingdee", "odoo", "erpnext"),
        help="poll a native ERP's simulator instead of the reference ERP's webhooks",
    )
    with_config(commands.add_parser("run", help="run the service"))
    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    with_config(db_commands.add_parser("upgrade", help="create or migrate the schema"))
    prices = commands.add_parser("prices", help="price history")
    price_commands = prices.add_subparsers(dest="prices_command", required=True, metavar="ACTION")
    imp = with_config(
        price_commands.add_parser("import", help="load historical purchase prices from CSV")
    )
    imp.add_argument("file", type=Path, help="CSV file (CONTRACT section 4)")
    with_config(
        commands.add_parser("check", help="validate the configuration and report every problem")
    )
    bench = commands.add_parser(
        "bench", help="measure speed, economy and footprint against a real `run` process"
    )
    bench.add_argument("--quick", action="store_true", help="reduced sizes, well under a minute")
    bench.add_argument("--json", action="store_true", help="print the report as JSON")
    bench.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this scenario (repeatable): intake, pipeline, economy, price, memory, burst",
    )
    bench.add_argument(
        "--database-url",
        help="a PostgreSQL server URL; each scenario gets a new database on it (default SQLite)",
    )
    sandbox = commands.add_parser("sandbox", help="run the DingTalk sandbox alone")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8790)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    if args.command == "check":
        from bot.check import run_check

        return run_check(args.config, os.environ, sys.stdout, sys.stderr)
    if args.command == "sandbox":
        return _sandbox(args.host, args.port)
    if args.command == "bench":
        from bot.bench.runner import run_bench

        logs.configure("WARNING")
        return run_bench(
            quick=args.quick,
            as_json=args.json,
            only=args.scenario,
            database_url=args.database_url,
        )
    if args.command == "demo":
        from bot.demo import run_demo

        logs.configure("WARNING")
        return asyncio.run(run_demo(keep_running=args.keep_running, erp=args.erp))
    settings = load_or_exit(args.config)
    logs.configure_from(settings)
    if args.command == "db":
        return asyncio.run(_db_upgrade(settings))
    if args.command == "prices":
        return asyncio.run(_prices_import(settings, args.file))
    return _run(settings)


def _sandbox(host: str, port: int) -> int:
    from bot.sandbox.server import serve

    logs.configure("INFO")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host, port))
    return 0


async def _db_upgrade(settings: Settings) -> int:
    db = Database.from_config(settings.database)
    try:
        before = await status(db)
        after = await upgrade(db)
    finally:
        await db.dispose()
    if before.current == after.current:
        print(f"database schema already at {after.current}")
    else:
        print(f"database schema upgraded from {before.current or 'nothing'} to {after.current}")
    return 0


async def _prices_import(settings: Settings, path: Path) -> int:
    db = Database.from_config(settings.database)
    try:
        schema = await status(db)
        if not schema.up_to_date:
            print(
                "the database schema is outdated: run `approval-bridge db upgrade` first",
                file=sys.stderr,
            )
            return 2
        bar = ProgressBar(sys.stderr)
        report = await import_prices(db, path, bar, settings.timezone)
        bar.close()
    finally:
        await db.dispose()
    _print_report(report)
    return report.exit_code


def _print_report(report: ImportReport) -> None:
    if report.error is not None and report.rows_read == 0:
        print(f"cannot import: {report.error}", file=sys.stderr)
        return
    if report.error is not None:
        print(f"import stopped: {report.error}", file=sys.stderr)
    for bad in report.bad_rows:
        print(f"{report.path}:{bad.line}: skipped: {bad.reason}", file=sys.stderr)
    if report.skipped > len(report.bad_rows):
        print(f"... and {report.skipped - len(report.bad_rows)} more skipped rows", file=sys.stderr)
    print(
        f"{report.path}: {report.rows_read} rows read, {report.loaded} loaded, "
        f"{report.skipped} skipped"
    )


def _run(settings: Settings) -> int:
    problem = asyncio.run(_schema_problem(settings))
    if problem is not None:
        print(f"approval-bridge run: {problem}", file=sys.stderr)
        return 2
    try:
        armed = failpoints.arm_from_env(os.environ)
    except ValueError as exc:
        print(f"approval-bridge run: {failpoints.ENV}: {exc}", file=sys.stderr)
        return 2
    if armed:
        print(f"approval-bridge run: crash points armed: {', '.join(armed)}", file=sys.stderr)
    try:
        app = create_app(settings)
        # Here rather than in create_app: tests build many apps in one process, and frozen
        # objects are never collected.
        app.on_startup.append(settle_heap)
        # Until SIGINT or SIGTERM: stop accepting, finish in-flight work, clean up.
        asyncio.run(
            serve(
                app,
                settings.http,
                lambda text: print(f"approval-bridge run: {text}", file=sys.stderr),
                app[METRICS].connection_cut,
            )
        )
    except (SchemaOutdated, StartupError) as exc:
        print(f"approval-bridge run: {exc}", file=sys.stderr)
        return 2
    return 0


async def _schema_problem(settings: Settings) -> str | None:
    """Why the database cannot be served as it is, or None."""
    db = Database.from_config(settings.database)
    try:
        schema = await status(db)
    finally:
        await db.dispose()
    return None if schema.up_to_date else str(SchemaOutdated.of(schema))


if __name__ == "__main__":  # pragma: no cover
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    raise SystemExit(main())
