"""Soak: a steady live load for minutes (``make drills``: 10), the worker's memory sampled.

3,000 events/s from 1,000 creators with event times on the wall clock, through a worker
with ``--sink topic`` and a separate ``creatorpulse sink`` (so the worker's resident memory
is its own, not chDB's). Reports the RSS slope over the second half in MB/min (printed, in
the drills table), and judges ClickHouse against the oracle like every drill. Skipped
unless ``CREATORPULSE_DRILL_SOAK_S`` is set: it is too long for ``make test``.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.drills import data
from tests.drills.harness import (
    LivePublisher,
    RssSampler,
    judge,
    record,
    slope_mb_per_min,
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

SOAK_S = float(os.environ.get("CREATORPULSE_DRILL_SOAK_S", "0") or "0")
#: Short enough that windows close and dedup ids expire well inside the soak.
GRACE_S = int(os.environ.get("CREATORPULSE_DRILL_SOAK_GRACE_S", "120"))
EVENTS_PER_S = float(os.environ.get("CREATORPULSE_DRILL_SOAK_RATE", "3000"))
CREATORS = 1_000
PARTITIONS = 4


def soak_source(start_ms: int) -> Iterator[data.Stream]:
    """Deterministic for a start time: the oracle regenerates it after the soak.

    Event times advance one event's share of a second per event, so at the paced rate
    they follow the wall clock (never ahead of it), at most 2 s early each.
    """
    campaign = data.Campaign(
        51,
        creators=CREATORS,
        campaigns=10,
        start_ms=start_ms,
        step_ms=1000 / EVENTS_PER_S,
        jitter_ms=2_000,
        prefix="soak",
    )
    records = campaign.records()
    for n in itertools.count(1):
        if n % 100 == 0:
            forwarded = data.Stream()
            forwarded.unkeyed([campaign.next_event(snapshots=False) for _ in range(3)])
            yield forwarded
        else:
            yield next(records)


class Regenerated:
    """The first ``taken`` streams of :func:`soak_source`, made again on each pass over
    ``events``: a soak's millions of events are never all in memory at once."""

    def __init__(self, start_ms: int, taken: int) -> None:
        self.start_ms = start_ms
        self.taken = taken
        self.planted: Counter[str] = Counter()
        self.rekeyed_ids: set[str] = set()
        self.count = 0
        for one in itertools.islice(soak_source(start_ms), taken):
            self.planted.update(one.planted)
            self.rekeyed_ids |= one.rekeyed_ids
            self.count += len(one.events)

    @property
    def events(self) -> Iterator[dict[str, Any]]:
        for one in itertools.islice(soak_source(self.start_ms), self.taken):
            yield from one.events


@pytest.mark.skipif(SOAK_S <= 0, reason="a soak runs with CREATORPULSE_DRILL_SOAK_S (make drills)")
def test_a_steady_load_for_minutes_levels_off_and_stays_exact(
    kafka_broker: Any, clickhouse_url: str, unique_name: Any, tmp_path: Path, spawn: Any
) -> None:
    started = time.monotonic()
    bootstrap = real_kafka(kafka_broker)
    topic, app_id = unique_name("post-stats"), unique_name("drill-soak")
    rekeyed, rows_topic = f"{app_id}-{topic}-rekeyed", f"{app_id}-window-rows"
    create_topic(bootstrap, topic, PARTITIONS)
    settings = {"grace_s": str(GRACE_S), "partitions": str(PARTITIONS)}
    args = (bootstrap, clickhouse_url, topic, app_id, tmp_path)
    worker = spawn(*args, "worker", sink="topic", **settings)
    sink = spawn(*args, "sink", **settings)
    worker.start()
    sink.start()
    start_ms = int(time.time() * 1000)
    publisher = LivePublisher(
        bootstrap, topic, soak_source(start_ms), events_per_s=EVENTS_PER_S, keep=False
    )
    with (
        RssSampler(lambda: worker.pid if worker.alive() else None, interval_s=1.0) as rss,
        RssSampler(lambda: sink.pid if sink.alive() else None, interval_s=1.0) as sink_rss,
    ):
        publisher.start()
        deadline = time.monotonic() + SOAK_S
        wait_until(
            lambda: time.monotonic() >= deadline,
            SOAK_S + 60,
            worker,
            "the soak's end",
            also_alive=[sink],
        )
        publisher.stop()
        loaded_s = publisher.finished - publisher.started
        wait_until(
            lambda: committed_everything(bootstrap, app_id, [topic, rekeyed]),
            300,
            worker,
            "the worker's catch-up",
            lambda: progress(bootstrap, app_id, [topic, rekeyed]),
        )
        assert worker.terminate() == 0, worker.log_tail()
    wait_until(
        lambda: committed_everything(
            bootstrap, f"{app_id}-sink", [rows_topic, "post-stats-dead-letters"]
        ),
        300,
        sink,
        "the sink's catch-up",
    )
    assert sink.terminate() == 0, sink.log_tail()

    half = publisher.started + loaded_s / 2
    second_half = [(t, mb) for t, mb in rss.samples if half <= t <= publisher.finished]
    slope = slope_mb_per_min(second_half)
    sink_slope = slope_mb_per_min([(t, mb) for t, mb in sink_rss.samples if t >= half])
    note = (
        f"{publisher.events / loaded_s:,.0f} events/s for {loaded_s:.0f} s, grace {GRACE_S} s, "
        f"{CREATORS} creators; worker RSS slope over the second half {slope:+.2f} MB/min "
        f"(sink process {sink_slope:+.2f} MB/min, peak {sink_rss.peak_mb:.0f} MB)"
    )
    print(f"\nsoak: {note}")
    sent = Regenerated(start_ms, publisher.taken)
    assert sent.count == publisher.events
    creator, campaign, dead = read_clickhouse(clickhouse_url)
    verdict = judge(
        sent,
        creator,
        campaign,
        dead,
        topics=(topic, rekeyed),
        grace_s=GRACE_S,
        partitions=PARTITIONS,
        now_ms=int(time.time() * 1000),
    )
    name = f"soak {SOAK_S:.0f} s (--sink topic)"
    record(name, sent.count, verdict, started, rss.peak_mb, note)
    assert verdict.mismatches == 0, verdict.explain()
