"""Versioned DDL: apply ``migrations/NNNN_name.sql`` (beside this file) in order, each once.

The schema lives in numbered SQL files, not in constructors, so it can be read,
reviewed and applied by hand (``clickhouse-client`` after replacing ``{database}``).
:func:`migrate` creates the database, then applies every file whose version is not
yet recorded in ``{database}.schema_migrations`` and records it; a second run
applies nothing.

File format (kept deliberately simple, no SQL parser):

- ``{database}`` is replaced by the (validated) database name;
- statements are split on a ``;`` at the end of a line, so never end a line with
  ``;`` inside a string literal or a comment;
- chunks holding only comments are skipped;
- ClickHouse DDL is not transactional: a file that fails half-way is not recorded
  and is run again from its first statement next time, so every statement must be
  idempotent (``IF NOT EXISTS``, ``CREATE OR REPLACE VIEW``).

Run migrations from one process at a time: two concurrent runs could both apply a
file (harmless, given idempotent statements) and record it twice (collapsed by the
``ReplacingMergeTree``).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

from clickhouse_connect.driver.client import Client

from sinks.clickhouse.sink import ClickHouseSink
from sinks.clickhouse.target import DEFAULT_DATABASE, validate_identifier

logger = logging.getLogger(__name__)

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)

_CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS {database}.schema_migrations
(
    version    String,
    name       String,
    checksum   String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file: ``version`` is its 4-digit prefix, ``name`` the rest."""

    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self, database: str) -> list[str]:
        return split_statements(self.sql.replace("{database}", database))


def split_statements(sql: str) -> list[str]:
    """Split on ``;`` at line ends; drop chunks that are empty or only comments."""
    statements = []
    for chunk in _STATEMENT_END.split(sql):
        code = [
            line
            for line in chunk.splitlines()
            if line.strip() and not line.strip().startswith("--")
        ]
        if code:
            statements.append(chunk.strip())
    return statements


def load_migrations() -> list[Migration]:
    """The packaged migration files, in version order."""
    found: list[Migration] = []
    for entry in resources.files("sinks.clickhouse").joinpath("migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise ValueError(
                f"migration file {entry.name!r} must be named NNNN_lower_snake_name.sql"
            )
        found.append(Migration(match.group(1), match.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    duplicates = sorted({v for v in versions if versions.count(v) > 1})
    if duplicates:
        raise ValueError(f"two migration files share version(s) {', '.join(duplicates)}")
    return found


@contextmanager
def _client_of(target: ClickHouseSink | Client) -> Iterator[Client]:
    if isinstance(target, ClickHouseSink):
        # Hold the sink's lock throughout, so no write interleaves with the DDL.
        with target.locked_client() as client:
            yield client
    else:
        yield target


def migrate(target: ClickHouseSink | Client, database: str | None = None) -> list[str]:
    """Create ``database`` and apply every pending migration; return their versions.

    ``target`` is a started :class:`~sinks.clickhouse.sink.ClickHouseSink` or a
    clickhouse-connect ``Client``. ``database`` defaults to the sink's database (or
    ``creatorpulse`` for a bare client). Returns ``[]`` when nothing was pending.
    """
    if database is None:
        database = target.database if isinstance(target, ClickHouseSink) else DEFAULT_DATABASE
    database = validate_identifier(database)
    migrations = load_migrations()
    applied_now: list[str] = []
    with _client_of(target) as client:
        client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        client.command(_CREATE_MIGRATIONS_TABLE.replace("{database}", database))
        applied = {
            str(version): str(checksum)
            for version, checksum in client.query(
                f"SELECT version, argMax(checksum, applied_at) "
                f"FROM {database}.schema_migrations GROUP BY version"
            ).result_rows
        }
        for migration in migrations:
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    # An applied file was edited: it will not run again. Say so rather
                    # than fail, so a comment fix does not block startup.
                    logger.warning(
                        "migration %s_%s changed since it was applied to %s; "
                        "add a new migration instead of editing an applied one",
                        migration.version,
                        migration.name,
                        database,
                    )
                continue
            logger.info(
                "applying migration %s_%s to %s", migration.version, migration.name, database
            )
            for statement in migration.statements(database):
                client.command(statement)
            client.insert(
                "schema_migrations",
                [[migration.version, migration.name, migration.checksum, datetime.now(UTC)]],
                column_names=["version", "name", "checksum", "applied_at"],
                database=database,
            )
            applied_now.append(migration.version)
    return applied_now
