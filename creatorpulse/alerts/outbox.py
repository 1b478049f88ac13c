"""The alert sink: the alerts topic into the ``alerts`` table, notifications to the hooks.

It joins three stages, so it lives in the composition root: the notification policy
(``streams.alerts.policy``), delivery (``sinks.webhooks``) and the store
(``sinks.clickhouse.alerts``). Two parts:

- :class:`AlertOutbox` decides, on an injected clock: every alert record is written to
  the ``alerts`` table (:meth:`~AlertOutbox.take`), the policy groups them, and what
  becomes due (:meth:`~AlertOutbox.tick`) is recorded in ``alert_notifications`` *before*
  it goes to the hooks, with its decision (``pending``, ``silenced`` by a silence of
  ``alert_silences``, ``suppressed`` past the replay horizon). Every attempt, and every
  decision that ended one without an attempt, is a row of ``alert_deliveries``.
- :class:`AlertSinkService` runs it: an aiokafka consumer of the alerts topic whose
  offsets are committed only once the alerts are in the table, and the
  :class:`~sinks.webhooks.Deliverer` loop beside it. It runs in a thread of its own, so
  a dead or slow receiver never holds up counting: its notifications wait in the outbox
  as pending, with their attempts.

**Never twice.** Faust acknowledges window rows after the stage applied them, so after a
crash an alert can be published again (same id); a replay by a new consumer group
publishes every alert again. Each alert in a notification is recorded with its key
(``<alert_id>:<kind>``, and the event time of its numbers for a reminder); an alert
whose key is already recorded is dropped from what goes out, so no alert is notified
twice as the same kind, however the records arrive. What is left keeps the policy's
stable notification id (the ``webhook-id``).

**Restart.** The policy's memory is rebuilt from the tables, not from Kafka: on each
partition assignment the outbox takes back the open alerts of the campaigns it now owns
(firing ones already notified come back as decided, so their resolution follows that
decision) and resubmits every pending notification a hook has not finished with,
attempt numbers continuing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import msgspec

from schemas.alerts import Alert, Notification, Silence, alert_from_json
from sinks.clickhouse.alerts import (
    DeliveryRow,
    NotificationRecord,
    Unfinished,
    alert_key,
)
from sinks.consumer import GroupReader
from sinks.webhooks import Deliverer, Delivery, HookConfig
from streams.alerts.policy import Dispatch, NotificationPolicy, notification_id
from streams.alerts.rules import Rules
from streams.observability import AlertStats

log = logging.getLogger("creatorpulse.alerts")

#: Silences are read again at most this often while something is due.
SILENCE_REFRESH_MS = 5_000


class AlertStore(Protocol):
    """What the outbox needs of the alert tables (``sinks.clickhouse.alerts``)."""

    def write_alerts(self, alerts: Sequence[Alert]) -> None: ...

    def write_notifications(self, records: Sequence[NotificationRecord]) -> None: ...

    def write_deliveries(self, records: Sequence[DeliveryRow]) -> None: ...

    def silences(self, now_ms: int) -> list[Silence]: ...

    def notified(self, keys: Iterable[str]) -> dict[str, str]: ...

    def open_alerts(self, resolved_since_ms: int) -> list[Alert]: ...

    def unfinished(self, created_since_ms: int) -> list[Unfinished]: ...


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def delivery_row(record: Delivery) -> DeliveryRow:
    return DeliveryRow(
        notification_id=record.notification_id,
        hook=record.hook,
        attempt=record.attempt,
        status=record.status,
        http_status=record.http_status,
        error=record.error,
        attempted_at_ms=record.attempted_at_ms,
        next_attempt_at_ms=record.next_attempt_at_ms,
    )


class AlertOutbox:
    """Alerts in, notifications recorded and handed to the hooks; time is ``clock``."""

    def __init__(
        self,
        rules: Rules,
        store: AlertStore,
        hooks: Sequence[HookConfig],
        *,
        clock: Callable[[], int] = _wall_clock_ms,
        **deliverer_options: Any,
    ) -> None:
        self.rules = rules
        self.store = store
        self.clock = clock
        self.policy = NotificationPolicy(rules)
        self.deliverer = Deliverer(
            hooks, clock=clock, on_delivery=self._on_delivery, **deliverer_options
        )
        self._rows: list[DeliveryRow] = []  # attempts not yet in the table
        self._undecided: list[NotificationRecord] = []  # due, not yet recorded
        self._notified: dict[str, str] = {}  # alert key -> delivery, as recorded
        self._silences: list[Silence] = []
        self._silences_at_ms: int | None = None
        self.stats = AlertStats()  # read by /metrics of the sink process
        self._firing: dict[str, str] = {}  # alert id -> rule, of the alerts firing now

    @property
    def hook_names(self) -> tuple[str, ...]:
        return tuple(self.deliverer.hooks)

    def _on_delivery(self, record: Delivery) -> None:
        # Called inside a delivery attempt: buffered, so a store outage never breaks one.
        self._rows.append(delivery_row(record))
        by = self.stats.webhook_deliveries_by_outcome
        by[record.status] = by.get(record.status, 0) + 1

    # -- input -----------------------------------------------------------------

    def take(self, alerts: Sequence[Alert]) -> None:
        """Write alert records to the table, then let the policy see them. Raises if the
        store is down (nothing observed then: the caller retries and commits after)."""
        self.store.write_alerts(alerts)
        self.policy.observe(alerts, self.clock())
        for a in alerts:
            if a.status == "firing":
                self._firing[a.alert_id] = a.rule
            else:
                self._firing.pop(a.alert_id, None)
        firing: dict[str, int] = {}
        for rule in self._firing.values():
            firing[rule] = firing.get(rule, 0) + 1
        self.stats.firing_by_rule = firing

    def restore(self, owns: Callable[[str], bool] = lambda campaign: True) -> None:
        """Take back what the tables say is still owed, for the campaigns ``owns``."""
        now = self.clock()
        horizon = self.rules.replay_horizon_s * 1000 + self.rules.group_wait_s * 1000
        alerts = [a for a in self.store.open_alerts(now - horizon) if owns(a.campaign_id)]
        keys = [alert_key(a, k) for a in alerts for k in ("firing", "resolved")]
        self._notified.update(self.store.notified(keys))
        for alert in alerts:
            firing = alert
            if alert.status == "resolved":
                firing = msgspec.structs.replace(
                    alert, status="firing", ends_at_ms=None, resolved_reason=None
                )
            decided = self._notified.get(alert_key(firing, "firing"))
            if decided in ("pending", "silenced", "suppressed"):
                self.policy.restore(firing, decided, now)  # type: ignore[arg-type]
            else:
                self.policy.observe([firing], now)
            if alert.status == "resolved":
                self.policy.observe([alert], now)
        give_up_ms = int(self.deliverer.schedule.give_up_after_s * 1000)
        for item in self.store.unfinished(now - give_up_ms):
            if item.hook not in self.deliverer.hooks:
                continue  # a hook of an earlier configuration
            if not owns(item.notification.campaign_id):
                continue
            self._rows.extend(
                delivery_row(r)
                for r in self.deliverer.submit(
                    item.notification,
                    [item.hook],
                    attempts=item.attempts,
                    submitted_at_ms=item.created_at_ms,
                )
            )
        if alerts:
            log.info("alert outbox: took back %d open alerts", len(alerts))

    # -- decisions ---------------------------------------------------------------

    def next_due_ms(self) -> int | None:
        return self.policy.next_due_ms()

    def tick(self, *, last: bool = False) -> list[NotificationRecord]:
        """Record and send what is due now; returns what was recorded this time.

        ``last`` (shutting down): also what is still in its group wait, so that it is
        recorded now rather than only taken back from the alerts table by the next start.
        Raises on a store outage; nothing decided is lost then (it is recorded on the
        next call that reaches the store)."""
        now = self.clock()
        self._flush_rows()
        due = self.policy.next_due_ms()
        decide_at = now + self.rules.group_wait_s * 1000 if last else now
        if not self._undecided and due is not None and due <= decide_at:
            dispatches = self.policy.due(decide_at, self._current_silences(now))
            self._undecided = self._new_only(dispatches)
        recorded = self._undecided
        if recorded:
            self.store.write_notifications(recorded)
            self._undecided = []
            stats = self.stats
            for record in recorded:
                for key in record.keys:
                    self._notified[key] = record.delivery
                self._hand_over(record, now)
                n = record.notification
                outcome = record.delivery
                stats.notifications_by_outcome[outcome] = (
                    stats.notifications_by_outcome.get(outcome, 0) + 1
                )
                if n.kind == "firing":
                    stats.fired_by_rule[n.rule] = stats.fired_by_rule.get(n.rule, 0) + len(n.alerts)
                log.info(
                    "notification %s: %s %s, %d alerts, %s",
                    n.notification_id,
                    n.campaign_id,
                    n.kind,
                    len(n.alerts),
                    record.delivery,
                )
        self._flush_rows()
        self.stats.outbox_pending = len(self.deliverer.pending())
        return recorded

    def _current_silences(self, now: int) -> list[Silence]:
        if self._silences_at_ms is None or now - self._silences_at_ms >= SILENCE_REFRESH_MS:
            self._silences = self.store.silences(now)
            self._silences_at_ms = now
        return self._silences

    def _new_only(self, dispatches: Sequence[Dispatch]) -> list[NotificationRecord]:
        """The dispatches as records, without the alerts already notified as that kind."""
        keys = [
            alert_key(a, d.notification.kind) for d in dispatches for a in d.notification.alerts
        ]
        unknown = [k for k in keys if k not in self._notified]
        if unknown:
            self._notified.update(self.store.notified(unknown))
        out = []
        for dispatch in dispatches:
            n = dispatch.notification
            fresh = [a for a in n.alerts if alert_key(a, n.kind) not in self._notified]
            if not fresh:
                log.info(
                    "notification %s: every alert already notified; not sent", n.notification_id
                )
                continue
            if len(fresh) != len(n.alerts):
                n = msgspec.structs.replace(
                    n,
                    notification_id=notification_id(n.campaign_id, n.rule, n.kind, fresh),
                    alerts=fresh,
                    dashboard_url=fresh[0].dashboard_url,
                )
            out.append(NotificationRecord(n, dispatch.delivery, self.hook_names))
        return out

    def _hand_over(self, record: NotificationRecord, now: int) -> None:
        n: Notification = record.notification
        if record.delivery == "pending":
            self._rows.extend(delivery_row(r) for r in self.deliverer.submit(n))
            return
        self._rows.extend(
            DeliveryRow(n.notification_id, hook, 0, record.delivery, None, "", now)
            for hook in record.hooks
        )

    def _flush_rows(self) -> None:
        if self._rows:
            rows = self._rows
            self.store.write_deliveries(rows)
            del self._rows[: len(rows)]


#: How long the alert sink goes on reading once alerts arrive, so that the alerts of a
#: burst (a campaign's evaluations catching up, several campaigns in the same minute)
#: are written to the store in one insert, not one each: small inserts are what an
#: embedded ClickHouse pays most for. Well inside ``group_wait``, so no notification
#: goes out later for it.
ALERT_READ_LINGER_S = 1.0
#: At most this many alert records per write.
ALERT_READ_MAX_RECORDS = 5000


async def read_lingering(
    consumer: Any,
    linger_s: float,
    *,
    wait_ms: int = 250,
    max_records: int = ALERT_READ_MAX_RECORDS,
) -> dict[Any, list[Any]]:
    """Records of an aiokafka consumer: waits up to ``wait_ms`` for the first, then
    reads on for ``linger_s`` (or until ``max_records``) and returns them together,
    by partition in offset order."""
    batch: dict[Any, list[Any]] = await consumer.getmany(
        timeout_ms=wait_ms, max_records=max_records
    )
    if not batch:
        return batch
    loop = asyncio.get_running_loop()
    deadline = loop.time() + linger_s
    count = sum(len(records) for records in batch.values())
    while count < max_records and (left := deadline - loop.time()) > 0:
        more = await consumer.getmany(
            timeout_ms=max(1, int(left * 1000)), max_records=max_records - count
        )
        for tp, records in more.items():
            batch.setdefault(tp, []).extend(records)
            count += len(records)
    return batch


class AlertSinkService:
    """The alerts topic into an :class:`AlertOutbox`, in a thread with its own event loop."""

    def __init__(
        self,
        outbox: AlertOutbox,
        topic: str,
        reader: GroupReader,
    ) -> None:
        self.outbox = outbox
        self.topic = topic
        self.reader = reader
        self.alerts_read = 0
        self.invalid = 0
        self._assigned: set[int] | None = None  # set by a rebalance, restored then

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set."""
        asyncio.run(self._run(stop))

    def start_thread(self) -> Callable[[], None]:
        """Run in a daemon thread; returns the function that stops it."""
        stop = threading.Event()
        thread = threading.Thread(
            target=self._run_logged, args=(stop,), name="alert-sink", daemon=True
        )
        thread.start()

        def stop_it() -> None:
            stop.set()
            thread.join(timeout=15)

        return stop_it

    def _run_logged(self, stop: threading.Event) -> None:
        try:
            self.run(stop)
        except Exception:
            log.exception("alert sink stopped")

    async def _run(self, stop: threading.Event) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.abc import ConsumerRebalanceListener

        service = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
            async def on_partitions_revoked(self, revoked: Any) -> None:
                return None

            async def on_partitions_assigned(self, assigned: Any) -> None:
                service._assigned = {tp.partition for tp in assigned if tp.topic == service.topic}

        consumer = AIOKafkaConsumer(**self.reader.consumer_options())
        consumer.subscribe([self.topic], listener=Listener())
        await consumer.start()
        deliverer = self.outbox.deliverer
        await deliverer.start()
        delivering = asyncio.Event()
        delivery = asyncio.create_task(deliverer.run(delivering, idle_s=0.5))
        log.info("alert sink %s: reading %s", self.reader.group_id, self.topic)
        try:
            while not stop.is_set():
                if self._assigned is not None:
                    await self._restore(consumer)
                try:
                    batch = await read_lingering(consumer, ALERT_READ_LINGER_S)
                except Exception as exc:  # Kafka trouble: the consumer recovers; keep going
                    log.warning("alert sink: reading %s failed (%s); retrying", self.topic, exc)
                    await asyncio.sleep(self.reader.retry_initial_s)
                    continue
                alerts = self._decode(batch)
                if batch:
                    if not await self._take(alerts, stop):
                        break  # stopped while the store was down: not committed
                    try:
                        await consumer.commit()
                    except Exception as exc:
                        # A rebalance took the partitions: their new owner reads these
                        # alerts again, and the keys keep them from going out twice.
                        log.warning("alert sink: offsets not committed (%s)", exc)
                try:
                    self.outbox.tick()
                except Exception as exc:
                    log.warning("alert outbox: store unavailable (%s); will retry", exc)
        finally:
            delivering.set()
            await delivery
            try:
                # What is due goes out once more, within one hook timeout; what is not
                # delivered stays pending in the tables for the next start.
                if self.outbox.tick(last=True):
                    await deliverer.run_due()
                self.outbox.tick()
            except Exception as exc:
                log.warning("alert outbox: last records not written (%s)", exc)
            await deliverer.close()
            await consumer.stop()
        log.info("alert sink stopped: %d alerts read", self.alerts_read)

    async def _restore(self, consumer: Any) -> None:
        from aiokafka.partitioner import DefaultPartitioner

        assigned = self._assigned or set()
        every = sorted(consumer.partitions_for_topic(self.topic) or assigned)
        partitioner = DefaultPartitioner()

        def owns(campaign_id: str) -> bool:
            # The stage publishes keyed by campaign with aiokafka's default partitioner.
            return bool(every) and partitioner(campaign_id.encode(), every, every) in assigned

        try:
            self.outbox.restore(owns)
            self._assigned = None
        except Exception as exc:
            log.warning("alert outbox: could not read what is owed (%s); will retry", exc)

    def _decode(self, batch: dict[Any, list[Any]]) -> list[Alert]:
        alerts = []
        for records in batch.values():
            for record in records:
                if record.value is None:
                    continue
                try:
                    alerts.append(alert_from_json(record.value))
                except ValueError:
                    self.invalid += 1
                    log.warning("alert sink: ignoring an invalid record: %.200r", record.value)
        self.alerts_read += len(alerts)
        return alerts

    async def _take(self, alerts: list[Alert], stop: threading.Event) -> bool:
        backoff = self.reader.backoff()
        while not stop.is_set():
            try:
                self.outbox.take(alerts)
                return True
            except Exception as exc:
                delay = backoff.next_delay()
                log.warning("alerts not written (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
        return False
