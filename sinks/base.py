"""The sink contract, and what every writer of pipeline rows shares.

- :class:`RowSink` (and :class:`StoreSink`): what a sink is called with, when, and what
  its exceptions mean;
- :class:`RowBatch`: rows waiting for one write, the newest version of each window,
  kept apart from the I/O that writes them;
- refusals and outages: isolation (:func:`isolate_refused`, :func:`write_batch`),
  backoff (:class:`Backoff`, :func:`write_until_done`) and the dead letters of refused
  rows.

Two processes write rows to a store: the stream worker (``streams.outputs.writer``) and
the separate ``creatorpulse sink`` (``sinks.service``). Both must tell two kinds of
failure apart:

- an **outage** (connection refused or reset, a timeout, a server that is down or
  overloaded, a missing table): nothing is wrong with the rows, so the whole batch is
  retried with backoff (:class:`Backoff`, :func:`write_until_done`) and nothing is
  dropped;
- a **refusal** (:class:`Refused`): the store, or its client while serialising, will
  never take some row as it is (an event time past what the column holds, a number
  too large for it). Retrying that batch would wedge every later write, so
  :func:`isolate_refused` bisects the batch until the refused rows stand alone,
  everything else is written, and each refused row becomes a dead letter (reason
  ``sink_refused: <table>: <error>``).

A concrete sink decides which of its errors are refusals and raises :class:`Refused`
for them; anything else it raises is an outage. When unsure, a sink must call an error
an outage: a wrong outage costs a stalled writer (visible, and retried), a wrong
refusal costs data.

Identity of a refused row's dead letter, chosen so that the same row refused again
(a retry, a restart, a newer version of the same window) collapses into one row of
the ``dead_letters`` ReplacingMergeTree, whose key is (topic, partition, offset, idx):

- ``topic`` is the table that refused it: ``creator_metrics``, ``creator_profiles``
  or ``campaign_contracts``;
- ``partition`` is 0 (the row is derived, it has no input partition);
- ``offset`` is the window start in epoch milliseconds for a window row (taken modulo
  2^64, so even an absurd start fits the column), 0 for reference data;
- ``idx`` is a stable 31-bit hash (SHA-256) of the row's key: campaign, creator and
  window size for a window row, the creator for a profile, campaign and creator for a
  contract;
- ``payload`` is the row as JSON (Python's encoder: counters of any size survive).

A dead letter the store refuses too is logged (rate-limited) and counted, never
retried: there is nothing further to fall back on.

Nothing here imports a store's client library, nor Kafka's: the stream worker imports
this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from schemas.metrics import METRICS
from schemas.reference import CampaignContract, CreatorProfile
from schemas.rows import CreatorWindowRow, DeadLetter, WindowKey

log = logging.getLogger("creatorpulse.sink")

T = TypeVar("T")
R = TypeVar("R")

REFUSED_REASON = "sink_refused"
#: The reference tables' names, used as the dead-letter topic of a refused row.
CREATOR_METRICS_TABLE = "creator_metrics"
PROFILES_TABLE = "creator_profiles"
CONTRACTS_TABLE = "campaign_contracts"


# -- the contract -----------------------------------------------------------------------


class RowSink(Protocol):
    """Where the stream worker's rows go: window totals and dead letters.

    Implemented by ``sinks.clickhouse.ClickHouseSink`` and by
    :class:`sinks.memory.MemoryRowSink` (tests, demos).

    **When it is called.** From a writer's thread (never the event loop), one call after
    another: for each batch (a :class:`RowBatch`: the rows of one or more flushes, the newest
    version of each window) :meth:`write_creator_windows`, then :meth:`write_dead_letters`
    with the batch's dead letters and one per refused row. The same rows may come again
    (a retry after an outage, a bisection by :func:`isolate_refused`, a restart that
    rewrites every window it restores), and rows of one window in any order. So a write
    must be idempotent: per window the row of the highest version is what counts, per dead
    letter identity ``(topic, partition, offset, idx)`` one row. A batch counts as written,
    and its windows may leave the worker's memory, only once every call for it returned.

    **What a raise means.**

    - :class:`Refused`: the store will never take some of these rows as they are. The
      caller bisects the call until the refused rows stand alone, writes all the others,
      and records each refused row as a dead letter; a refused dead letter is logged and
      dropped. Raise it for the whole call, as a store's insert fails whole.
    - anything else: an outage. Nothing is wrong with the rows: the caller writes the
      whole batch again after a backoff (:func:`write_until_done`) and drops nothing.

    A sink unsure which of the two an error is must let it through as an outage.
    """

    def write_creator_windows(self, rows: list[CreatorWindowRow]) -> None: ...

    def write_dead_letters(self, rows: list[DeadLetter]) -> None: ...


class StoreSink(RowSink, Protocol):
    """A :class:`RowSink` that keeps reference data too: what ``creatorpulse sink``
    (:mod:`sinks.service`) writes to. The newest write of a creator's profile, and of a
    campaign's contract with a creator, wins; raises mean what they mean for rows. A worker
    writes reference data from another thread than its rows: such a sink is thread-safe."""

    def write_profiles(self, rows: list[CreatorProfile]) -> None: ...

    def write_contracts(self, rows: list[CampaignContract]) -> None: ...


def keep_newest(kept: dict[WindowKey, CreatorWindowRow], rows: Iterable[CreatorWindowRow]) -> None:
    """Keep in ``kept`` the row of each window with the highest version, the later one on a
    tie: what a ``ReplacingMergeTree(version)`` table shows through ``FINAL``."""
    for row in rows:
        key = row.key
        old = kept.get(key)
        if old is None or row.version >= old.version:
            kept[key] = row


class RowBatch:
    """Rows waiting for one write, kept apart from the I/O that writes them.

    Holds the newest row of each creator window (:func:`keep_newest`) and dead letters in
    the order added. Rows of several flushes added before a write collapse into one write
    of each window's newest totals: a store keeps only the highest version anyway, so
    dropping the older rows here loses nothing it would show.
    """

    def __init__(self) -> None:
        self._rows: dict[WindowKey, CreatorWindowRow] = {}
        self.dead_letters: list[DeadLetter] = []

    def add(self, rows: Iterable[CreatorWindowRow]) -> None:
        keep_newest(self._rows, rows)

    def add_dead_letters(self, dead_letters: Iterable[DeadLetter]) -> None:
        self.dead_letters.extend(dead_letters)

    def rows(self) -> list[CreatorWindowRow]:
        """The newest row of each window, in the order the windows were first added."""
        return list(self._rows.values())

    @property
    def size(self) -> int:
        """How many windows it holds (dead letters are not counted)."""
        return len(self._rows)

    def empty(self) -> bool:
        return not self._rows and not self.dead_letters

    def clear(self) -> None:
        self._rows.clear()
        self.dead_letters.clear()


class Refused(Exception):
    """The store will never take these rows as they are: a property of the data.

    ``table`` names what refused them, ``detail`` says why (the store's own words).
    """

    def __init__(self, table: str, detail: str) -> None:
        super().__init__(f"{table}: {detail}")
        self.table = table
        self.detail = detail

    @property
    def reason(self) -> str:
        """The dead-letter reason for a row refused this way."""
        return f"{REFUSED_REASON}: {self.table}: {self.detail}"


class Stopped(Exception):
    """The writer was asked to stop while isolating refused rows."""


# -- isolating refused rows -------------------------------------------------------------


def isolate_refused(
    write: Callable[[list[T]], None],
    rows: Sequence[T],
    stopped: Callable[[], bool] = lambda: False,
) -> list[tuple[T, Refused]]:
    """Write ``rows``; when the store refuses some, write all the others.

    Returns each refused row with its refusal. A refused chunk is split in halves and
    each half written again, until a refused chunk is a single row: k refused rows
    among n cost about 2·k·log2(n/k) extra writes, and a batch that is refused only as
    a whole (too many partitions in one insert, say) ends up written in pieces, with
    no row refused. ``write`` must be idempotent: an outage (any other exception)
    propagates from the middle of the search, and the caller writes everything again.
    Raises :class:`Stopped` when ``stopped()`` turns true between two writes.
    """
    if not rows:
        return []
    refused: list[tuple[T, Refused]] = []
    chunks: list[list[T]] = [list(rows)]
    first = True
    while chunks:
        chunk = chunks.pop()
        if not first and stopped():
            raise Stopped
        first = False
        try:
            write(chunk)
        except Refused as refusal:
            if len(chunk) == 1:
                refused.append((chunk[0], refusal))
            else:
                middle = len(chunk) // 2
                # Last pushed is written first: the batch is searched in order.
                chunks.append(chunk[middle:])
                chunks.append(chunk[:middle])
    return refused


@dataclass(frozen=True)
class Part(Generic[T]):
    """Rows for one table: how to write them, and what a refused one becomes."""

    table: str
    rows: Sequence[T]
    write: Callable[[list[T]], None]
    dead_letter: Callable[[T, Refused, datetime], DeadLetter]


@dataclass
class BatchOutcome:
    """What one batch did: per table, rows written and rows refused (dead-lettered)."""

    written: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    dead_letters_written: int = 0
    dead_letters_refused: int = 0

    @property
    def rows_refused(self) -> int:
        return sum(self.refused.values())


def write_batch(
    parts: Sequence[Part[Any]],
    dead_letters: Sequence[DeadLetter],
    write_dead_letters: Callable[[list[DeadLetter]], None],
    *,
    now: Callable[[], datetime],
    stopped: Callable[[], bool] = lambda: False,
    refusals_log: RateLimitedLog | None = None,
) -> BatchOutcome:
    """Write every part, isolating refused rows, then the dead letters: those given and
    one per refused row. A dead letter refused too is logged and counted, not retried.

    Idempotent, so an outage (which propagates) is handled by calling it again.
    """
    report = refusals_log or _REFUSALS_LOG
    outcome = BatchOutcome()
    letters = list(dead_letters)
    for part in parts:
        refused = isolate_refused(part.write, part.rows, stopped)
        outcome.written[part.table] = len(part.rows) - len(refused)
        outcome.refused[part.table] = len(refused)
        if refused:
            at = now()
            letters.extend(part.dead_letter(row, refusal, at) for row, refusal in refused)
            report.warning(
                "the store refused %d of %d %s rows (first: %s); they are dead letters now",
                len(refused),
                len(part.rows),
                part.table,
                refused[0][1].detail,
            )
    lost = isolate_refused(write_dead_letters, letters, stopped)
    outcome.dead_letters_written = len(letters) - len(lost)
    outcome.dead_letters_refused = len(lost)
    if lost:
        dead, refusal = lost[0]
        report.warning(
            "the store refused %d dead letters, which are dropped (first: %s:%d:%d:%d, %s)",
            len(lost),
            dead.topic,
            dead.partition,
            dead.offset,
            dead.idx,
            refusal.detail,
        )
    return outcome


# -- dead letters for refused rows ------------------------------------------------------


def stable_idx(*parts: object) -> int:
    """A 31-bit hash of ``parts`` that is the same in every process and run."""
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


def _json(value: dict[str, Any]) -> bytes:
    # The stdlib encoder, not orjson: a refused row may hold integers past 64 bits.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def window_dead_letter(row: CreatorWindowRow, refusal: Refused, at: datetime) -> DeadLetter:
    """The dead letter of a refused window row (identity in the module docstring)."""
    payload = {
        "campaign_id": row.campaign_id,
        "creator_id": row.creator_id,
        "window_size_s": row.window_size_s,
        "window_start_ms": row.window_start_ms,
        **dict(zip(METRICS, row.counts, strict=False)),
    }
    if len(row.counts) != len(METRICS):
        payload["counts"] = list(row.counts)
    return DeadLetter(
        received_at=at,
        topic=CREATOR_METRICS_TABLE,
        partition=0,
        offset=row.window_start_ms % 2**64,
        idx=stable_idx(row.campaign_id, row.creator_id, row.window_size_s),
        reason=refusal.reason,
        payload=_json(payload),
    )


def profile_dead_letter(profile: CreatorProfile, refusal: Refused, at: datetime) -> DeadLetter:
    return DeadLetter(
        received_at=at,
        topic=PROFILES_TABLE,
        partition=0,
        offset=0,
        idx=stable_idx(profile.creator_id),
        reason=refusal.reason,
        payload=_json(profile.model_dump()),
    )


def contract_dead_letter(contract: CampaignContract, refusal: Refused, at: datetime) -> DeadLetter:
    return DeadLetter(
        received_at=at,
        topic=CONTRACTS_TABLE,
        partition=0,
        offset=0,
        idx=stable_idx(contract.campaign_id, contract.creator_id),
        reason=refusal.reason,
        payload=_json(contract.model_dump()),
    )


# -- outages: backoff and retry ---------------------------------------------------------


@dataclass
class Backoff:
    """Delays between attempts during an outage: ``initial_s``, doubling, capped."""

    initial_s: float = 0.5
    max_s: float = 15.0
    _next_s: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._next_s = self.initial_s

    def next_delay(self) -> float:
        delay = self._next_s
        self._next_s = min(self._next_s * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self._next_s = self.initial_s


def write_until_done(
    attempt: Callable[[], R],
    *,
    backoff: Backoff,
    wait: Callable[[float], bool],
    on_outage: Callable[[Exception, float], None],
) -> R | None:
    """Call ``attempt`` until it returns; after each failure report it, then ``wait``.

    ``wait(seconds)`` returns True when the writer is stopping (``threading.Event.wait``
    does), and then this returns None with the batch unwritten; so does a
    :class:`Stopped` from ``attempt``. Every exception is treated as an outage here:
    refusals were handled inside ``attempt``.
    """
    backoff.reset()
    while True:
        try:
            return attempt()
        except Stopped:
            return None
        except Exception as exc:  # an outage must neither lose the batch nor stop the writer
            delay = backoff.next_delay()
            on_outage(exc, delay)
            if wait(delay):
                return None


# -- logs -------------------------------------------------------------------------------


class RateLimitedLog:
    """At most one line per ``interval_s``; lines held back are counted in the next one."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._last: float | None = None
        self.suppressed = 0

    def warning(self, message: str, *args: object) -> bool:
        """Log unless a line went out less than ``interval_s`` ago; True if logged."""
        now = self._clock()
        if self._last is not None and now - self._last < self._interval_s:
            self.suppressed += 1
            return False
        if self.suppressed:
            message += f" ({self.suppressed} similar lines held back)"
            self.suppressed = 0
        self._last = now
        self._logger.warning(message, *args)
        return True


_REFUSALS_LOG = RateLimitedLog(log)
