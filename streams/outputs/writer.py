"""Hands rows to a (blocking) ClickHouse sink from the asyncio world of the stream worker.

The writer says what it wrote and nothing more: each submission may carry a token, and
:meth:`SinkWriter.take_written` returns the tokens of what is written since the last
call, with the time. The processor reads them at its next flush; the writer never
reaches back into the state.

Rows wait in one buffer keyed by window, so when ClickHouse is slower than the stream
several flushes collapse into one insert that holds only each window's newest totals.
Each batch is written in a worker thread with ``sinks.base``: an outage is retried with
backoff and nothing is dropped; rows the store refuses are isolated, written as dead
letters, and the rest of the batch is written (a refused row never wedges the writer).
When the buffer grows past its limit, :meth:`SinkWriter.wait_for_room` makes the stream
wait (backpressure) instead of letting memory grow without bound.

:meth:`SinkWriter.stop` gives up after its timeout: whatever is unwritten then is durable
in the changelog, and a restarted worker writes it again (a restored partition rewrites
every window it holds, and a window whose rows are unconfirmed never leaves memory).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from schemas.rows import CreatorWindowRow, DeadLetter
from sinks.base import (
    CREATOR_METRICS_TABLE,
    Backoff,
    BatchOutcome,
    Part,
    RowBatch,
    RowSink,
    window_dead_letter,
    write_batch,
    write_until_done,
)

log = logging.getLogger("creatorpulse.sink")

__all__ = ["RowSink", "SinkWriter", "WriterStats"]


@dataclass(slots=True)
class WriterStats:
    inserts: int = 0
    rows_written: int = 0
    dead_letters_written: int = 0
    #: Rows the store refused, recorded as dead letters instead.
    rows_refused: int = 0
    #: Dead letters the store refused too: logged and dropped.
    dead_letters_refused: int = 0
    failures: int = 0
    last_error: str = ""
    rows_pending: int = 0
    last_write_unix: float | None = None
    write_s: float = 0.0  # wall time of the inserts that finished, retries included


@dataclass(slots=True)
class _Pending:
    rows: RowBatch = field(default_factory=RowBatch)
    tokens: list[Hashable] = field(default_factory=list)


class SinkWriter:
    """Background task that writes rows to the sink in a worker thread."""

    def __init__(
        self,
        sink: RowSink,
        *,
        max_pending_rows: int = 200_000,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 15.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sink = sink
        self._pending = _Pending()
        self._max_pending = max_pending_rows
        self._backoff = Backoff(retry_initial_s, retry_max_s)
        self._now = now
        self._clock = clock
        self._written_tokens: list[tuple[Hashable, float]] = []
        self._wakeup = asyncio.Event()
        self._written = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self._in_flight = 0  # rows of the batch being written
        # Set by stop() once it gives up: the writing thread stops retrying.
        self._stopping = threading.Event()
        self.stats = WriterStats()

    def submit(
        self,
        rows: Iterable[CreatorWindowRow],
        dead_letters: Iterable[DeadLetter] = (),
        token: Hashable | None = None,
    ) -> None:
        """Queue rows (a window's newer totals replace older ones); never blocks.

        ``token`` comes back from :meth:`take_written` once all of this is written.
        """
        pending = self._pending
        pending.rows.add(rows)
        pending.rows.add_dead_letters(dead_letters)
        if token is not None:
            pending.tokens.append(token)
        self.stats.rows_pending = pending.rows.size
        self._wakeup.set()

    def take_written(self) -> list[tuple[Hashable, float]]:
        """The tokens of what was written since the last call, each with its time."""
        taken, self._written_tokens = self._written_tokens, []
        return taken

    async def wait_for_room(self) -> None:
        """Backpressure: wait while more rows are queued than the limit."""
        async with self._written:
            await self._written.wait_for(lambda: self._pending.rows.size < self._max_pending)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sink-writer")

    async def drain(self) -> None:
        """Wait until everything submitted so far is written."""
        async with self._written:
            await self._written.wait_for(lambda: not self._busy and self._is_empty())

    async def stop(self, timeout_s: float | None = None) -> None:
        """Write what is queued, then stop; after ``timeout_s`` (None: no limit), give up.

        Giving up loses nothing: what is unwritten is durable in the changelog and is
        written again by the next start. A ClickHouse call already in flight is not
        interrupted; it ends within the client's own timeout.
        """
        try:
            await asyncio.wait_for(self.drain(), timeout_s)
        except TimeoutError:
            unwritten = self._pending.rows.size + self._in_flight
            log.warning(
                "sink writer stopped after %.0f s with %d rows unwritten (last error: %s); "
                "they are durable in the changelog and are written again on restart",
                timeout_s,
                unwritten,
                self.stats.last_error or "none",
            )
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing being written."""
        return not self._busy and self._is_empty()

    def _is_empty(self) -> bool:
        p = self._pending
        return p.rows.empty() and not p.tokens

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self._is_empty():
                continue
            batch, self._pending = self._pending, _Pending()
            self._busy = True
            self._in_flight = batch.rows.size
            if not await self._write_with_retry(batch):
                return  # stopping: the batch stays unconfirmed, so nothing is lost
            self._in_flight = 0
            self._busy = False
            self.stats.rows_pending = self._pending.rows.size
            async with self._written:
                self._written.notify_all()

    async def _write_with_retry(self, batch: _Pending) -> bool:
        """Write one batch, through outages; False if the writer stopped first."""
        rows = batch.rows.rows()
        sink = self._sink
        parts = [Part(CREATOR_METRICS_TABLE, rows, sink.write_creator_windows, window_dead_letter)]

        def attempt() -> BatchOutcome:
            return write_batch(
                parts,
                batch.rows.dead_letters,
                sink.write_dead_letters,
                now=self._now,
                stopped=self._stopping.is_set,
            )

        started = time.perf_counter()
        outcome = await asyncio.to_thread(
            write_until_done,
            attempt,
            backoff=self._backoff,
            wait=self._stopping.wait,
            on_outage=self._on_outage,
        )
        if outcome is None:
            return False
        stats = self.stats
        stats.inserts += 1
        stats.write_s += time.perf_counter() - started
        stats.last_write_unix = written_at = self._clock()
        stats.rows_written += outcome.written[CREATOR_METRICS_TABLE]
        stats.rows_refused += outcome.rows_refused
        stats.dead_letters_written += outcome.dead_letters_written
        stats.dead_letters_refused += outcome.dead_letters_refused
        # Refused rows are done too: they are dead letters now, and their windows may go.
        self._written_tokens += [(token, written_at) for token in batch.tokens]
        return True

    def _on_outage(self, exc: Exception, delay_s: float) -> None:
        # Runs in the writing thread; plain counters only.
        self.stats.failures += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        log.warning("ClickHouse write failed (%s); retrying in %.1fs", exc, delay_s)
