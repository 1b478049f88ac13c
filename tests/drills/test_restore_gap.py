"""Finding 11's gap: a kill -9 after the checkpoints are durable, before the rows reach
ClickHouse, and a restart in which some partitions get no new record.

The rows are held back without touching production code: the worker subprocess gets a
``sitecustomize`` (on its PYTHONPATH only) that makes ``ClickHouseSink.
write_creator_windows`` raise while a marker file exists. To the worker that is a
ClickHouse outage: it retries its writes and goes on checkpointing and committing. Once the
group has committed the end of the topic the worker is killed, the marker removed, new
records published for one partition only, and the worker restarted. A finished campaign
gets no new input, so ClickHouse must become exact from the restore alone.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.drills import data
from tests.drills.harness import SCALE, RssSampler, judge, publish_stream, record
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
PARTITIONS = 4
OUTAGE = "drill: ClickHouse outage (marker file present)"

SITECUSTOMIZE = f'''"""Drill only: rows cannot reach ClickHouse while a marker file exists."""

import os

import sinks.clickhouse

_MARKER = os.environ["CREATORPULSE_DRILL_OUTAGE_MARKER"]
_write = sinks.clickhouse.ClickHouseSink.write_creator_windows


def _write_unless_marked(self, rows):
    if os.path.exists(_MARKER):
        raise ConnectionError("{OUTAGE}")
    return _write(self, rows)


sinks.clickhouse.ClickHouseSink.write_creator_windows = _write_unless_marked
'''


def test_a_kill9_between_durable_checkpoints_and_clickhouse_is_repaired_by_the_restore(
    kafka_broker: Any, clickhouse_url: str, unique_name: Any, tmp_path: Path, spawn: Any
) -> None:
    started = time.monotonic()
    bootstrap = real_kafka(kafka_broker)
    topic, app_id = unique_name("post-stats"), unique_name("drill-gap")
    rekeyed = f"{app_id}-{topic}-rekeyed"
    create_topic(bootstrap, topic, PARTITIONS)
    now_ms = int(time.time() * 1000)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    marker = tmp_path / "clickhouse-is-down"
    marker.touch()

    campaign = data.Campaign(41, creators=300, step_ms=5, prefix="gap")
    sent = campaign.take(4_000 * SCALE)
    assert {data.partition_of(c, PARTITIONS) for c in campaign.creators} == set(range(PARTITIONS))
    publish_stream(bootstrap, topic, sent.records)
    worker = spawn(
        bootstrap,
        clickhouse_url,
        topic,
        app_id,
        tmp_path,
        grace_s=str(GRACE_S),
        partitions=str(PARTITIONS),
        extra_env={
            "PYTHONPATH": str(site),
            "CREATORPULSE_DRILL_OUTAGE_MARKER": str(marker),
        },
    )
    worker.start()
    with RssSampler(lambda: worker.pid if worker.alive() else None) as rss:
        wait_until(
            lambda: (
                committed_everything(bootstrap, app_id, [topic, rekeyed])
                and OUTAGE in worker.log_path.read_text(errors="replace")
            ),
            180,
            worker,
            "durable checkpoints over the whole topic while ClickHouse is down",
            lambda: progress(bootstrap, app_id, [topic, rekeyed]),
        )
        worker.kill9()
        held_back, _, _ = read_clickhouse(clickhouse_url)
        assert held_back == {}, "the outage must have held every row back"

        marker.unlink()
        # New records for the creators of one partition; the others get none.
        first = [c for c in campaign.creators if data.partition_of(c, PARTITIONS) == 0]
        tail = data.Stream()
        for creator in first[:5]:
            tail.keyed([campaign.next_event(creator)])
        publish_stream(bootstrap, topic, tail.records)
        sent.add(tail)
        worker.start()
        wait_until(
            lambda: committed_everything(bootstrap, app_id, [topic, rekeyed]),
            180,
            worker,
            "the restarted worker",
            lambda: progress(bootstrap, app_id, [topic, rekeyed]),
        )
        assert worker.terminate() == 0, worker.log_tail()
    assert worker.exit_codes == [-9, 0]

    creator_rows, campaign_rows, dead = read_clickhouse(clickhouse_url)
    verdict = judge(
        sent,
        creator_rows,
        campaign_rows,
        dead,
        topics=(topic, rekeyed),
        grace_s=GRACE_S,
        partitions=PARTITIONS,
        now_ms=now_ms,
    )
    windows = len(verdict.expected.creator)
    note = f"{windows} creator windows, none in ClickHouse at the kill; 3 of 4 partitions idle"
    record(
        "kill -9 after checkpoint, before rows",
        len(sent.events),
        verdict,
        started,
        rss.peak_mb,
        note,
    )
    assert verdict.mismatches == 0, verdict.explain()
