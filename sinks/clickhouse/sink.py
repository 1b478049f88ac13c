"""The ClickHouse writer and reader: one code path for a server and for embedded chDB.

``ClickHouseSink`` turns pipeline rows into inserts (contract section 2) and answers
the few queries the CLI and the terminal leaderboard need (their SQL is in
:mod:`~sinks.clickhouse.queries`, where it connects in :mod:`~sinks.clickhouse.target`;
this module holds the lifecycle, the writes and the refusals). It talks to ClickHouse
only through clickhouse-connect's ``Client``, which serves ``http(s)://`` servers and
the in-process chDB engine (``chdb:///path``, clickhouse-connect >= 1.12 with
``chdb``) with the same API.

Writes are idempotent: ``creator_metrics`` holds whole window totals in a
``ReplacingMergeTree(version)``, and every write of creator rows re-derives the
affected ``campaign_metrics`` rows from ``creator_metrics FINAL`` in one server-side
``INSERT ... SELECT``, so campaign totals are exact however often, and in whatever
order, a window is written.

What chDB allows (clickhouse-connect 1.12.0, chdb 4.4.0 / engine 26.9, measured):

- One engine data directory per *process*. Any number of clients may be open on
  that directory (each gets its own handle, session state and lock), but opening a
  different directory while a client is still open fails with
  ``EmbeddedServer already initialized with path ...``. Once every client is closed,
  another directory can be opened (about 0.05 s; the first engine start in a process
  takes 0.5-1.5 s).
- One *process* per data directory: a second process fails with
  ``Error initializing EmbeddedServer`` (docs/design.md saw "Cannot lock file .../status").
  So in embedded mode the process that owns the store serves every query: the CLI
  and the terminal leaderboard go through this sink.
- Several clients on the one directory would work, but the sink shares ONE client
  between its writer and its readers (e.g. a terminal leaderboard thread) and
  serialises every call with a ``threading.Lock``: a query issued on a chDB handle
  whose result stream is still open silently returns an empty result, and a write
  plus its campaign refresh must not interleave with a reader. Readers in the same
  process should use this sink rather than open clients of their own; other
  processes cannot read an embedded store at all.
- The reported server time zone is the host's, and ``DateTime('UTC')`` columns come
  back in the host zone (same instant); the client is created with
  ``tz_mode="aware"`` and the sink passes times as epoch seconds or aware datetimes,
  so nothing depends on the host zone.
- The async client and external data are not supported on chDB; this sink uses
  neither. Every statement in ``sinks/clickhouse/migrations`` (``CREATE OR REPLACE VIEW``,
  ``FINAL`` inside views and subqueries, scalar subqueries, ``LEFT JOIN`` with
  ``toNullable``, ``nullIf``) runs on chDB unchanged. What ClickHouse (chDB or not)
  rejects: a ``DateTime`` query parameter given as a short epoch number (``0``), so
  times are bound as integers and converted with ``toDateTime(x, 'UTC')``.

Refusals and outages (``sinks.base``): every write raises :class:`~sinks.base.Refused`
when the rows themselves cannot be stored, and lets anything else through as an outage.
A refusal is an error of the client's serialisation (a value out of its column's
range, a wrong type: clickhouse-connect's ``DataError``, or ``OverflowError``,
``struct.error``, ``ValueError`` while the rows are prepared) or a
server error whose code says the data is bad (:data:`DATA_ERROR_CODES`), or an insert
spanning too many partitions (split, it goes through). Connection errors, timeouts and
every other server error (memory, too many parts, a missing table, authentication)
are outages.

Timeouts (``http(s)://`` only; chDB runs in-process): ``connect_timeout_s`` bounds
opening a connection and, at :meth:`ClickHouseSink.start`, the first query too, so a
server that accepts connections and never answers fails the start within it;
``timeout_s`` then bounds every send and receive of every query and insert.
"""

from __future__ import annotations

import logging
import math
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import clickhouse_connect
import urllib3
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import (
    ClickHouseError,
    DatabaseError,
    DataError,
    OperationalError,
    scrub_error_details,
)
from clickhouse_connect.driver.insert import InsertContext

