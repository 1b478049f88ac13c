"""Poison drill: every input of issue 8's findings, mixed into a normal stream.

On a topic pre-loaded with a backlog that spans twice the grace period (null-key records
among the keyed ones), then every poison input, 12,000 events with 128-Cyrillic-character
ids and more normal traffic, one `creatorpulse worker` must read to the end without ever
exiting, count exactly what the independent oracle counts, and leave exactly one dead
letter per bad element (by reason class) in ClickHouse.
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
PARTITIONS = 3
BACKLOG_SPAN_MS = 2 * GRACE_S * 1000


def backlog(events: int) -> data.Stream:
    """Keyed events in time order over twice the grace period, with null-key records among
    them (about one record in ten) that the worker forwards through the rekey topic."""
    campaign = data.Campaign(
        11, creators=30, step_ms=BACKLOG_SPAN_MS // events, jitter_ms=0, prefix="backlog"
    )
    out = data.Stream()
    while len(out.events) < events:
        if campaign.rng.random() < 0.1:
            size = campaign.rng.randint(1, 3)
            out.unkeyed([campaign.next_event(snapshots=False) for _ in range(size)])
        else:
            out.keyed([campaign.next_event()])
    return out


def test_poison_mixed_into_a_normal_stream_is_exact(
    kafka_broker: Any, clickhouse_url: str, unique_name: Any, tmp_path: Path, spawn: Any
) -> None:
    started = time.monotonic()
    bootstrap = real_kafka(kafka_broker)
    topic, app_id = unique_name("post-stats"), unique_name("drill-poison")
    rekeyed = f"{app_id}-{topic}-rekeyed"
    create_topic(bootstrap, topic, PARTITIONS)
    now_ms = int(time.time() * 1000)
    end_of_backlog = data.T0 + BACKLOG_SPAN_MS

    sent = backlog(3_000 * SCALE)
    # Steps of 2 ms: the normal stream spans about a minute of event time at any scale, so
    # the poison planted just before it stays within the grace period.
    normal = data.Campaign(12, creators=40, start_ms=end_of_backlog, step_ms=2, prefix="normal")
    target = normal.creators[0]
    poison = data.every_poison(
        key_creator=target,
        campaign=normal.campaign_of[target],
        ts=end_of_backlog - 2 * data.MINUTE,
        now_ms=now_ms,
    )
    cyrillic = data.cyrillic_ids(12_000, end_of_backlog - data.MINUTE)
    # Each poison record among normal ones, so each lands mid-stream.
    stream = normal.records()
    for part in poison.parts + cyrillic.parts:
        sent.append(part)
        for _ in range(3 * SCALE):
            sent.add(next(stream))
    sent.add(normal.take(1_000 * SCALE))
    sent.add(
        data.late_events(
            normal.creators[:5], lambda c: normal.campaign_of[c], data.T0 - 3 * 3_600_000
        )
    )
    publish_stream(bootstrap, topic, sent.records)

    worker = spawn(
        bootstrap,
        clickhouse_url,
        topic,
        app_id,
        tmp_path,
        grace_s=str(GRACE_S),
        partitions=str(PARTITIONS),
    )
    worker.start()
    with RssSampler(lambda: worker.pid if worker.alive() else None) as rss:
        wait_until(
            lambda: committed_everything(bootstrap, app_id, [topic, rekeyed]),
            240,
            worker,
            "the whole topic",
            lambda: progress(bootstrap, app_id, [topic, rekeyed]),
        )
        assert worker.terminate() == 0, worker.log_tail()
    assert worker.exit_codes == [0], "the worker must never exit on its own"

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
    late_rekeyed = verdict.dead_found["late_rekeyed"]
    record(
        "poison (every finding's input)",
        len(sent.events),
        verdict,
        started,
        rss.peak_mb,
        note=f"{late_rekeyed} of {len(sent.rekeyed_ids)} forwarded backlog events late_rekeyed",
    )
    assert verdict.mismatches == 0, verdict.explain()
