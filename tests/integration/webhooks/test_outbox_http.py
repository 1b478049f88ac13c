"""The alert outbox on chDB delivering to real receivers on 127.0.0.1 (stdlib
``http.server``), each verifying both signatures with its own code: every kind of
trouble at once, every attempt in ``alert_deliveries``, nothing lost, no webhook-id
processed twice. Time is the injected clock, moved to the next due attempt."""

from __future__ import annotations

import asyncio
import socket
import time

import msgspec

from creatorpulse.alerts.outbox import AlertOutbox
from schemas.alerts import Alert
from sinks.clickhouse import ClickHouseSink
from sinks.clickhouse.alerts import ClickHouseAlertStore
from sinks.webhooks import HookConfig, new_secret, parse_secret
from streams.alerts.rules import Rules
from tests.support.receiver import Receiver, serve
from tests.support.webhook_samples import alert
from tests.unit.sinks.webhooks.test_delivery import Clock

RULES = Rules()
SECRET = new_secret()


def live(a: Alert, now_ms: int) -> Alert:
    return msgspec.structs.replace(
        a, starts_at_ms=now_ms, window_start_ms=now_ms - 3_600_000, window_end_ms=now_ms
    )


def hook(name: str, url: str, timeout_s: float = 5.0) -> HookConfig:
    return HookConfig(
        name=name,
        kind="webhook",
        url=url,
        secret=parse_secret(SECRET),
        timeout_s=timeout_s,
        connect_timeout_s=min(timeout_s, 2.0),
    )


def test_every_kind_of_trouble_recorded_nothing_lost(clickhouse_sink: ClickHouseSink) -> None:
    clock = Clock(int(time.time()) * 1000)  # the verifiers check the timestamp
    store = ClickHouseAlertStore(clickhouse_sink)
    down = socket.socket()
    down.bind(("127.0.0.1", 0))  # bound, never listening: refused
    down_url = f"http://127.0.0.1:{down.getsockname()[1]}/hook"
    with (
        serve(Receiver(SECRET, lambda n: 500 if n == 1 else 200)) as flaky,
        serve(
            Receiver(SECRET, lambda n: (429, {"Retry-After": "7"}) if n == 1 else 200)
        ) as limited,
        serve(Receiver(SECRET, lambda n: 410)) as gone,
        serve(Receiver(SECRET, lambda n: 1.5 if n == 1 else 200)) as slow,
        serve(Receiver(SECRET)) as fine,
    ):
        hooks = [
            hook("flaky", flaky.url),
            hook("limited", limited.url),
            hook("gone", gone.url),
            hook("down", down_url, timeout_s=1.0),
            hook("slow", slow.url, timeout_s=0.5),
            hook("fine", fine.url),
        ]
        box = AlertOutbox(RULES, store, hooks, clock=clock, rand=lambda: 0.5)

        async def deliver_until_only_down_is_left() -> None:
            async with box.deliverer:
                for _ in range(10):
                    await box.deliverer.run_due()
                    box.tick()
                    left = {v.hook for v in box.deliverer.pending()}
                    if left <= {"down"}:
                        return
                    clock.now_ms = box.deliverer.next_due_ms() or clock.now_ms

        box.take([live(alert("maya"), clock.now_ms), live(alert("ben", handle="@b"), clock.now_ms)])
        clock.now_ms += RULES.group_wait_s * 1000
        (record,) = box.tick()
        nid = record.notification.notification_id
        started = time.monotonic()
        asyncio.run(deliver_until_only_down_is_left())
        assert time.monotonic() - started < 20  # bounded by the timeouts, not the schedule
    down.close()
    rows = store.deliveries_of(nid)
    by_hook: dict[str, list[tuple[int, str, int | None]]] = {}
    for r in rows:
        by_hook.setdefault(r.hook, []).append((r.attempt, r.status, r.http_status))
    assert by_hook["flaky"] == [(1, "retry", 500), (2, "delivered", 200)]
    assert by_hook["limited"] == [(1, "retry", 429), (2, "delivered", 200)]
    assert by_hook["gone"] == [(1, "disabled", 410)]
    assert by_hook["fine"] == [(1, "delivered", 200)]
    # Processed, but answered past the timeout: retried with the same id, taken once.
    assert by_hook["slow"] == [(1, "retry", None), (2, "delivered", 200)]
    assert [r.webhook_id for r in slow.requests] == [nid, nid]
    assert all(status == "retry" for _, status, _ in by_hook["down"])
    limited_first = next(r for r in rows if r.hook == "limited")
    assert limited_first.next_attempt_at_ms == limited_first.attempted_at_ms + 7_000
    assert box.deliverer.disabled.keys() == {"gone"}
    # The down hook still owes it: a restarted outbox would resubmit exactly that.
    assert [(u.hook, u.notification.notification_id) for u in store.unfinished(0)] == [
        ("down", nid)
    ]
    for receiver in (flaky, limited, slow, fine):
        assert receiver.rejected == []
        assert receiver.processed == [nid]
        assert sorted(receiver.alert_keys()) == sorted(
            f"{a.alert_id}:firing" for a in record.notification.alerts
        )