from schemas.metrics import METRICS
from schemas.reference import CampaignContract, CreatorProfile
from schemas.rows import (
    CREATOR_WINDOW_COLUMNS,
    DEAD_LETTER_COLUMNS,
    CreatorWindowRow,
    DeadLetter,
    WindowKey,
)
from sinks.base import CONTRACTS_TABLE, CREATOR_METRICS_TABLE, PROFILES_TABLE, Refused
from sinks.clickhouse.queries import (
    CAMPAIGN_FILTER,
    CAMPAIGN_KNOWN_SQL,
    CONTRACTS_SQL,
    LEADERBOARD_SQL,
    LEADERBOARD_WINDOW_S,
    NEWEST_WINDOW_END_SQL,
    REFRESH_CAMPAIGNS_SQL,
    WINDOWS_ENDING_AFTER_SQL,
    ContractRow,
    LeaderRow,
    contract_row,
    leader_row,
    refresh_parameters,
    window_totals,
)
from sinks.clickhouse.target import parse_clickhouse_url, validate_identifier

# The package's name: log lines keep the name they had before the package was split.
logger = logging.getLogger("sinks.clickhouse")

#: Opening a connection, and the start-up probe: a start against a silent server fails
#: within it. Long enough for a server across a slow network, short enough for a user.
DEFAULT_CONNECT_TIMEOUT_S = 5.0
#: Every send and receive of a query or insert (clickhouse-connect's default is 300 s).
#: The server sends progress headers every 10 s or more often during a long query, so
#: only a server that stopped answering reaches it.
DEFAULT_TIMEOUT_S = 30.0

#: Server error codes that mean "these rows are wrong", not "the server is unwell":
#: parse and conversion failures, values out of a type's range, constraint violations.
DATA_ERROR_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        131,  # TOO_LARGE_STRING_SIZE
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        407,  # DECIMAL_OVERFLOW
        469,  # VIOLATED_CONSTRAINT
    }
)
_TOO_MANY_PARTS = 252  # also "merges are behind" (an outage): told apart by its text

CREATOR_METRICS_COLUMNS: tuple[str, ...] = (*CREATOR_WINDOW_COLUMNS, "updated_at")
PROFILE_COLUMNS: tuple[str, ...] = (
    "creator_id",
    "handle",
    "follower_count",
    "niche",
    "tier",
    "updated_at",
)
CONTRACT_COLUMNS: tuple[str, ...] = (
    "campaign_id",
    "creator_id",
    "fee",
    "currency",
    "flight_start",
    "flight_end",
    "updated_at",
)


# ---------------------------------------------------------------------------------
# Refusals


def is_refusal(exc: BaseException) -> bool:
    """Whether ``exc``, raised by a write, says the rows are bad (see the module
    docstring); anything unknown is an outage, so that no row is dropped by mistake."""
    if isinstance(exc, DataError):
        return True
    if isinstance(exc, OperationalError):
        return False
    if isinstance(exc, DatabaseError):
        code = getattr(exc, "code", None)
        if code == _TOO_MANY_PARTS:
            return "for single INSERT block" in str(exc)
        return code in DATA_ERROR_CODES
    if isinstance(exc, ClickHouseError):
        return False
    # Raised while the rows are prepared. Not TypeError: that is more often a bug here
    # than a bad row, and a bug must stall the writer, not dead-letter every row.
    return isinstance(exc, (OverflowError, struct.error, ValueError))


def _error_text(exc: BaseException) -> str:
    text = scrub_error_details(str(exc)) or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        # The client's DataError names the column; its cause says what was wrong.
        kind = type(cause)
        name = kind.__name__
        if kind.__module__ != "builtins":
            name = f"{kind.__module__}.{name}"
        text += f" ({name}: {cause})"
    return text


@contextmanager
def _refusals(table: str) -> Iterator[None]:
    """Turn a refusal of the rows into :class:`~sinks.base.Refused`; let outages pass."""
    try:
        yield
    except Exception as exc:
        if is_refusal(exc):
            raise Refused(table, _error_text(exc)) from exc
        raise


class _DropReraised(logging.Filter):
    """clickhouse-connect logs these errors (one with a traceback) and then raises them;
    the sink reports what it gets raised, so the log lines would only double it (and a
    bisected batch would log a traceback per attempt)."""

    MESSAGES = ("Error serializing column", "Unexpected Http Driver Exception")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.MESSAGES)


_RERAISING_LOGGERS = (
    "clickhouse_connect.driver.transform",
    "clickhouse_connect.driver._backend.http_sync",
)
for _name in _RERAISING_LOGGERS:
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, _DropReraised) for f in _logger.filters):
        _logger.addFilter(_DropReraised())


