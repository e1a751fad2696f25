"""Schema migrations (alembic) behind `approval-bridge db upgrade`, and the check `run` makes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from approvals.db.engine import Database

_SCRIPTS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    """An alembic configuration for the packaged migrations (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.set_main_option("sqlalchemy.url", url)
    return config


@dataclass(frozen=True)
class SchemaStatus:
    """Where the database's schema stands against the code's migrations."""

    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        """True when no migration is missing."""
        return self.current == self.head


async def upgrade(db: Database) -> SchemaStatus:
    """Create or migrate the schema to the newest revision."""
    config = alembic_config(db.engine.url.render_as_string(hide_password=False))

    def _upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with db.engine.begin() as conn:
        await conn.run_sync(_upgrade)
    return await status(db)


async def status(db: Database) -> SchemaStatus:
    """The schema revision in the database and the newest one the code knows."""
    head = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    if head is None:
        raise RuntimeError("no migrations packaged")

    def _current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with db.engine.connect() as conn:
        current = await conn.run_sync(_current)
    return SchemaStatus(current=current, head=head)
