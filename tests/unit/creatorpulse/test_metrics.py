"""The metrics collectors: what they expose for given counters, in Prometheus's own
format as prometheus-client's parser reads it, and the sink process's /metrics server."""

from __future__ import annotations

import urllib.error
import urllib.request
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from creatorpulse.web.metrics import (
    AlertStats,
    render,
    serve_metrics,
    sink_registry,
    worker_registry,
)
from sinks.service import SinkStats
from streams.observability import Histogram, WorkerStats, reason_class
from streams.outputs.writer import WriterStats
from streams.windows import Watermark


def parsed(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def processor(stats: WorkerStats, writer: Any = None) -> Any:
    states = {
        0: SimpleNamespace(
            watermark=Watermark(grace_ms=1000, value_ms=1_700_000_000_500),
            windows={("c", "a", 60, 0): [0]},
            seen={"e1", "e2", "e3"},
            offsets={"in": 9},
        ),
        2: SimpleNamespace(watermark=Watermark(grace_ms=1000), windows={}, seen=set(), offsets={}),
    }
    return SimpleNamespace(
        stats=stats,
        states=states,
        writer=writer,
        config=SimpleNamespace(input_topic="in"),
        topics=SimpleNamespace(rekey="in-rekeyed"),
    )


def test_worker_counters_become_prometheus_names_and_units() -> None:
    stats = WorkerStats(records=7, events_counted=20, duplicates=2, late=1, invalid=3)
    stats.events_by_topic = {"in": 26}
    stats.dead_letters_by_reason = {"late": 1, "invalid": 3}
    for seconds in (0.05, 0.3, 4.0):
        stats.lateness.observe(seconds)
    writer = SimpleNamespace(
        stats=WriterStats(inserts=2, rows_written=11, failures=1, write_s=0.5, rows_pending=4)
    )
    highwater = {("in", 0): 15, ("in-rekeyed", 0): 0}
    registry = worker_registry(
        processor(stats, writer),
        highwater=lambda topic, p: highwater.get((topic, p)),
        alerts=AlertStats(
            firing_by_rule={"er_drop": 2},
            fired_by_rule={"er_drop": 3},
            evaluations=12,
            webhook_deliveries_by_outcome={"ok": 5},
        ),
    )
    m = parsed(render(registry))
    assert m[("creatorpulse_events_counted_total", ())] == 20
    assert m[("creatorpulse_events_duplicate_total", ())] == 2
    assert m[("creatorpulse_events_consumed_total", (("topic", "in"),))] == 26
    assert m[("creatorpulse_dead_letters_total", (("reason", "invalid"),))] == 3
    assert m[("creatorpulse_event_lateness_seconds_bucket", (("le", "0.1"),))] == 1
    assert m[("creatorpulse_event_lateness_seconds_bucket", (("le", "5.0"),))] == 3
    assert m[("creatorpulse_event_lateness_seconds_count", ())] == 3
    assert m[("creatorpulse_event_lateness_seconds_sum", ())] == pytest.approx(4.35)
    assert m[("creatorpulse_watermark_timestamp_seconds", (("partition", "0"),))] == 1.7e9 + 0.5
    # A partition with no event yet has no watermark, and no lag without a high watermark.
    assert ("creatorpulse_watermark_timestamp_seconds", (("partition", "2"),)) not in m
    assert m[("creatorpulse_consumer_lag_records", (("partition", "0"), ("topic", "in")))] == 5
    assert m[("creatorpulse_windows_open", (("partition", "0"),))] == 1
    assert m[("creatorpulse_dedup_ids", (("partition", "0"),))] == 3
    assert m[("creatorpulse_dedup_ids", (("partition", "2"),))] == 0
    assert m[("creatorpulse_sink_rows_written_total", ())] == 11
    assert m[("creatorpulse_sink_batch_duration_seconds_count", ())] == 2
    assert m[("creatorpulse_sink_rows_pending", ())] == 4
    assert m[("creatorpulse_alerts_firing", (("rule", "er_drop"),))] == 2
    assert m[("creatorpulse_alerts_fired_total", (("rule", "er_drop"),))] == 3
    assert m[("creatorpulse_alert_evaluations_total", ())] == 12
    assert m[("creatorpulse_webhook_deliveries_total", (("outcome", "ok"),))] == 5
    assert m[("creatorpulse_webhook_outbox_pending", ())] == 0
    names = {name for name, _ in m}
    assert not any(key == "creator_id" for _, labels in m for key, _ in labels)
    assert all(n.startswith("creatorpulse_") for n in names)


def test_a_worker_that_runs_the_alert_sink_shows_its_deliveries_beside_the_stage() -> None:
    # The stage counts what fired in the campaigns this worker holds; the alert sink in
    # the same process counts notifications and webhook attempts. Each number comes
    # from the one that keeps it: the sink's own firing counts are not added in.
    stage = AlertStats(firing_by_rule={"r": 1}, fired_by_rule={"r": 2}, evaluations=7)
    deliveries = AlertStats(
        fired_by_rule={"r": 40},
        notifications_by_outcome={"sent": 3},
        webhook_deliveries_by_outcome={"delivered": 4, "retry": 1},
        outbox_pending=2,
    )
    m = parsed(
        render(worker_registry(processor(WorkerStats()), alerts=stage, deliveries=deliveries))
    )
    assert m[("creatorpulse_alerts_fired_total", (("rule", "r"),))] == 2
    assert m[("creatorpulse_alert_evaluations_total", ())] == 7
    assert m[("creatorpulse_notifications_total", (("outcome", "sent"),))] == 3
    assert m[("creatorpulse_webhook_deliveries_total", (("outcome", "delivered"),))] == 4
    assert m[("creatorpulse_webhook_deliveries_total", (("outcome", "retry"),))] == 1
    assert m[("creatorpulse_webhook_outbox_pending", ())] == 2


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    h = Histogram((1.0, 2.0))
    for value in (0.5, 1.0, 1.5, 3.0):
        h.observe(value)
    assert h.cumulative() == [(1.0, 2), (2.0, 3), (float("inf"), 4)]
    with pytest.raises(ValueError, match="increasing"):
        Histogram((2.0, 1.0))


@pytest.mark.parametrize(
    ("reason", "kind"),
    [("late: event time 5 ms", "late"), ("bad_json: x", "bad_json"),
     ("invalid: views: -1", "invalid"), ("weird reason text, no colon at all", "other"),
     ("late_rekeyed: y", "late_rekeyed")],
)  # fmt: skip
def test_reason_classes_are_a_bounded_label(reason: str, kind: str) -> None:
    assert reason_class(reason) == kind


def get(port: int, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""


def test_the_sink_process_serves_its_own_metrics_behind_its_token() -> None:
    stats = SinkStats(polls=3, rows_written=8, inserts=3, write_s=0.25)
    port, stop = serve_metrics(sink_registry(stats), "127.0.0.1", 0, token="t0ken")
    try:
        assert get(port)[0] == 401
        assert get(port, {"Authorization": "Bearer wrong"})[0] == 401
        status, body = get(port, {"Authorization": "Bearer t0ken"})
        stats.rows_written = 9  # read at each scrape
        _, again = get(port, {"Authorization": "Bearer t0ken"})
    finally:
        stop()
    assert status == 200
    m = parsed(body.encode())
    assert m[("creatorpulse_sink_rows_written_total", ())] == 8
    assert m[("creatorpulse_sink_polls_total", ())] == 3
    assert parsed(again.encode())[("creatorpulse_sink_rows_written_total", ())] == 9
    (build,) = [labels for name, labels in m if name == "creatorpulse_build_info"]
    assert dict(build)["role"] == "sink"
