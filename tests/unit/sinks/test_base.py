"""Refusals, outages, backoff and bounded shutdown of the row writers, with in-memory sinks.

The shipped :class:`~sinks.memory.MemoryRowSink` refuses chosen rows the way
``sinks.clickhouse`` does (raising ``sinks.base.Refused``) or fails like an outage (a
``ConnectionError``), so the writer's decisions can be checked row by row without a store.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from schemas.metrics import METRICS
from schemas.reference import CampaignContract, CreatorProfile
from schemas.rows import CreatorWindowRow, DeadLetter
from sinks.base import (
    CREATOR_METRICS_TABLE,
    Backoff,
    Part,
    RateLimitedLog,
    Refused,
    RowBatch,
    Stopped,
    isolate_refused,
    stable_idx,
    window_dead_letter,
    write_batch,
    write_until_done,
)
from sinks.consumer import GroupReader
from sinks.memory import MemoryRowSink
from sinks.service import RowSinkService, SinkBatch, SinkTopics
from streams.outputs.writer import SinkWriter

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
T0_MS = 1_795_338_000_000
#: 2200-01-01: past what a ClickHouse DateTime holds (2106-02-07).
FAR_FUTURE_MS = 7_258_118_400_000


def row(creator: str, start_ms: int = T0_MS, views: int = 1) -> CreatorWindowRow:
    return CreatorWindowRow("camp", creator, 60, start_ms, (views,) + (0,) * (len(METRICS) - 1))


def refuse_far_future(r: CreatorWindowRow) -> str | None:
    if r.window_start_ms >= FAR_FUTURE_MS:
        return f"window_start of {r.creator_id} out of range"
    return None


def refuse_creators(*creators: str) -> Callable[[CreatorWindowRow], str | None]:
    def refuse(r: CreatorWindowRow) -> str | None:
        return f"window_start of {r.creator_id} out of range" if r.creator_id in creators else None

    return refuse


def refuse_huge_profiles(p: CreatorProfile) -> str | None:
    return "follower_count out of range for UInt64" if p.follower_count >= 2**64 else None


# -- the batch ------------------------------------------------------------------------


def test_a_batch_keeps_the_newest_row_of_each_window_and_every_dead_letter() -> None:
    batch = RowBatch()
    assert batch.empty()
    assert batch.size == 0
    older, newer, other = row("c-0", views=3), row("c-0", views=8), row("c-1", views=1)
    batch.add([older, other])
    batch.add([newer])
    batch.add([older])  # replayed, lower version: the store would keep `newer` anyway
    tie = CreatorWindowRow("camp", "c-1", 60, T0_MS, (0, 1) + (0,) * (len(METRICS) - 2))
    batch.add([tie])  # the same version: the later row wins, as in ReplacingMergeTree
    dead = DeadLetter(NOW, "post-stats", 0, 5, 0, "bad_json", b"{")
    batch.add_dead_letters([dead, dead])
    assert batch.rows() == [newer, tie]  # in the order the windows first came
    assert batch.dead_letters == [dead, dead]  # the store collapses them, not the batch
    assert batch.size == 2
    assert not batch.empty()
    batch.clear()
    assert batch.empty()
    assert batch.rows() == []
    assert batch.dead_letters == []


def test_a_batch_of_dead_letters_alone_is_not_empty() -> None:
    batch = RowBatch()
    batch.add_dead_letters([DeadLetter(NOW, "post-stats", 0, 5, 0, "bad_json", b"{")])
    assert not batch.empty()
    assert batch.size == 0


def test_the_writer_writes_the_flushes_it_is_behind_on_as_one_batch() -> None:
    sink = MemoryRowSink()

    async def scenario() -> SinkWriter:
        writer = SinkWriter(sink, now=lambda: NOW)
        writer.start()
        try:
            # Two flushes before the writer's task runs: one write of the newest totals.
            writer.submit([row("c-0", views=1), row("c-1", views=4)])
            writer.submit([row("c-0", views=2)])
            assert writer.stats.rows_pending == 2
            await asyncio.wait_for(writer.drain(), 10)
        finally:
            await writer.stop(1)
        return writer

    writer = asyncio.run(scenario())
    assert sink.calls[CREATOR_METRICS_TABLE] == 1
    assert [(r.creator_id, r.counts[0]) for r in sink.rows()] == [("c-0", 2), ("c-1", 4)]
    assert (writer.stats.inserts, writer.stats.rows_written) == (1, 2)


# -- isolation ------------------------------------------------------------------------


def test_bisection_writes_every_row_but_the_refused_ones() -> None:
    sink = MemoryRowSink(refuse_windows=refuse_creators("c-17", "c-600"))
    rows = [row(f"c-{i}") for i in range(1000)]
    refused = isolate_refused(sink.write_creator_windows, rows)
    assert [r.creator_id for r, _ in refused] == ["c-17", "c-600"]
    assert "c-17 out of range" in refused[0][1].detail
    assert sorted(r.creator_id for r in sink.rows()) == sorted(
        f"c-{i}" for i in range(1000) if i not in (17, 600)
    )
    # Bisection, not a row at a time: about 2 * k * log2(n) writes.
    assert sink.calls[CREATOR_METRICS_TABLE] <= 2 * 2 * 10 + 1


def test_a_batch_refused_only_as_a_whole_is_written_in_pieces() -> None:
    # Like "too many partitions for single INSERT block": only the size is wrong.
    written: list[str] = []

    def write(rows: list[CreatorWindowRow]) -> None:
        if len(rows) > 100:
            raise Refused("creator_metrics", "too many partitions")
        written.extend(r.creator_id for r in rows)

    rows = [row(f"c-{i}") for i in range(450)]
    assert isolate_refused(write, rows) == []
    assert written == [r.creator_id for r in rows]  # in order, each once


def test_an_outage_while_isolating_propagates_for_a_retry_of_everything() -> None:
    calls = 0

    def write(rows: list[CreatorWindowRow]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Refused("creator_metrics", "bad row")
        raise ConnectionError("reset by peer")

    with pytest.raises(ConnectionError):
        isolate_refused(write, [row("a"), row("b")])


def test_isolation_stops_when_asked() -> None:
    sink = MemoryRowSink(refuse_windows=lambda r: "no")
    with pytest.raises(Stopped):
        isolate_refused(sink.write_creator_windows, [row("a"), row("b")], stopped=lambda: True)
    assert sink.calls[CREATOR_METRICS_TABLE] == 1


# -- dead letters for refused rows ----------------------------------------------------


def test_refused_rows_become_dead_letters_that_collapse_when_refused_again() -> None:
    sink = MemoryRowSink(refuse_windows=refuse_far_future)
    poison = row("c-1", FAR_FUTURE_MS, views=7)
    parts = [Part("creator_metrics", [row("c-0"), poison], sink.write_creator_windows,
                  window_dead_letter)]  # fmt: skip
    outcome = write_batch(parts, [], sink.write_dead_letters, now=lambda: NOW)
    assert (outcome.written, outcome.refused) == ({"creator_metrics": 1}, {"creator_metrics": 1})
    assert [r.creator_id for r in sink.rows()] == ["c-0"]
    (dead,) = sink.dead_letters
    assert dead.reason == "sink_refused: creator_metrics: window_start of c-1 out of range"
    assert (dead.received_at, dead.topic, dead.partition) == (NOW, "creator_metrics", 0)
    assert dead.offset == FAR_FUTURE_MS
    assert dead.idx == stable_idx("camp", "c-1", 60) < 2**31
    assert b'"window_start_ms":7258118400000' in dead.payload
    assert b'"views":7' in dead.payload

    # A newer version of the same window, refused again: the same identity.
    again = window_dead_letter(row("c-1", FAR_FUTURE_MS, views=9), Refused("t", "x"), NOW)
    assert (again.topic, again.partition, again.offset, again.idx) == (
        dead.topic, dead.partition, dead.offset, dead.idx
    )  # fmt: skip


def test_a_row_beyond_64_bits_still_gets_a_dead_letter_in_range() -> None:
    huge = CreatorWindowRow("camp", "c", 60, -(10**30), (2**70,) + (0,) * (len(METRICS) - 1))
    dead = window_dead_letter(huge, Refused("creator_metrics", "overflow"), NOW)
    assert 0 <= dead.offset < 2**64
    assert str(2**70).encode() in dead.payload


def test_a_dead_letter_the_store_refuses_is_counted_and_not_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = MemoryRowSink(
        refuse_windows=lambda r: "window_start out of range",
        refuse_dead_letters=lambda d: "no" if d.topic == "creator_metrics" else None,
    )
    given = DeadLetter(NOW, "post-stats", 0, 5, 0, "bad_json", b"{")
    parts = [Part("creator_metrics", [row("a")], sink.write_creator_windows, window_dead_letter)]
    with caplog.at_level(logging.WARNING, "creatorpulse.sink"):
        outcome = write_batch(
            parts, [given], sink.write_dead_letters, now=lambda: NOW,
            refusals_log=RateLimitedLog(logging.getLogger("creatorpulse.sink"), 0),
        )  # fmt: skip
    assert (outcome.rows_refused, outcome.dead_letters_refused) == (1, 1)
    assert outcome.dead_letters_written == 1
    assert sink.dead_letters == [given]
    assert "refused 1 dead letters, which are dropped" in caplog.text


# -- backoff and outages --------------------------------------------------------------


def test_backoff_doubles_to_its_cap_and_resets() -> None:
    backoff = Backoff(0.5, 15.0)
    assert [backoff.next_delay() for _ in range(8)] == [0.5, 1, 2, 4, 8, 15, 15, 15]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_an_outage_is_retried_after_each_backoff_delay_until_it_ends() -> None:
    failures = iter([ConnectionError("down"), TimeoutError("slow")])
    waited: list[float] = []
    reported: list[str] = []

    def attempt() -> str:
        error = next(failures, None)
        if error is not None:
            raise error
        return "written"

    def wait(seconds: float) -> bool:
        waited.append(seconds)
        return False

    result = write_until_done(
        attempt,
        backoff=Backoff(0.5, 15.0),
        wait=wait,
        on_outage=lambda exc, delay: reported.append(f"{exc} {delay}"),
    )
    assert result == "written"
    assert waited == [0.5, 1.0]
    assert reported == ["down 0.5", "slow 1.0"]


def test_a_stop_during_an_outage_gives_up_the_batch() -> None:
    def attempt() -> None:
        raise ConnectionError("down")

    assert (
        write_until_done(
            attempt, backoff=Backoff(), wait=lambda s: True, on_outage=lambda e, d: None
        )
        is None
    )


def test_rate_limited_log_counts_what_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    clock = [0.0]
    limited = RateLimitedLog(logging.getLogger("t.rate"), 10.0, clock=lambda: clock[0])
    with caplog.at_level(logging.WARNING, "t.rate"):
        assert limited.warning("refused %d", 1)
        clock[0] = 3.0
        assert not limited.warning("refused %d", 2)
        assert not limited.warning("refused %d", 3)
        clock[0] = 10.0
        assert limited.warning("refused %d", 4)
    assert caplog.messages == ["refused 1", "refused 4 (2 similar lines held back)"]


# -- the stream worker's writer -------------------------------------------------------


def test_the_writer_isolates_refused_rows_and_confirms_the_batch() -> None:
    sink = MemoryRowSink(refuse_windows=refuse_far_future)
    confirmed: list[object] = []

    async def scenario() -> SinkWriter:
        writer = SinkWriter(sink, now=lambda: NOW)
        writer.start()
        try:
            writer.submit([row("c-0"), row("c-1", FAR_FUTURE_MS), row("c-2")], token="flush 1")
            # Before, the writer retried this batch forever: bound the wait to see it fail.
            await asyncio.wait_for(writer.drain(), 10)
            writer.submit([row("c-3")], token="flush 2")
            await asyncio.wait_for(writer.drain(), 10)
            confirmed.extend(token for token, _ in writer.take_written())
        finally:
            await writer.stop(1)  # also ends a retrying thread, so a failure cannot hang
        return writer

    writer = asyncio.run(scenario())
    assert sorted(r.creator_id for r in sink.rows()) == ["c-0", "c-2", "c-3"]
    assert [d.topic for d in sink.dead_letters] == ["creator_metrics"]
    assert confirmed == ["flush 1", "flush 2"]  # the refused row is done: dead-lettered
    assert (writer.stats.rows_written, writer.stats.rows_refused) == (3, 1)
    assert writer.stats.failures == 0


def test_stop_returns_within_its_bound_while_the_sink_keeps_failing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = MemoryRowSink(outages=10**9)  # a store that is down for good

    confirmed: list[object] = []

    async def scenario() -> float:
        writer = SinkWriter(sink, retry_initial_s=0.01, retry_max_s=0.05)
        writer.start()
        writer.submit([row("c-0"), row("c-1")], token="x")
        started = time.monotonic()
        # The outer bound only keeps a regression from hanging the test run.
        await asyncio.wait_for(writer.stop(0.5), 30)
        confirmed.extend(token for token, _ in writer.take_written())
        return time.monotonic() - started

    with caplog.at_level(logging.WARNING, "creatorpulse.sink"):
        elapsed = asyncio.run(scenario())
    assert 0.5 <= elapsed < 3.0
    assert sink.calls[CREATOR_METRICS_TABLE] >= 2  # it kept retrying until the bound
    assert confirmed == []  # nothing was written, so nothing is confirmed
    assert "with 2 rows unwritten" in caplog.text
    assert "durable in the changelog" in caplog.text


def loaded_by(imports: str, prefixes: tuple[str, ...]) -> str:
    """The modules starting with ``prefixes`` that a fresh interpreter has after ``imports``."""
    found = f"sorted(m for m in sys.modules if m.startswith({prefixes!r}))"
    code = f"import sys, {imports}; print({found})"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return out.strip()


def test_the_sink_contract_and_its_doubles_load_no_clickhouse_client_nor_kafka() -> None:
    imports = "sinks, sinks.base, sinks.memory, sinks.service"
    assert loaded_by(imports, ("clickhouse", "chdb", "kafka")) == "[]"


def test_the_worker_writer_loads_no_clickhouse_client() -> None:
    assert loaded_by("streams.outputs.writer, streams.app", ("clickhouse", "chdb")) == "[]"


# -- the separate sink process --------------------------------------------------------


def test_the_sink_process_dead_letters_refused_rows_and_reference_data() -> None:
    sink = MemoryRowSink(refuse_windows=refuse_far_future, refuse_profiles=refuse_huge_profiles)
    service = RowSinkService(
        sink, SinkTopics("rows", "dead", "profiles", "contracts"), GroupReader("x:1", "group")
    )
    good, poison = row("c-0"), row("c-1", FAR_FUTURE_MS)
    batch = SinkBatch(
        profiles=[
            CreatorProfile(creator_id="c-0", follower_count=12_000),
            CreatorProfile(creator_id="c-9", follower_count=2**64),
        ],
        contracts=[CampaignContract(campaign_id="camp", creator_id="c-0", fee=100.0)],
    )
    batch.add([good, poison])
    outcome = service.write(batch)
    assert outcome.refused == {"creator_metrics": 1, "creator_profiles": 1, "campaign_contracts": 0}
    assert sink.rows() == [good]
    assert [p.creator_id for p in sink.profiles] == ["c-0"]
    assert len(sink.contracts) == 1
    assert sorted((d.topic, d.offset) for d in sink.dead_letters) == [
        ("creator_metrics", FAR_FUTURE_MS),
        ("creator_profiles", 0),
    ]
    assert service.stats.rows_refused == 2
    assert (service.stats.rows_written, service.stats.reference_rows_written) == (1, 2)