def _timed_out(exc: BaseException) -> bool:
    """Whether a connection or read timeout is behind ``exc``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (urllib3.exceptions.TimeoutError, TimeoutError)):
            return True
        reason = getattr(current, "reason", None)  # urllib3's MaxRetryError wraps it
        if isinstance(reason, BaseException) and _timed_out(reason):
            return True
        current = current.__cause__ or current.__context__
    return False


def _utc(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


def _aware(value: datetime) -> datetime:
    # A naive datetime from a producer means UTC here; never the host zone.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------
# The sink


class ClickHouseSink:
    """Writes pipeline rows to ClickHouse and reads them back for the CLI.

    ``url`` is ``http(s)://user:pass@host:port/db`` or ``chdb:///abs/path``;
    ``database`` overrides the URL's database. The client is created by
    :meth:`start` (not here) and released by :meth:`close`; the sink is also a
    context manager doing both. Every method is thread-safe: one lock serialises
    all use of the one client (see the module docstring for why chDB needs that).

    Tables must exist: run :func:`sinks.clickhouse.migrate.migrate` on the started sink first.

    Writes raise :class:`~sinks.base.Refused` for rows the store refuses, anything
    else for an outage. ``connect_timeout_s`` and ``timeout_s``: see the module
    docstring (ignored for chDB).
    """

    def __init__(
        self,
        url: str,
        *,
        database: str | None = None,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        target = parse_clickhouse_url(url)
        if database is not None:
            target = replace(target, database=validate_identifier(database))
        if connect_timeout_s <= 0 or timeout_s <= 0:
            raise ValueError("ClickHouse timeouts must be positive seconds")
        self.target = target
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._client: Client | None = None
        # One reusable insert context per table saves a DESCRIBE round trip per insert.
        self._insert_contexts: dict[str, InsertContext] = {}

    @property
    def database(self) -> str:
        return self.target.database

    @property
    def started(self) -> bool:
        return self._client is not None

    def __repr__(self) -> str:
        state = "started" if self.started else "stopped"
        return f"ClickHouseSink({self.target.display_url()!r}, {state})"

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Create the client (connects, or starts the chDB engine). Idempotent."""
        with self._lock:
            if self._client is not None:
                return
            self._client = self._create_client()
            logger.info("ClickHouse sink connected to %s", self.target.display_url())

    def _create_client(self) -> Client:
        target = self.target
        try:
            if target.embedded:
                return clickhouse_connect.get_client(
                    interface="chdb", path=target.path, tz_mode="aware"
                )
            # No default database: it may not exist before migrate(), and every
            # statement names its database anyway. The client queries the server while
            # it is created: that probe gets the connect timeout as its read timeout too
            # (whole seconds: the client rounds down), the client keeps the real ones.
            probe_s = max(1, math.ceil(self.connect_timeout_s))
            client = clickhouse_connect.get_client(
                host=target.host,
                port=target.port,
                username=target.username,
                password=target.password,
                secure=target.secure,
                tz_mode="aware",
                # HTTP sessions refuse concurrent use and hold state we do not need.
                autogenerate_session_id=False,
                connect_timeout=probe_s,
                send_receive_timeout=probe_s,
            )
            client.timeout = urllib3.Timeout(  # type: ignore[attr-defined]  # HttpClient's
                connect=self.connect_timeout_s, read=self.timeout_s
            )
            return client
        except Exception as exc:
            if not target.embedded and _timed_out(exc):
                raise TimeoutError(
                    f"no answer within {self.connect_timeout_s:g} s (connect timeout) from "
                    f"{target.display_url()}"
                ) from None
            if target.embedded:
                exc.add_note(
                    "chDB allows one data directory per process (close every client on "
                    "another directory first) and one process per data directory (is "
                    "another creatorpulse process using this store?)"
                )
            exc.add_note(f"ClickHouse target: {target.display_url()}")
            raise

    def close(self) -> None:
        """Release the client (for chDB: the engine handle). Idempotent."""
        with self._lock:
            client, self._client = self._client, None
            self._insert_contexts.clear()
            if client is not None:
                client.close()

    def __enter__(self) -> ClickHouseSink:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def locked_client(self) -> Iterator[Client]:
        """Hold the sink's lock and yield its client, for multi-statement work that
        must not interleave with the sink (migrations). Cached insert contexts are
        dropped afterwards, since the work may have changed table definitions."""
        with self._lock:
            client = self._require_client()
            try:
                yield client
            finally:
                self._insert_contexts.clear()

    def _require_client(self) -> Client:
        if self._client is None:
            raise RuntimeError("ClickHouseSink is not started: call start() first")
        return self._client

    def _sql(self, template: str, **fragments: str) -> str:
        sql = template.replace("{database}", self.database)
        for name, fragment in fragments.items():
            sql = sql.replace("{" + name + "}", fragment)
        return sql

    def _insert(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]]) -> None:
        """Insert under the caller's lock with explicit column names."""
        client = self._require_client()
        context = self._insert_contexts.get(table)
        if context is None:
            context = client.create_insert_context(
                table=table, column_names=list(columns), database=self.database
            )
            self._insert_contexts[table] = context
        try:
            client.insert(data=data, context=context)
        except Exception:
            # A failed insert may leave the context half-filled; rebuild it next time.
            self._insert_contexts.pop(table, None)
            raise

    # -- writes ----------------------------------------------------------------

    def write_creator_windows(self, rows: Sequence[CreatorWindowRow]) -> None:
        """Upsert window totals, then recompute the affected campaign windows.

        One insert into ``creator_metrics``, then one ``INSERT ... SELECT`` that
        re-derives ``campaign_metrics`` for exactly the touched
        ``(campaign_id, window_size_s, window_start)`` keys from
        ``creator_metrics FINAL``. If the second step fails the exception
        propagates; retrying the same rows repairs both tables (both steps are
        idempotent). A caller that cannot produce the rows again must not commit its
        input offsets before this returns; the stream worker can (it rewrites every
        window it restores), so it commits once its state is durable instead.
        """
        if not rows:
            return
        with _refusals(CREATOR_METRICS_TABLE):
            self._write_creator_windows(rows)

    def _write_creator_windows(self, rows: Sequence[CreatorWindowRow]) -> None:
        updated_at = datetime.now(UTC)
        data: list[list[Any]] = []
        keys: set[tuple[str, int, int]] = set()
        for row in rows:
            if len(row.counts) != len(METRICS):
                raise ValueError(
                    f"CreatorWindowRow for {row.campaign_id}/{row.creator_id} has "
                    f"{len(row.counts)} counts, expected {len(METRICS)} ({', '.join(METRICS)})"
                )
            data.append(
                [
                    row.campaign_id,
                    row.creator_id,
                    row.window_size_s,
                    _utc(row.window_start_ms),
                    _utc(row.window_end_ms),
                    *row.counts,
                    row.version,
                    updated_at,
                ]
            )
            # DateTime has second resolution: the key must match what was stored.
            keys.add((row.campaign_id, row.window_size_s, row.window_start_ms // 1000))
        with self._lock:
            self._insert("creator_metrics", CREATOR_METRICS_COLUMNS, data)
            self._require_client().command(
                self._sql(REFRESH_CAMPAIGNS_SQL), parameters=refresh_parameters(keys)
            )

    def write_dead_letters(self, rows: Sequence[DeadLetter]) -> None:
        """Record dead letters; a replayed one (same topic, partition, offset, idx)
        collapses into one row under ``FINAL``."""
        if not rows:
            return
        with _refusals("dead_letters"):
            self._write_dead_letters(rows)

    def _write_dead_letters(self, rows: Sequence[DeadLetter]) -> None:
        data = [
            [
                _aware(r.received_at),
                r.topic,
                r.partition,
                r.offset,
                r.idx,
                r.reason,
                bytes(r.payload),
                r.payload_size,
                r.payload_sha256,
            ]
            for r in rows
        ]
        with self._lock:
            self._insert("dead_letters", DEAD_LETTER_COLUMNS, data)

    def write_profiles(self, rows: Sequence[CreatorProfile]) -> None:
        """Upsert creator profiles (the newest write per creator wins), with their tier."""
        if not rows:
            return
        updated_at = datetime.now(UTC)
        data = [
            [p.creator_id, p.handle, p.follower_count, p.niche, p.tier, updated_at] for p in rows
        ]
        with _refusals(PROFILES_TABLE), self._lock:
            self._insert(PROFILES_TABLE, PROFILE_COLUMNS, data)

    def write_contracts(self, rows: Sequence[CampaignContract]) -> None:
        """Upsert campaign contracts (the newest write per campaign and creator wins)."""
        if not rows:
            return
        updated_at = datetime.now(UTC)
        data = [
            [
                c.campaign_id,
                c.creator_id,
                c.fee,
                c.currency,
                c.flight_start,
                c.flight_end,
                updated_at,
            ]
            for c in rows
        ]
        with _refusals(CONTRACTS_TABLE), self._lock:
            self._insert(CONTRACTS_TABLE, CONTRACT_COLUMNS, data)

    def insert_rows(
        self, table: str, column_names: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Insert plain rows into a table of the sink's database (e.g. ``alerts``),
        for writers that have no dedicated method yet."""
        if not rows:
            return
        validate_identifier(table, "table")
        for column in column_names:
            validate_identifier(column, "column")
        with self._lock:
            self._insert(table, tuple(column_names), rows)

    # -- reads -----------------------------------------------------------------

    def query_rows(
        self, sql: str, parameters: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run a query and return its rows: an escape hatch for tests and the CLI.

        ``{database}`` in ``sql`` is replaced by the sink's database. Pass values as
        server-side parameters (``{name:Type}`` in ``sql``), never by formatting.
        """
        with self._lock:
            result = self._require_client().query(self._sql(sql), parameters=parameters)
            return [tuple(r) for r in result.result_rows]

    def window_totals(self, ending_after_ms: int) -> dict[WindowKey, tuple[int, ...]]:
        """The totals of every creator window that ends after ``ending_after_ms`` (epoch
        ms), as ``FINAL`` shows them: counters in METRICS order, keyed by window."""
        return window_totals(
            self.query_rows(WINDOWS_ENDING_AFTER_SQL, {"horizon": ending_after_ms})
        )

    def newest_window_end_s(
        self, campaign_id: str | None = None, *, window_size_s: int = LEADERBOARD_WINDOW_S
    ) -> int | None:
        """The newest ``window_end`` (epoch s) of ``window_size_s`` creator windows (of
        ``campaign_id`` when given), or ``None`` when there is none."""
        parameters: dict[str, Any] = {"window_size_s": window_size_s}
        campaign_filter = ""
        if campaign_id is not None:
            parameters["campaign_id"] = campaign_id
            campaign_filter = CAMPAIGN_FILTER
        sql = NEWEST_WINDOW_END_SQL.replace("{campaign_filter}", campaign_filter)
        ((count, newest_s),) = self.query_rows(sql, parameters)
        return int(newest_s) if count else None

    def campaign_known(self, campaign_id: str) -> bool:
        """Whether any window or contract of ``campaign_id`` is stored."""
        ((count,),) = self.query_rows(CAMPAIGN_KNOWN_SQL, {"campaign_id": campaign_id})
        return bool(count)

    def contracts(self, campaign_id: str | None = None) -> list[ContractRow]:
        """The newest contract per (campaign, creator), of ``campaign_id`` when given."""
        sql = CONTRACTS_SQL.replace(
            "{campaign_filter}", "WHERE campaign_id = {campaign_id:String}" if campaign_id else ""
        )
        parameters = {"campaign_id": campaign_id} if campaign_id else None
        return [contract_row(r) for r in self.query_rows(sql, parameters)]

    def leaderboard(
        self,
        campaign_id: str | None = None,
        last_s: int = 3600,
        limit: int = 20,
        now_ms: int | None = None,
        *,
        window_size_s: int = LEADERBOARD_WINDOW_S,
    ) -> list[LeaderRow]:
        """Creators ranked by views over the ``window_size_s`` windows with
        ``now - last_s <= window_start < now``.

        ``now_ms`` defaults to the newest ``window_end`` in ``creator_metrics``
        (of ``campaign_id`` when given), not the wall clock: replayed or simulated
        data carries event times far from now, and the board should still show it.
        With an explicit ``now_ms`` the range is exactly as given.
        """
        if last_s <= 0:
            raise ValueError(f"last_s must be > 0, got {last_s}")
        if limit <= 0:
            raise ValueError(f"limit must be > 0, got {limit}")
        parameters: dict[str, Any] = {"window_size_s": window_size_s}
        campaign_filter = ""
        if campaign_id is not None:
            parameters["campaign_id"] = campaign_id
            campaign_filter = CAMPAIGN_FILTER
        with self._lock:
            client = self._require_client()
            if now_ms is None:
                sql = self._sql(NEWEST_WINDOW_END_SQL, campaign_filter=campaign_filter)
                count, newest_s = client.query(sql, parameters=parameters).result_rows[0]
                if not count:
                    return []
                now_s = int(newest_s)
            else:
                # Window starts are whole seconds, so comparing them with
                # ceil(now) and ceil(now) - last_s is exact.
                now_s = -(-now_ms // 1000)
            parameters |= {
                "from_s": max(0, now_s - last_s),
                "to_s": max(0, now_s),
                "limit": limit,
            }
            sql = self._sql(LEADERBOARD_SQL, campaign_filter=campaign_filter)
            records = client.query(sql, parameters=parameters).result_rows
        return [leader_row(r) for r in records]
