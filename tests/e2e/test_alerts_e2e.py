"""Alerts end to end: two `creatorpulse worker` subprocesses with the alerting stage and
a separate `creatorpulse sink` (which writes ClickHouse and delivers), on real Kafka, to
a webhook receiver on 127.0.0.1 that verifies both signatures with its own code.

One campaign: eight ordinary micro creators, one planted outperformer (20% engagement on
400 views a minute, cooling to 7.5% from minute 12) and one creator hot on a tiny sample
(50% on 20 views a minute). Rules: the defaults but a 5-minute trailing window (so the
planted creator cools within the test) and a 1 s group wait.

The campaign is published one minute of event time at a time, each once its window rows
are on the window-rows topic: the stage evaluates a minute once the next one has data,
as in a live stream, so the test waits on the topic, never on a clock. A worker is
killed with -9 after the alert fired; then a third worker, a new consumer group,
replays the whole input topic.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from creatorpulse.brokers.process import free_port
from schemas.rows import window_rows_from_json
from sinks.clickhouse import ClickHouseSink
from sinks.webhooks import new_secret
from tests.support.fixtures.kafka import create_topic
from tests.support.processes import (
    PARTITIONS,
    WorkerProcess,
    committed_everything,
    publish,
    real_kafka,
    wait_until,
)
from tests.support.receiver import Receiver, serve

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.clickhouse]

COHORT = [f"c{i}" for i in range(8)]
MINUTES = 21
COOL_FROM = 12
KILL_AFTER = 6
RESTART_AFTER = 10
RULES = "[alerts]\ntrailing_window_s = 300\ngroup_wait_s = 1\n"


def minute_events(run: str, campaign: str, start_ms: int, m: int) -> list[dict[str, Any]]:
    ts = start_ms + m * 60_000 + 30_000
    planted_likes = 80 if m < COOL_FROM else 30
    counts = {f"{run}-{c}": (400, 26 + 2 * i) for i, c in enumerate(COHORT)}
    counts[f"{run}-planted"] = (400, planted_likes)
    counts[f"{run}-tiny"] = (20, 10)
    return [
        {
            "event_id": f"{run}-{creator}-{m}",
            "ts": ts,
            "campaign_id": campaign,
            "creator_id": creator,
            "post_id": f"{creator}-p1",
            "views": views,
            "likes": likes,
        }
        for creator, (views, likes) in counts.items()
    ]


class Rows:
    """The window-rows topic as read so far: the highest version of each 60 s window."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        self.topic = topic
        self.views: dict[tuple[str, int], tuple[int, int]] = {}  # -> (version, views)
        self.assigned = False

    def poll(self) -> None:
        if not self.assigned:
            parts = self.consumer.partitions_for_topic(self.topic)
            if not parts:
                return
            tps = [TopicPartition(self.topic, p) for p in parts]
            self.consumer.assign(tps)
            self.consumer.seek_to_beginning(*tps)
            self.assigned = True
        for records in self.consumer.poll(timeout_ms=200).values():
            for record in records:
                for row in window_rows_from_json(record.value):
                    if row.window_size_s != 60:
                        continue
                    key = (row.creator_id, row.window_start_ms)
                    if key not in self.views or self.views[key][0] < row.version:
                        self.views[key] = (row.version, row.counts[0])

    def complete(self, events: list[dict[str, Any]], window_start_ms: int) -> bool:
        self.poll()
        return all(
            self.views.get((e["creator_id"], window_start_ms), (0, -1))[1] == e["views"]
            for e in events
        )

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def spawn() -> Iterator[Any]:
    made: list[WorkerProcess] = []

    def make(*args: Any, **kwargs: Any) -> WorkerProcess:
        made.append(WorkerProcess(*args, **kwargs))
        return made[-1]

    yield make
    for proc in made:
        proc.stop_quietly()


