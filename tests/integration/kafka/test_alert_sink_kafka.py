"""The alert sink service on real Kafka and chDB, delivering to a real receiver on
127.0.0.1 that verifies both signatures: alert records in, one notification per alert
and kind out, however often the records are published or read."""

from __future__ import annotations

import threading
from collections.abc import Callable

import msgspec
from kafka import KafkaProducer

from creatorpulse.alerts.outbox import AlertOutbox, AlertSinkService
from schemas.alerts import Alert, alert_to_json
from sinks.clickhouse import ClickHouseSink
from sinks.clickhouse.alerts import ClickHouseAlertStore
from sinks.consumer import GroupReader
from sinks.webhooks import HookConfig, new_secret, parse_secret
from streams.alerts.rules import Rules
from tests.support.fixtures.kafka import create_topic
from tests.support.receiver import Receiver, serve, wait_for
from tests.support.webhook_samples import alert

# Alerts of a live stream, and a short group wait so the test runs in seconds.
RULES = Rules(group_wait_s=1)


def live(a: Alert, now_ms: int) -> Alert:
    return msgspec.structs.replace(
        a, starts_at_ms=now_ms, window_start_ms=now_ms - 3_600_000, window_end_ms=now_ms
    )


def publish(bootstrap: str, topic: str, alerts: list[Alert]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","))
    for a in alerts:
        producer.send(topic, key=a.campaign_id.encode(), value=alert_to_json(a))
    producer.flush()
    producer.close()


def run_service(
    sink: ClickHouseSink, bootstrap: str, topic: str, group: str, url: str, secret: str
) -> tuple[AlertSinkService, Callable[[], None]]:
    hook = HookConfig(name="ops", kind="webhook", url=url, secret=parse_secret(secret))
    outbox = AlertOutbox(RULES, ClickHouseAlertStore(sink), [hook])
    service = AlertSinkService(outbox, topic, GroupReader(bootstrap, group))
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()

    def stop_it() -> None:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive()

    return service, stop_it


def settled(service: AlertSinkService, records: int) -> bool:
    """Every record read, and nothing the policy holds due within a group wait."""
    due = service.outbox.next_due_ms()
    quiet = due is None or due > service.outbox.clock() + RULES.group_wait_s * 1000
    return service.alerts_read >= records and quiet


def test_alerts_from_kafka_are_stored_and_delivered_once(
    kafka_bootstrap: str, clickhouse_sink: ClickHouseSink, unique_name: Callable[[str], str]
) -> None:
    import time

    topic = unique_name("alerts")
    create_topic(kafka_bootstrap, topic, 2)
    now_ms = int(time.time() * 1000)
    a = live(alert("maya"), now_ms)
    b = live(alert("ben", handle="@ben"), now_ms)
    old = alert("zed", handle=None)  # event time far behind the wall clock: a replay
    resolved_a = msgspec.structs.replace(
        a, status="resolved", ends_at_ms=now_ms + 60_000, resolved_reason="cooled"
    )
    # Published twice over, as a stage that crashed would.
    publish(kafka_bootstrap, topic, [a, b, old, a, b])
    secret = new_secret()
    store = ClickHouseAlertStore(clickhouse_sink)
    with serve(Receiver(secret)) as receiver:
        _, stop = run_service(
            clickhouse_sink, kafka_bootstrap, topic, unique_name("g"), receiver.url, secret
        )
        try:
            wait_for(lambda: len(receiver.processed) == 1, 60, "the grouped firing notification")
            publish(kafka_bootstrap, topic, [resolved_a, resolved_a, a])
            wait_for(lambda: len(receiver.processed) == 2, 60, "the resolution")
        finally:
            stop()
        # A replay of the whole topic by a new consumer group delivers nothing new.
        replay, stop = run_service(
            clickhouse_sink, kafka_bootstrap, topic, unique_name("g"), receiver.url, secret
        )
        try:
            wait_for(lambda: settled(replay, 8), 60, "the replay to be read and decided")
        finally:
            stop()
    assert receiver.rejected == []
    assert sorted(receiver.alert_keys()) == sorted(
        [f"{a.alert_id}:firing", f"{b.alert_id}:firing", f"{a.alert_id}:resolved"]
    )
    assert len(receiver.requests) == 2
    suppressed = [r for r in store.notifications_of(old.alert_id) if r.delivery == "suppressed"]
    assert len(suppressed) == 1
