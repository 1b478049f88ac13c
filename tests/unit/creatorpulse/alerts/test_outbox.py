"""The alert outbox on an injected clock, an in-memory store and a scripted transport:
grouping into recorded notifications, delivery rows, dedup by alert id, the replay
horizon, silences, a store outage, and a restart from the records."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from creatorpulse.alerts.outbox import AlertOutbox
from schemas.alerts import Alert, Silence
from sinks.webhooks.config import HookConfig
from sinks.webhooks.delivery import AttemptResult
from streams.alerts.rules import Rules
from tests.support.alert_store import MemoryAlertStore, StoreDown
from tests.support.webhook_samples import T0_MS, alert
from tests.unit.sinks.webhooks.test_delivery import Clock, ScriptedTransport

RULES = Rules()
HOOK = HookConfig(name="ops", kind="webhook", url="http://127.0.0.1:9/in")
WAIT_MS = RULES.group_wait_s * 1000


def outbox(
    store: MemoryAlertStore, clock: Clock, transport: ScriptedTransport | None = None
) -> AlertOutbox:
    return AlertOutbox(
        RULES,
        store,
        [HOOK],
        clock=clock,
        transport=transport or ScriptedTransport(),
        rand=lambda: 0.5,
    )


def live_clock() -> Clock:
    return Clock(T0_MS + 5_000)  # a live stream: the alert is seconds old


def resolved(a: Alert, at_ms: int) -> Alert:
    return msgspec.structs.replace(a, status="resolved", ends_at_ms=at_ms, resolved_reason="cooled")


def settle(box: AlertOutbox, clock: Clock, wait_ms: int = WAIT_MS) -> None:
    """Let the group wait pass, record what is due, and run the due attempts."""
    clock.now_ms += wait_ms
    box.tick()
    asyncio.run(box.deliverer.run_due())
    box.tick()


def test_an_alert_is_written_recorded_and_delivered_once() -> None:
    store, clock, transport = MemoryAlertStore(), live_clock(), ScriptedTransport()
    box = outbox(store, clock, transport)
    a = alert()
    box.take([a])
    assert store.alert_rows == [a]
    assert box.tick() == []  # within the group wait: nothing yet
    settle(box, clock)
    (record,) = store.notifications
    assert record.delivery == "pending"
    assert record.keys == [f"{a.alert_id}:firing"]
    assert transport.posts == [("ops", record.notification.notification_id)]
    assert [(d.hook, d.attempt, d.status) for d in store.deliveries] == [("ops", 1, "delivered")]


def test_the_same_alert_published_twice_is_not_delivered_twice() -> None:
    store, clock, transport = MemoryAlertStore(), live_clock(), ScriptedTransport()
    box = outbox(store, clock, transport)
    a = alert()
    box.take([a])
    settle(box, clock)
    end = resolved(a, T0_MS + 600_000)
    box.take([end])
    settle(box, clock)
    # A crash of the stage republishes both records with the same ids.
    box.take([a, end])
    settle(box, clock)
    box.take([a])
    settle(box, clock)
    assert store.sent_keys() == [f"{a.alert_id}:firing", f"{a.alert_id}:resolved"]
    assert len(transport.posts) == 2


def test_a_fresh_outbox_on_the_same_records_sends_nothing_again() -> None:
    store, clock = MemoryAlertStore(), live_clock()
    first = outbox(store, clock)
    a = alert()
    first.take([a])
    settle(first, clock)
    transport = ScriptedTransport()
    second = outbox(store, clock, transport)  # a replay by a new consumer group, say
    second.take([a])
    settle(second, clock)
    assert transport.posts == []
    assert store.sent_keys() == [f"{a.alert_id}:firing"]


def test_an_alert_older_than_the_horizon_is_suppressed_not_sent() -> None:
    store, transport = MemoryAlertStore(), ScriptedTransport()
    clock = Clock(T0_MS + RULES.replay_horizon_s * 1000 + 1)
    box = outbox(store, clock, transport)
    box.take([alert()])
    settle(box, clock)
    (record,) = store.notifications
    assert record.delivery == "suppressed"
    assert transport.posts == []
    assert [(d.attempt, d.status) for d in store.deliveries] == [(0, "suppressed")]


def test_a_silenced_creator_is_recorded_not_sent() -> None:
    store, clock, transport = MemoryAlertStore(), live_clock(), ScriptedTransport()
    store.silence_rows.append(
        Silence(silence_id="s1", creator_id="maya", expires_at_ms=clock.now_ms + 3_600_000)
    )
    box = outbox(store, clock, transport)
    box.take([alert("maya"), alert("ben", handle="@ben")])
    settle(box, clock)
    by_delivery = {
        r.delivery: [x.creator_id for x in r.notification.alerts] for r in store.notifications
    }
    assert by_delivery == {"pending": ["ben"], "silenced": ["maya"]}
    assert len(transport.posts) == 1


def test_a_receiver_that_is_down_leaves_the_notification_pending_with_its_attempts() -> None:
    store, clock = MemoryAlertStore(), live_clock()
    transport = ScriptedTransport(lambda hook, nid, n: AttemptResult(error="refused"))
    box = outbox(store, clock, transport)
    box.take([alert()])
    settle(box, clock)
    clock.now_ms += 10_000
    asyncio.run(box.deliverer.run_due())
    box.tick()
    assert [(d.attempt, d.status) for d in store.deliveries] == [(1, "retry"), (2, "retry")]
    (pending,) = box.deliverer.pending()
    assert pending.attempts == 2


def test_a_store_outage_loses_nothing() -> None:
    store, clock, transport = MemoryAlertStore(), live_clock(), ScriptedTransport()
    box = outbox(store, clock, transport)
    store.down = True
    with pytest.raises(StoreDown):
        box.take([alert()])
    store.down = False
    box.take([alert()])  # the service retries the same records before committing
    clock.now_ms += WAIT_MS
    store.down = True
    with pytest.raises(StoreDown):
        box.tick()
    assert transport.posts == []  # never sent before it is recorded
    store.down = False
    assert len(box.tick()) == 1
    asyncio.run(box.deliverer.run_due())
    box.tick()
    assert len(transport.posts) == 1
    assert [d.status for d in store.deliveries] == ["delivered"]


def test_a_restart_resumes_pending_deliveries_and_sends_the_resolution() -> None:
    store, clock = MemoryAlertStore(), live_clock()
    down = ScriptedTransport(lambda hook, nid, n: AttemptResult(http_status=503))
    first = outbox(store, clock, down)
    a = alert()
    first.take([a])
    settle(first, clock)
    assert [d.status for d in store.deliveries] == ["retry"]
    # The sink dies; the alert resolves while it is down; a new sink starts.
    end = resolved(a, T0_MS + 120_000)
    store.alert_rows.append(end)
    clock.now_ms += 60_000
    up = ScriptedTransport()
    second = outbox(store, clock, up)
    second.restore()
    asyncio.run(second.deliverer.run_due())
    second.tick()
    settle(second, clock)
    firing_id = store.notifications[0].notification.notification_id
    kinds = [r.notification.kind for r in store.notifications]
    assert kinds == ["firing", "resolved"]
    assert up.posts[0] == ("ops", firing_id)  # the same webhook-id, resumed
    assert len(up.posts) == 2
    attempts = [(d.notification_id == firing_id, d.attempt, d.status) for d in store.deliveries]
    assert (True, 2, "delivered") in attempts  # attempt numbers go on


def test_a_restart_does_not_resend_an_alert_already_notified() -> None:
    store, clock = MemoryAlertStore(), live_clock()
    first = outbox(store, clock)
    a = alert()
    first.take([a])
    settle(first, clock)
    clock.now_ms += 60_000
    transport = ScriptedTransport()
    second = outbox(store, clock, transport)
    second.restore()
    second.take([msgspec.structs.replace(a, window_end_ms=a.window_end_ms + 60_000)])
    settle(second, clock)
    assert transport.posts == []
    second.take([resolved(a, T0_MS + 180_000)])
    settle(second, clock)
    assert [r.notification.kind for r in store.notifications] == ["firing", "resolved"]
    assert len(transport.posts) == 1


def test_the_last_tick_records_what_is_still_in_its_group_wait() -> None:
    store, clock = MemoryAlertStore(), live_clock()
    box = outbox(store, clock)
    box.take([alert()])
    assert box.tick() == []
    (record,) = box.tick(last=True)
    assert record.delivery == "pending"
    assert [p.notification_id for p in box.deliverer.pending()] == [
        record.notification.notification_id
    ]


def test_counters_for_metrics_follow_alerts_notifications_and_attempts() -> None:
    store, clock = MemoryAlertStore(), live_clock()
    transport = ScriptedTransport(lambda hook, nid, n: AttemptResult(http_status=503))
    box = outbox(store, clock, transport)
    maya, ben = alert("maya"), alert("ben", handle="@ben")
    box.take([maya, ben])
    assert box.stats.firing_by_rule == {maya.rule: 2}
    settle(box, clock)
    assert box.stats.fired_by_rule == {maya.rule: 2}
    assert box.stats.notifications_by_outcome == {"pending": 1}
    assert box.stats.webhook_deliveries_by_outcome == {"retry": 1}
    assert box.stats.outbox_pending == 1
    box.take([resolved(maya, T0_MS + 300_000)])
    assert box.stats.firing_by_rule == {maya.rule: 1}


class _ArrivingConsumer:
    """An aiokafka consumer's ``getmany`` over records that arrive at given delays."""

    def __init__(self, arrivals: list[tuple[float, dict[str, list[int]]]]) -> None:
        self.arrivals = arrivals
        self.asked: list[int] = []  # max_records of each call

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[str, list[int]]:
        self.asked.append(max_records)
        if not self.arrivals or self.arrivals[0][0] > timeout_ms / 1000:
            await asyncio.sleep(timeout_ms / 1000)
            if self.arrivals:
                self.arrivals[0] = (self.arrivals[0][0] - timeout_ms / 1000, self.arrivals[0][1])
            return {}
        delay, batch = self.arrivals.pop(0)
        await asyncio.sleep(delay)
        return batch


