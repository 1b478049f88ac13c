"""`/metrics` of a running `creatorpulse worker` on real Kafka, parsed with
prometheus-client's own parser and checked against the worker's `/stats`, against the
dataset it was fed, and against what ClickHouse holds afterwards."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from creatorpulse.brokers.process import free_port
from streams.observability import reason_class
from streams.processor import partition_for
from tests.support.fixtures.kafka import create_topic
from tests.support.oracle import FIELDS
from tests.support.processes import (
    PARTITIONS,
    committed_everything,
    publish,
    read_clickhouse,
    real_kafka,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.clickhouse]

CAMPAIGN = "metrics-launch"
CREATORS = [f"creator-{i:02d}" for i in range(6)]
PER_CREATOR = 40
DUPLICATES = 10
NEGATIVE = 5
BAD_JSON = 3


def event(event_id: str, ts: int, creator: str, views: int) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "ts": ts,
        "campaign_id": CAMPAIGN,
        "creator_id": creator,
        "post_id": f"{creator}-post",
        "views": views,
        "likes": 1,
    }


def dataset(t0: int) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]], int]:
    """(records, late records published after them, sum of counted views)."""
    records: list[tuple[bytes, bytes]] = []
    views = 0
    for c, creator in enumerate(CREATORS):
        for i in range(PER_CREATOR):
            ev = event(f"{creator}-{i}", t0 + i * 1_500 + c, creator, views=i + c)
            views += ev["views"]
            records.append((creator.encode(), orjson.dumps(ev)))
    records += records[:DUPLICATES]  # a producer's retries: the same events again
    for i in range(NEGATIVE):
        bad = event(f"neg-{i}", t0, CREATORS[i % len(CREATORS)], views=-1)
        records.append((CREATORS[0].encode(), orjson.dumps(bad)))
    records += [(CREATORS[1].encode(), b"{not json")] * BAD_JSON
    # Hours older than each partition's watermark by the time they are read.
    late = [
        (creator.encode(), orjson.dumps(event(f"late-{creator}", t0 - 3 * 3_600_000, creator, 9)))
        for creator in CREATORS[:4]
    ]
    return records, late, views


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return str(response.read().decode())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, by (sample name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def by_label(parsed: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (n, labels), value in parsed.items() if n == name}


def test_metrics_agree_with_stats_the_dataset_and_clickhouse(
    kafka_broker: Any, clickhouse_url: str, unique_name: Any, tmp_path: Path, spawn: Any
) -> None:
    bootstrap = real_kafka(kafka_broker)
    topic = unique_name("post-stats")
    app_id = unique_name("metrics")
    create_topic(bootstrap, topic, PARTITIONS)
    t0 = int(time.time() * 1000) - 120_000
    records, late, views = dataset(t0)
    port = free_port()
    worker = spawn(bootstrap, clickhouse_url, topic, app_id, tmp_path, web_port=str(port))
    worker.start()
    publish(bootstrap, topic, records)
    rekeyed = f"{app_id}-{topic}-rekeyed"
    wait_until(
        lambda: committed_everything(bootstrap, app_id, [topic, rekeyed]), 120, worker, "records"
    )
    publish(bootstrap, topic, late)

    def settled() -> bool:
        if not committed_everything(bootstrap, app_id, [topic, rekeyed]):
            return False
        stats = json.loads(get(port, "/stats"))
        return bool(stats["writer_idle"]) and stats["late"] == len(late)

    wait_until(settled, 120, worker, "late records and the last write")
    stats = json.loads(get(port, "/stats"))
    parsed = samples(get(port, "/metrics"))
    assert worker.terminate() == 0, worker.log_tail()

    def one(name: str) -> float:
        return parsed[(name, ())]

    counted = len(CREATORS) * PER_CREATOR
    invalid = NEGATIVE + BAD_JSON
    # Against the dataset.
    assert one("creatorpulse_events_counted_total") == counted
    assert one("creatorpulse_events_duplicate_total") == DUPLICATES
    assert one("creatorpulse_events_late_total") == len(late)
    assert one("creatorpulse_events_invalid_total") == invalid
    consumed = by_label(parsed, "creatorpulse_events_consumed_total")
    assert consumed[(("topic", topic),)] == len(records) + len(late)
    assert one("creatorpulse_event_lateness_seconds_count") == counted  # one event per record
    assert one("creatorpulse_event_lateness_seconds_sum") > 0
    newest_s = max(orjson.loads(v)["ts"] for _, v in records if v.startswith(b'{"')) / 1000
    watermarks = by_label(parsed, "creatorpulse_watermark_timestamp_seconds")
    used = {partition_for(c.encode(), PARTITIONS) for c in CREATORS}
    assert {int(dict(labels)["partition"]) for labels in watermarks} == used
    assert max(watermarks.values()) == pytest.approx(newest_s)
    lags = by_label(parsed, "creatorpulse_consumer_lag_records")
    assert lags, "lag per partition once the consumer fetched"
    assert all(value == 0 for value in lags.values()), lags
    assert sum(by_label(parsed, "creatorpulse_windows_open").values()) > 0
    (build,) = by_label(parsed, "creatorpulse_build_info").items()
    assert build[1] == 1
    assert dict(build[0])["role"] == "worker"
    # Against /stats, taken at the same settled moment.
    assert one("creatorpulse_records_consumed_total") == stats["records"]
    assert one("creatorpulse_events_counted_total") == stats["events_counted"]
    assert one("creatorpulse_sink_rows_written_total") == stats["rows_written"]
    assert one("creatorpulse_sink_failures_total") == stats["sink_failures"]
    assert one("creatorpulse_flushes_total") == stats["flushes"]
    assert one("creatorpulse_sink_batch_duration_seconds_count") > 0
    # Against ClickHouse, after the worker stopped.
    creator_rows, _, dead = read_clickhouse(clickhouse_url)
    views_at = FIELDS.index("views")
    assert sum(w[views_at] for k, w in creator_rows.items() if k[2] == 60) == views
    assert one("creatorpulse_sink_rows_written_total") >= len(
        [k for k in creator_rows if k[2] == 60]
    )
    in_store = Counter(reason_class(row[4]) for row in dead)
    dead_letters = {
        dict(labels)["reason"]: value
        for labels, value in by_label(parsed, "creatorpulse_dead_letters_total").items()
    }
    assert dead_letters == dict(in_store)
    assert sum(dead_letters.values()) == invalid + len(late)
    assert in_store["late"] == len(late)
