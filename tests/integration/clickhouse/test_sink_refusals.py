"""No row, whatever its values, wedges a write: refusals, and stops while the store fails.

On a real engine (chDB in-process, or a server from the env): rows ClickHouse cannot
hold are isolated and recorded in ``dead_letters`` while the rest of their batch lands;
and ``creatorpulse sink`` stops promptly while the store keeps failing, committing
nothing it did not write (real Kafka). Campaign sums past 2^64 are tested in
``test_migrations.py`` (migration 0004).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaAdminClient

from producers.publisher import Publisher
from schemas.metrics import METRICS
from schemas.reference import CreatorProfile
from schemas.rows import CreatorWindowRow, window_row_to_json
from sinks.base import stable_idx
from sinks.clickhouse import ClickHouseSink
from sinks.consumer import GroupReader
from sinks.service import RowSinkService, SinkBatch, SinkTopics
from streams.outputs.writer import SinkWriter
from tests.support.fixtures.kafka import create_topic

T0_MS = int(datetime(2024, 3, 1, 12, 0, tzinfo=UTC).timestamp() * 1000)
HOUR_MS = 3_600_000
#: 2200-01-01 and 9999-01-01: past ClickHouse's DateTime (2106-02-07).
Y2200_MS = int(datetime(2200, 1, 1, tzinfo=UTC).timestamp() * 1000)
Y9999_MS = int(datetime(9999, 1, 1, tzinfo=UTC).timestamp() * 1000)
MAX_VIEWS = 2**53 - 1  # the upstream bound per creator window and metric


def window(
    creator: str, start_ms: int = T0_MS, size_s: int = 60, campaign: str = "camp", **values: int
) -> CreatorWindowRow:
    return CreatorWindowRow(
        campaign, creator, size_s, start_ms, tuple(values.get(m, 0) for m in METRICS)
    )


def write_through_writer(sink: ClickHouseSink, *batches: list[CreatorWindowRow]) -> SinkWriter:
    """Each batch through the stream worker's writer, as separate flushes."""
    confirmed: list[object] = []

    async def scenario() -> SinkWriter:
        writer = SinkWriter(sink)
        writer.start()
        try:
            for n, rows in enumerate(batches):
                writer.submit(rows, token=n)
                # Bounded: before, a refused batch was retried forever.
                await asyncio.wait_for(writer.drain(), 60)
                confirmed.extend(token for token, _ in writer.take_written())
        finally:
            await writer.stop(1)  # also ends a retrying thread, so a failure cannot hang
        return writer

    writer = asyncio.run(scenario())
    assert confirmed == list(range(len(batches)))
    return writer


def dead_letters(sink: ClickHouseSink) -> list[tuple[Any, ...]]:
    return sink.query_rows(
        "SELECT topic, partition, offset, idx, reason, payload "
        "FROM {database}.dead_letters FINAL ORDER BY offset"
    )


# -- refused rows -------------------------------------------------------------------------


def test_rows_clickhouse_cannot_hold_are_dead_letters_and_the_rest_lands(
    clickhouse_sink: ClickHouseSink,
) -> None:
    sink = clickhouse_sink
    good = [window(f"c-{i}", views=10 + i) for i in range(5)]
    poison = [
        window("far-2200", Y2200_MS, views=1),
        window("far-9999", Y9999_MS, views=1),
        window("wide", views=2**64),  # past UInt64
    ]
    batch = [*good[:2], poison[0], *good[2:4], *poison[1:], *good[4:]]
    writer = write_through_writer(
        sink,
        batch,
        # The same windows again, one a newer version: still refused, still one letter each.
        [window("far-2200", Y2200_MS, views=2), window("c-0", views=99)],
    )

    assert sink.query_rows(
        "SELECT creator_id, views FROM {database}.creator_metrics FINAL ORDER BY creator_id"
    ) == [("c-0", 99), ("c-1", 11), ("c-2", 12), ("c-3", 13), ("c-4", 14)]
    assert sink.query_rows("SELECT views, creators FROM {database}.campaign_metrics FINAL") == [
        (99 + 11 + 12 + 13 + 14, 5)
    ]
    letters = dead_letters(sink)
    assert [(t, p, o, i) for t, p, o, i, _, _ in letters] == [
        ("creator_metrics", 0, T0_MS, stable_idx("camp", "wide", 60)),
        ("creator_metrics", 0, Y2200_MS, stable_idx("camp", "far-2200", 60)),
        ("creator_metrics", 0, Y9999_MS, stable_idx("camp", "far-9999", 60)),
    ]
    for _, _, _, _, reason, _ in letters:
        assert reason.startswith("sink_refused: creator_metrics: ")
    assert "window_start" in letters[1][4]
    assert '"views":2' in letters[1][5]  # the newer version replaced the first letter
    assert str(2**64) in letters[0][5]
    assert (writer.stats.rows_refused, writer.stats.failures) == (4, 0)
    assert writer.stats.rows_written == 6


