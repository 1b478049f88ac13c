"""The alert tables on ClickHouse (chDB by default): the store's writes read back through
FINAL, and the outbox over them, including a restart from the records alone."""

from __future__ import annotations

import asyncio

import msgspec

from creatorpulse.alerts.outbox import AlertOutbox
from schemas.alerts import Alert, Silence
from sinks.clickhouse import ClickHouseSink
from sinks.clickhouse.alerts import ClickHouseAlertStore, DeliveryRow, alert_key
from sinks.webhooks.config import HookConfig
from sinks.webhooks.delivery import AttemptResult
from streams.alerts.rules import Rules
from tests.support.webhook_samples import T0_MS, alert
from tests.unit.sinks.webhooks.test_delivery import Clock, ScriptedTransport

RULES = Rules()
HOOK = HookConfig(name="ops", kind="webhook", url="http://127.0.0.1:9/in")


def resolved(a: Alert, at_ms: int) -> Alert:
    return msgspec.structs.replace(a, status="resolved", ends_at_ms=at_ms, resolved_reason="cooled")


def settle(box: AlertOutbox, clock: Clock) -> None:
    clock.now_ms += RULES.group_wait_s * 1000
    box.tick()
    asyncio.run(box.deliverer.run_due())
    box.tick()


def test_alerts_keep_their_newest_state_whatever_the_order(clickhouse_sink: ClickHouseSink) -> None:
    store = ClickHouseAlertStore(clickhouse_sink)
    a = alert()
    later = msgspec.structs.replace(
        a, window_start_ms=a.window_start_ms + 60_000, window_end_ms=a.window_end_ms + 60_000, z=5.0
    )
    end = resolved(later, a.window_end_ms + 120_000)
    store.write_alerts([end, a, later, a])
    (row,) = clickhouse_sink.query_rows(
        "SELECT alert_id, status, resolved_reason, z, window_size_s, views, tier, handle"
        " FROM {database}.alerts FINAL"
    )
    assert row == (a.alert_id, "resolved", "cooled", 5.0, 3600, 12_000, "micro", "@maya.eats")
    assert store.recent_alerts() == [end]
    assert store.open_alerts(resolved_since_ms=end.ends_at_ms or 0) == [end]
    assert store.open_alerts(resolved_since_ms=(end.ends_at_ms or 0) + 1) == []


def test_silences_expire(clickhouse_sink: ClickHouseSink) -> None:
    store = ClickHouseAlertStore(clickhouse_sink)
    store.write_silence(Silence(silence_id="s1", creator_id="maya", expires_at_ms=T0_MS + 1000))
    assert [s.creator_id for s in store.silences(T0_MS)] == ["maya"]
    assert store.silences(T0_MS + 1000) == []


def test_the_outbox_on_chdb_sends_once_across_a_restart(clickhouse_sink: ClickHouseSink) -> None:
    store = ClickHouseAlertStore(clickhouse_sink)
    clock = Clock(T0_MS + 5_000)
    down = ScriptedTransport(lambda hook, nid, n: AttemptResult(http_status=500))
    first = AlertOutbox(RULES, store, [HOOK], clock=clock, transport=down, rand=lambda: 0.5)
    a = alert()
    first.take([a])
    settle(first, clock)
    assert store.notified([alert_key(a, "firing"), alert_key(a, "resolved")]) == {
        alert_key(a, "firing"): "pending"
    }
    (unfinished,) = store.unfinished(0)
    assert (unfinished.hook, unfinished.attempts) == ("ops", 1)
    # A new sink, the stage republishing the alert, then its resolution.
    clock.now_ms += 60_000
    up = ScriptedTransport()
    second = AlertOutbox(RULES, store, [HOOK], clock=clock, transport=up, rand=lambda: 0.5)
    second.restore()
    second.take([a])
    asyncio.run(second.deliverer.run_due())
    settle(second, clock)
    second.take([resolved(a, T0_MS + 300_000)])
    settle(second, clock)
    firing_id = unfinished.notification.notification_id
    assert up.posts[0] == ("ops", firing_id)
    assert len(up.posts) == 2
    assert store.unfinished(0) == []
    statuses = [(d.attempt, d.status) for d in store.deliveries_of(firing_id)]
    assert statuses == [(1, "retry"), (2, "delivered")]
    records = store.notifications_of(a.alert_id)
    assert [r.notification.kind for r in records] == ["firing", "resolved"]


def test_delivery_rows_round_trip(clickhouse_sink: ClickHouseSink) -> None:
    store = ClickHouseAlertStore(clickhouse_sink)
    store.write_deliveries(
        [
            DeliveryRow("n1", "ops", 1, "retry", 503, "HTTP 503", T0_MS, T0_MS + 5000),
            DeliveryRow("n1", "ops", 2, "delivered", 200, "", T0_MS + 5000),
        ]
    )
    assert store.deliveries_of("n1") == [
        DeliveryRow("n1", "ops", 1, "retry", 503, "HTTP 503", T0_MS, T0_MS + 5000),
        DeliveryRow("n1", "ops", 2, "delivered", 200, "", T0_MS + 5000, None),
    ]
