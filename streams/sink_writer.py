"""Hands rows to a (blocking) ClickHouse sink from the asyncio world of the stream worker.

Rows wait in one buffer keyed by window, so when ClickHouse is slower than the stream
several flushes collapse into one insert that holds only each window's newest totals.
A failed insert is retried with backoff and nothing is dropped; when the buffer grows
past its limit, :meth:`SinkWriter.wait_for_room` makes the stream wait (backpressure)
instead of letting memory grow without bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from schemas.rows import CreatorWindowRow, DeadLetter

log = logging.getLogger("creatorpulse.sink")


class RowSink(Protocol):
    """What the stream worker needs from a sink (``sinks.clickhouse.ClickHouseSink``)."""

    def write_creator_windows(self, rows: list[CreatorWindowRow]) -> None: ...

    def write_dead_letters(self, rows: list[DeadLetter]) -> None: ...


@dataclass(slots=True)
class WriterStats:
    inserts: int = 0
    rows_written: int = 0
    dead_letters_written: int = 0
    failures: int = 0
    last_error: str = ""
    rows_pending: int = 0
    last_write_unix: float | None = None


@dataclass(slots=True)
class _Pending:
    rows: dict[tuple[str, str, int, int], CreatorWindowRow] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    on_written: list[Callable[[], None]] = field(default_factory=list)


class SinkWriter:
    """Background task that writes rows to the sink in a worker thread."""

    def __init__(
        self,
        sink: RowSink,
        *,
        max_pending_rows: int = 200_000,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 15.0,
    ) -> None:
        self._sink = sink
        self._pending = _Pending()
        self._max_pending = max_pending_rows
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._wakeup = asyncio.Event()
        self._written = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self.stats = WriterStats()

    def submit(
        self,
        rows: Iterable[CreatorWindowRow],
        dead_letters: Iterable[DeadLetter] = (),
        on_written: Callable[[], None] | None = None,
    ) -> None:
        """Queue rows (a window's newer totals replace older ones); never blocks."""
        pending = self._pending
        for row in rows:
            key = (row.campaign_id, row.creator_id, row.window_size_s, row.window_start_ms)
            old = pending.rows.get(key)
            if old is None or row.version >= old.version:
                pending.rows[key] = row
        pending.dead_letters.extend(dead_letters)
        if on_written is not None:
            pending.on_written.append(on_written)
        self.stats.rows_pending = len(pending.rows)
        self._wakeup.set()

    async def wait_for_room(self) -> None:
        """Backpressure: wait while more rows are queued than the limit."""
        async with self._written:
            await self._written.wait_for(lambda: len(self._pending.rows) < self._max_pending)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sink-writer")

    async def drain(self) -> None:
        """Wait until everything submitted so far is written."""
        async with self._written:
            await self._written.wait_for(lambda: not self._busy and self._is_empty())

    async def stop(self) -> None:
        await self.drain()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing being written."""
        return not self._busy and self._is_empty()

    def _is_empty(self) -> bool:
        p = self._pending
        return not p.rows and not p.dead_letters and not p.on_written

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self._is_empty():
                continue
            batch, self._pending = self._pending, _Pending()
            self._busy = True
            await self._write_with_retry(batch)
            self._busy = False
            self.stats.rows_pending = len(self._pending.rows)
            async with self._written:
                self._written.notify_all()

    async def _write_with_retry(self, batch: _Pending) -> None:
        delay = self._retry_initial_s
        rows = list(batch.rows.values())
        while True:
            try:
                await asyncio.to_thread(self._write_blocking, rows, batch.dead_letters)
                break
            except Exception as exc:  # a sink outage must not kill the worker
                self.stats.failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("ClickHouse write failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
        self.stats.inserts += 1
        self.stats.last_write_unix = time.time()
        self.stats.rows_written += len(rows)
        self.stats.dead_letters_written += len(batch.dead_letters)
        for callback in batch.on_written:
            callback()

    def _write_blocking(self, rows: list[CreatorWindowRow], dead: list[DeadLetter]) -> None:
        if rows:
            self._sink.write_creator_windows(rows)
        if dead:
            self._sink.write_dead_letters(dead)
