"""The separate `creatorpulse sink` owns the store (with chDB, no other process may open
it), so it serves the dashboard beside its own `/metrics`: on real Kafka, a worker with
`--sink topic` and the sink process, the sink's board shows what the dataset holds and
its metrics agree with its health figures."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from creatorpulse.brokers.process import free_port
from tests.support.fixtures.kafka import create_topic
from tests.support.processes import PARTITIONS, publish, real_kafka, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.clickhouse]

CAMPAIGN = "sink-dash"
CREATORS = [f"creator-{i}" for i in range(4)]


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return str(response.read().decode())


def test_the_sink_process_serves_the_board_and_its_metrics(
    kafka_broker: Any, clickhouse_url: str, unique_name: Any, tmp_path: Path, spawn: Any
) -> None:
    bootstrap = real_kafka(kafka_broker)
    topic = unique_name("post-stats")
    app_id = unique_name("sinkdash")
    create_topic(bootstrap, topic, PARTITIONS)
    t0 = int(time.time() * 1000) - 90_000
    records = []
    views: dict[str, int] = {}
    for c, creator in enumerate(CREATORS):
        for i in range(10):
            n = 10 * (c + 1) + i
            event = {
                "event_id": f"{creator}-{i}",
                "ts": t0 + i * 3_000,
                "campaign_id": CAMPAIGN,
                "creator_id": creator,
                "post_id": f"{creator}-p",
                "views": n,
                "likes": 1,
            }
            records.append((creator.encode(), orjson.dumps(event)))
            views[creator] = views.get(creator, 0) + n
    port = free_port()
    worker = spawn(bootstrap, clickhouse_url, topic, app_id, tmp_path / "w", "worker", sink="topic")
    sink = spawn(
        bootstrap, clickhouse_url, topic, app_id, tmp_path / "s", "sink",
        sink_metrics_port=str(port),
    )  # fmt: skip
    worker.start()
    sink.start()
    publish(bootstrap, topic, records)

    def board() -> dict[str, Any]:
        try:
            return dict(json.loads(get(port, f"/api/board?campaign={CAMPAIGN}&sort=views")))
        except OSError:
            return {}

    def complete() -> bool:
        rows = board().get("creators", [])
        return {r["creator_id"]: r["views"] for r in rows} == views

    wait_until(
        complete, 120, sink, "the sink's board to hold the dataset", board, also_alive=[worker]
    )
    shown = board()
    assert [r["creator_id"] for r in shown["creators"]] == sorted(views, key=views.__getitem__)[
        ::-1
    ]
    assert "/static/dashboard/app.js" in get(port, "/dashboard")
    health = json.loads(get(port, "/api/health"))
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(get(port, "/metrics"))
        for s in family.samples
    }
    # The same counters, read at two moments: the scrape is the later one.
    assert samples["creatorpulse_sink_rows_written_total"] >= health["sink"]["rows_written"] > 0
    assert samples["creatorpulse_build_info"] == 1
    assert health["freshness_s"] is None  # no watermark in the sink process