def test_the_alert_sink_reads_a_burst_as_one_batch_and_stops_at_the_linger() -> None:
    from creatorpulse.alerts.outbox import read_lingering

    consumer = _ArrivingConsumer(
        [(0.0, {"p0": [1, 2]}), (0.02, {"p1": [7]}), (0.02, {"p0": [3]}), (5.0, {"p0": [4]})]
    )
    batch = asyncio.run(read_lingering(consumer, 0.3))
    assert batch == {"p0": [1, 2, 3], "p1": [7]}  # the late record is left for next time
    assert [batch for _, batch in consumer.arrivals] == [{"p0": [4]}]


def test_the_alert_sink_reads_no_more_than_its_record_bound() -> None:
    from creatorpulse.alerts.outbox import read_lingering

    consumer = _ArrivingConsumer([(0.0, {"p0": [1, 2]}), (0.0, {"p0": [3]}), (0.0, {"p0": [4]})])
    batch = asyncio.run(read_lingering(consumer, 10.0, max_records=3))
    assert batch == {"p0": [1, 2, 3]}
    assert consumer.asked == [3, 1]


def test_the_alert_sink_returns_at_once_when_nothing_arrives() -> None:
    from creatorpulse.alerts.outbox import read_lingering

    consumer = _ArrivingConsumer([])
    assert asyncio.run(read_lingering(consumer, 10.0, wait_ms=10)) == {}
    assert consumer.asked == [5000]
