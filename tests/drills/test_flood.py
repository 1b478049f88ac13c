"""Poison flood: a tenth of the records malformed or hostile, of every kind of issue 8,
published as fast as the producer can while the worker runs. Exact against the oracle;
the good-record throughput is printed (a figure, not a test: the machine is shared).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.drills import data
from tests.drills.harness import (
    SCALE,
    LivePublisher,
    RssSampler,
    free_port,
    judge,
    record,
    worker_stats,
)
from tests.support.fixtures.kafka import create_topic
from tests.support.processes import (
    committed_everything,
    progress,
    read_clickhouse,
    real_kafka,
    wait_until,
)

pytestmark = [pytest.mark.drills, pytest.mark.e2e, pytest.mark.kafka, pytest.mark.clickhouse]

GRACE_S = 600
PARTITIONS = 3


def test_a_poison_flood_at_full_speed_is_exact(
    kafka_broker: Any, clickhouse_url: str, unique_name: Any, tmp_path: Path, spawn: Any
) -> None:
    started = time.monotonic()
    bootstrap = real_kafka(kafka_broker)
    topic, app_id = unique_name("post-stats"), unique_name("drill-flood")
    rekeyed = f"{app_id}-{topic}-rekeyed"
    create_topic(bootstrap, topic, PARTITIONS)
    now_ms = int(time.time() * 1000)
    stream = data.flood(5_000 * SCALE, 31, now_ms=now_ms)
    port = free_port()
    worker = spawn(
        bootstrap,
        clickhouse_url,
        topic,
        app_id,
        tmp_path,
        grace_s=str(GRACE_S),
        partitions=str(PARTITIONS),
        web_port=str(port),
    )
    worker.start()
    wait_until(lambda: worker_stats(port) is not None, 120, worker, "the worker's /stats page")
    idle = worker_stats(port) or {}
    with RssSampler(lambda: worker.pid if worker.alive() else None) as rss:
        publisher = LivePublisher(bootstrap, topic, iter(stream.parts_as_streams())).start()
        sent = publisher.finish(300)
        assert len(sent.parts) == len(stream.parts)
        publish_s = publisher.finished - publisher.started
        wait_until(
            lambda: committed_everything(bootstrap, app_id, [topic, rekeyed]),
            300,
            worker,
            "the whole flood",
            lambda: progress(bootstrap, app_id, [topic, rekeyed]),
        )
        stats = worker_stats(port) or {}
        assert worker.terminate() == 0, worker.log_tail()
    assert worker.exit_codes == [0], "the worker must never exit on its own"

    counted = int(stats.get("events_counted") or 0)
    cpu_s = float(stats.get("cpu_s") or 0) - float(idle.get("cpu_s") or 0)
    busy_s = float(stats.get("last_flush_unix") or 0) - float(stats.get("first_record_unix") or 0)
    note = (
        f"{stream.hostile_records} of {len(sent.parts)} records malformed or hostile; published in "
        f"{publish_s:.1f} s; good events counted {counted / max(cpu_s, 1e-9):,.0f}/s of worker "
        f"CPU, {counted / max(busy_s, 1e-9):,.0f}/s from first record to last flush"
    )
    print(f"\npoison flood: {note}")
    creator, campaign, dead = read_clickhouse(clickhouse_url)
    verdict = judge(
        sent,
        creator,
        campaign,
        dead,
        topics=(topic, rekeyed),
        grace_s=GRACE_S,
        partitions=PARTITIONS,
        now_ms=now_ms,
    )
    record("poison flood (10%, full speed)", len(sent.events), verdict, started, rss.peak_mb, note)
    assert verdict.mismatches == 0, verdict.explain()
    assert counted == verdict.expected.counted, "one run, no restart: the worker counted each once"