def test_a_batch_refused_only_for_its_size_is_written_in_pieces(
    clickhouse_sink: ClickHouseSink,
) -> None:
    # 150 monthly windows: one insert would span more partitions than ClickHouse allows.
    month_ms = 31 * 24 * HOUR_MS
    rows = [window("c", T0_MS - m * month_ms, views=1) for m in range(150)]
    writer = write_through_writer(clickhouse_sink, rows)
    assert clickhouse_sink.query_rows("SELECT count() FROM {database}.creator_metrics") == [(150,)]
    assert dead_letters(clickhouse_sink) == []
    assert writer.stats.rows_refused == 0


def test_the_sink_process_dead_letters_a_profile_clickhouse_refuses(
    clickhouse_sink: ClickHouseSink,
) -> None:
    service = RowSinkService(
        clickhouse_sink, SinkTopics("r", "d", "p", "c"), GroupReader("x:1", "g")
    )
    batch = SinkBatch(
        profiles=[
            CreatorProfile(creator_id="c-0", handle="@ok", follower_count=12_000),
            CreatorProfile(creator_id="c-9", handle="@huge", follower_count=2**64),
        ],
    )
    batch.add([window("c-0", views=3)])
    outcome = service.write(batch)
    assert outcome.refused["creator_profiles"] == 1
    assert clickhouse_sink.query_rows(
        "SELECT creator_id FROM {database}.creator_profiles FINAL"
    ) == [("c-0",)]
    ((topic, _, offset, idx, reason, payload),) = dead_letters(clickhouse_sink)
    assert (topic, offset, idx) == ("creator_profiles", 0, stable_idx("c-9"))
    assert reason.startswith("sink_refused: creator_profiles: ")
    assert '"handle":"@huge"' in payload


# -- the separate sink process stops while ClickHouse fails -------------------------------


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_the_sink_process_stops_promptly_while_clickhouse_keeps_failing(
    clickhouse_sink: ClickHouseSink, kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topics = SinkTopics(*(unique_name(name) for name in ("rows", "dead", "prof", "contr")))
    for topic in topics.all():
        create_topic(kafka_bootstrap, topic, 1)
    publisher = Publisher(kafka_bootstrap, topics.window_rows)
    publisher.publish_raw(window_row_to_json(window("c-0", views=1)), key=b"c-0")
    publisher.flush()
    publisher.close()
    # An outage, not a refusal: the table is gone, so every write fails the same way.
    with clickhouse_sink.locked_client() as client:
        client.command(f"DROP TABLE {clickhouse_sink.database}.creator_metrics")

    group = unique_name("sink")
    service = RowSinkService(
        clickhouse_sink,
        topics,
        GroupReader(kafka_bootstrap, group, retry_initial_s=0.05, retry_max_s=0.2),
    )
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,), daemon=True)
    runner.start()
    wait_for(lambda: service.stats.failures >= 3, 60, "the sink to retry the failing write")
    stop.set()
    stopped_at = time.monotonic()
    runner.join(10)
    assert not runner.is_alive()
    assert time.monotonic() - stopped_at < 2
    # Nothing was written, so nothing was committed and nothing was dead-lettered.
    assert service.stats.rows_written == 0
    assert service.stats.rows_refused == 0
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert not admin.list_group_offsets(group).get(group)
    finally:
        admin.close()
    assert dead_letters(clickhouse_sink) == []