def alerts_end(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def test_one_alert_fires_and_resolves_through_kill9_and_replay(
    kafka_broker: Any, clickhouse_url: str, unique_name: Any, tmp_path: Path, spawn: Any
) -> None:
    bootstrap = real_kafka(kafka_broker)
    run = uuid.uuid4().hex[:6]
    topic, alerts_topic = unique_name("post-stats"), unique_name("alerts")
    app_id = unique_name("e2e-alerts")
    campaign = f"{run}-spring"
    create_topic(bootstrap, topic, PARTITIONS)
    create_topic(bootstrap, alerts_topic, PARTITIONS)
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    profiles = [
        (c.encode(), orjson.dumps({"creator_id": c, "handle": f"@{c}", "follower_count": 40_000}))
        for c in [f"{run}-{x}" for x in (*COHORT, "planted", "tiny")]
    ]
    publish(bootstrap, "creator-profiles", profiles)
    start_ms = (int(time.time()) // 60 - 30) * 60_000  # the campaign began 30 min ago
    secret = new_secret()
    with serve(Receiver(secret)) as receiver:
        alerting = {
            "alerts": "true",
            "alerts_topic": alerts_topic,
            "alert_rules": str(rules),
            "hooks": f"ops=webhook:{receiver.url}",
            "hook_secret": secret,
        }
        workers = [
            spawn(
                bootstrap,
                clickhouse_url,
                topic,
                app_id,
                tmp_path / f"w{i}",
                sink="topic",
                **alerting,
            )
            for i in range(2)
        ]
        sink = spawn(
            bootstrap, clickhouse_url, topic, app_id, tmp_path / "sink", "sink", **alerting
        )
        for proc in (*workers, sink):
            proc.start()
        rows = Rows(bootstrap, f"{app_id}-window-rows")
        planted_firing = f"{run}-planted"
        try:
            for m in range(MINUTES):
                events = minute_events(run, campaign, start_ms, m)
                publish(
                    bootstrap, topic, [(e["creator_id"].encode(), orjson.dumps(e)) for e in events]
                )
                alive = [w for w in workers if w.alive()]
                at = start_ms + m * 60_000

                def minute_done(ev: list[dict[str, Any]] = events, at: int = at) -> bool:
                    return rows.complete(ev, at)

                wait_until(
                    minute_done,
                    120,
                    alive[0],
                    f"the window rows of minute {m}",
                    also_alive=[*alive[1:], sink],
                )
                if m == KILL_AFTER:
                    wait_until(
                        lambda: len(receiver.processed) == 1,
                        60,
                        sink,
                        "the planted creator's alert",
                        lambda: receiver.requests,
                    )
                    workers[0].kill9()  # mid-campaign, with the alert firing
                if m == RESTART_AFTER:
                    workers[0].start()
            wait_until(
                lambda: len(receiver.processed) == 2,
                90,
                sink,
                "the resolution",
                lambda: receiver.requests,
                also_alive=workers,
            )
        finally:
            rows.close()
        live = list(receiver.processed)
        bodies = {r.webhook_id: r.body for r in receiver.requests}
        assert [bodies[i]["kind"] for i in live] == ["firing", "resolved"]
        for webhook_id in live:
            (only,) = bodies[webhook_id]["alerts"]
            assert only["creator_id"] == planted_firing
            assert only["cohort"]["tier"] == "micro"  # tiers read from creator-profiles
        assert receiver.rejected == []

        # A replay by a new consumer group: the same alerts again, delivered to nobody.
        before = alerts_end(bootstrap, alerts_topic)
        replay_id = unique_name("e2e-replay")
        replay_port = free_port()
        replay = spawn(
            bootstrap,
            clickhouse_url,
            topic,
            replay_id,
            tmp_path / "r",
            sink="topic",
            web_port=str(replay_port),
            **alerting,
        )
        replay.start()
        wait_until(
            lambda: (
                committed_everything(bootstrap, replay_id, [topic, f"{replay_id}-window-rows"])
                and alerts_end(bootstrap, alerts_topic) > before
            ),
            120,
            replay,
            "the replay to count and evaluate everything",
        )
        wait_until(
            lambda: committed_everything(bootstrap, f"{app_id}-alerts-sink", [alerts_topic]),
            60,
            sink,
            "the alert sink to read the replay",
        )
        # The replaying worker's own stage evaluated the whole campaign: its /metrics say
        # so (the stage's counters, not the alert sink's, which runs elsewhere).
        url = f"http://127.0.0.1:{replay_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            exposition = response.read().decode()
        metrics = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(exposition)
            for s in family.samples
        }
        rule = (("rule", "creator.outperforming"),)
        assert metrics[("creatorpulse_alerts_fired_total", rule)] == 1  # the planted one, once
        assert metrics.get(("creatorpulse_alerts_firing", rule), 0) == 0  # it resolved
        assert metrics[("creatorpulse_alert_evaluations_total", ())] >= 1
        for proc in (replay, *workers):
            assert proc.terminate() == 0, proc.log_tail()
        assert sink.terminate() == 0, sink.log_tail()  # decides what it still holds
        assert "alert sink stopped" in sink.log_tail()
        assert receiver.processed == live
        assert len(receiver.requests) == 2, [r.body["kind"] for r in receiver.requests]

    with ClickHouseSink(clickhouse_url) as store:
        alerts = store.query_rows(
            "SELECT creator_id, status, resolved_reason FROM {database}.alerts FINAL"
        )
        pending = store.query_rows(
            "SELECT kind, length(alert_ids) FROM {database}.alert_notifications FINAL"
            " WHERE delivery = 'pending' ORDER BY created_at"
        )
        delivered = store.query_rows(
            "SELECT count() FROM {database}.alert_deliveries FINAL WHERE status = 'delivered'"
        )
    assert alerts == [(planted_firing, "resolved", "cooled")]
    assert pending == [("firing", 1), ("resolved", 1)]
    assert delivered == [(2,)]
