"""Delivery policy and the outbox, with an injected clock, random source and transport:
the retry schedule, Retry-After, 410, the per-hook bound. The same paths against a real
HTTP receiver are in tests/integration/test_webhooks_http.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, TypeVar

import pytest

from sinks.webhooks.config import HookConfig
from sinks.webhooks.delivery import (
    AttemptResult,
    Deliverer,
    Delivery,
    RetrySchedule,
    decide,
    parse_retry_after,
)
from tests.support.webhook_samples import notification

NOW_MS = 1_795_338_090_000
HOOK = HookConfig(name="ops", kind="webhook", url="http://127.0.0.1:9/in")


class Clock:
    def __init__(self, now_ms: int = NOW_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


class ScriptedTransport:
    """Answers a POST with ``script(hook, webhook-id, n)``, n counting that pair's POSTs."""

    def __init__(self, script: Callable[[str, str, int], AttemptResult] | None = None) -> None:
        self.script = script or (lambda hook, nid, n: AttemptResult(http_status=200))
        self.posts: list[tuple[str, str]] = []  # (hook, webhook-id or "")

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def post(self, hook: HookConfig, body: bytes, headers: dict[str, str]) -> AttemptResult:
        nid = headers.get("webhook-id", "")
        self.posts.append((hook.name, nid))
        return self.script(hook.name, nid, self.posts.count((hook.name, nid)))


T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


# --- the schedule -------------------------------------------------------------------------


def test_schedule_steps_with_full_jitter() -> None:
    schedule = RetrySchedule()
    assert [schedule.step_s(n) for n in range(1, 9)] == [5, 30, 120, 600, 1800, 3600, 3600, 3600]
    assert [schedule.delay_s(n, 0.5) for n in (1, 2, 3)] == [2.5, 15.0, 60.0]
    assert schedule.delay_s(1, 0.0) == 1.0  # never in the same instant
    assert schedule.delay_s(6, 0.999) == pytest.approx(3596.4)


def test_schedule_rejects_non_positive_numbers() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        RetrySchedule(steps_s=(5.0, 0.0))


def test_gives_up_after_24_hours_of_retries() -> None:
    schedule = RetrySchedule()
    at, attempt, records = NOW_MS, 0, []
    while True:
        attempt += 1
        record = decide(
            AttemptResult(http_status=503),
            notification_id="n",
            hook="ops",
            attempt=attempt,
            attempted_at_ms=at,
            decided_at_ms=at,
            submitted_at_ms=NOW_MS,
            schedule=schedule,
            rand=0.9999999,
        )
        records.append(record)
        if record.status != "retry":
            break
        assert record.next_attempt_at_ms is not None
        at = record.next_attempt_at_ms
    assert records[-1].status == "failed"
    assert records[-1].error == f"gave up after {attempt} attempts in 24 h: HTTP 503"
    # 1 + 5 retries in the first 43 min (5 s + 30 s + 2 min + 10 min + 30 min), then 23
    # hourly ones: at the longest waits, 29 attempts in a day.
    assert attempt == 29
    assert at - NOW_MS <= 24 * 3600 * 1000


# --- Retry-After and outcomes -------------------------------------------------------------


def test_parse_retry_after() -> None:
    in_90_s = format_datetime(datetime.fromtimestamp(NOW_MS / 1000 + 90, tz=UTC), usegmt=True)
    assert parse_retry_after("120", NOW_MS) == 120.0
    assert parse_retry_after(" 7 ", NOW_MS) == 7.0
    assert parse_retry_after(in_90_s, NOW_MS) == pytest.approx(90.0)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", NOW_MS) == 0.0  # past
    for bad in (None, "", "soon", "-5", "1.5", "Wed, 99 Foo 2015"):
        assert parse_retry_after(bad, NOW_MS) is None


def outcome(result: AttemptResult, attempt: int = 1, rand: float = 0.5) -> Delivery:
    return decide(
        result,
        notification_id="n-1",
        hook="ops",
        attempt=attempt,
        attempted_at_ms=NOW_MS - 40,
        decided_at_ms=NOW_MS,
        submitted_at_ms=NOW_MS - 40,
        schedule=RetrySchedule(),
        rand=rand,
    )


def test_only_2xx_is_delivered() -> None:
    for status in (200, 202, 204, 299):
        assert outcome(AttemptResult(http_status=status)).status == "delivered"
    for status in (100, 301, 304, 400, 401, 404, 500, 503):
        record = outcome(AttemptResult(http_status=status, error=f"HTTP {status}"))
        assert (record.status, record.next_attempt_at_ms) == ("retry", NOW_MS + 2500)


def test_410_disables_and_timeouts_retry() -> None:
    gone = outcome(AttemptResult(http_status=410, error="HTTP 410 Gone"))
    assert (gone.status, gone.http_status, gone.next_attempt_at_ms) == ("disabled", 410, None)
    timeout = outcome(AttemptResult(error="timeout after 5 s"), attempt=3, rand=0.25)
    assert timeout.status == "retry"
    assert timeout.error == "timeout after 5 s"
    assert timeout.next_attempt_at_ms == NOW_MS + 30_000  # 0.25 x 2 min
    assert timeout.attempted_at_ms == NOW_MS - 40


def test_429_honours_retry_after_without_jitter() -> None:
    record = outcome(AttemptResult(http_status=429, retry_after="7"), rand=0.0)
    assert record.next_attempt_at_ms == NOW_MS + 7000
    in_20_s = format_datetime(datetime.fromtimestamp(NOW_MS / 1000 + 20, tz=UTC), usegmt=True)
    dated = outcome(AttemptResult(http_status=429, retry_after=in_20_s))
    assert dated.next_attempt_at_ms == NOW_MS + 20_000
    unreadable = outcome(AttemptResult(http_status=429, retry_after="later"))
    assert unreadable.next_attempt_at_ms == NOW_MS + 2500  # the schedule
    # Only a 429 is read for Retry-After; a 503 follows the schedule.
    assert (
        outcome(AttemptResult(http_status=503, retry_after="7")).next_attempt_at_ms == NOW_MS + 2500
    )


def test_429_past_the_retry_window_fails() -> None:
    record = outcome(AttemptResult(http_status=429, retry_after=str(25 * 3600)))
    assert record.status == "failed"
    assert "gave up" in record.error


# --- the outbox ---------------------------------------------------------------------------


def test_retries_on_schedule_then_delivers() -> None:
    clock = Clock()
    failing_twice = ScriptedTransport(
        lambda hook, nid, n: (
            AttemptResult(http_status=500, error="HTTP 500")
            if n <= 2
            else AttemptResult(http_status=200)
        )
    )
    stored: list[Delivery] = []
    deliverer = Deliverer(
        [HOOK], clock=clock, rand=lambda: 0.5, transport=failing_twice, on_delivery=stored.append
    )

    async def scenario() -> None:
        deliverer.submit(notification("n-1"))
        first = await deliverer.run_due()
        assert [(r.attempt, r.status, r.next_attempt_at_ms) for r in first] == [
            (1, "retry", NOW_MS + 2500)
        ]
        assert deliverer.next_due_ms() == NOW_MS + 2500
        clock.now_ms += 2499
        assert await deliverer.run_due() == []  # not yet due
        clock.now_ms += 1
        (second,) = await deliverer.run_due()
        assert (second.attempt, second.status) == (2, "retry")
        assert second.next_attempt_at_ms == clock.now_ms + 15_000
        (view,) = deliverer.pending()
        assert (view.notification_id, view.attempts, view.last_error) == ("n-1", 2, "HTTP 500")
        clock.now_ms += 15_000
        (third,) = await deliverer.run_due()
        assert (third.attempt, third.status, third.http_status) == (3, "delivered", 200)

    run(scenario())
    assert deliverer.pending() == []
    assert deliverer.next_due_ms() is None
    assert [r.status for r in stored] == ["retry", "retry", "delivered"]
    assert failing_twice.posts == [("ops", "n-1")] * 3  # the same webhook-id every time


def test_410_disables_the_hook_and_records_what_it_held() -> None:
    clock = Clock()
    gone = HookConfig(name="gone", kind="webhook", url="http://127.0.0.1:9/gone")
    transport = ScriptedTransport(
        lambda hook, nid, n: (
            AttemptResult(http_status=200)
            if hook == "ops"
            else AttemptResult(http_status=410, error="HTTP 410 Gone")
        )
    )
    deliverer = Deliverer(
        [gone, HOOK], clock=clock, rand=lambda: 0.5, transport=transport, max_in_flight_per_hook=1
    )

    async def scenario() -> list[Delivery]:
        deliverer.submit(notification("x-1"), hooks=["gone"])
        deliverer.submit(notification("x-2"), hooks=["gone"])
        records = await deliverer.run_due()
        records += deliverer.submit(notification("x-3"))
        records += await deliverer.run_due()
        return records

    records = run(scenario())
    by_hook = [(r.hook, r.notification_id, r.attempt, r.status, r.http_status) for r in records]
    assert by_hook == [
        ("gone", "x-1", 1, "disabled", 410),
        ("gone", "x-2", 0, "disabled", None),  # never attempted: recorded, not lost
        ("gone", "x-3", 0, "disabled", None),  # submitted after the 410
        ("ops", "x-3", 1, "delivered", 200),  # the other hook goes on
    ]
    assert "410" in deliverer.disabled["gone"]
    assert deliverer.pending("gone") == []
    assert ("gone", "x-2") not in transport.posts
    deliverer.enable("gone")
    assert deliverer.submit(notification("x-4"), hooks=["gone"]) == []
    assert [v.notification_id for v in deliverer.pending("gone")] == ["x-4"]


def test_outbox_bound_drops_the_oldest_and_logs_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    deliverer = Deliverer(
        [HOOK],
        clock=clock,
        transport=ScriptedTransport(),
        max_pending_per_hook=3,
        max_in_flight_per_hook=1,
    )
    caplog.set_level(logging.WARNING, logger="sinks.webhooks.delivery")
    dropped = []
    for i in range(5):
        dropped += deliverer.submit(notification(f"n-{i}"))
    assert [(r.notification_id, r.status, r.error, r.attempt) for r in dropped] == [
        ("n-0", "failed", "outbox full", 0),
        ("n-1", "failed", "outbox full", 0),
    ]
    assert [v.notification_id for v in deliverer.pending()] == ["n-2", "n-3", "n-4"]
    full = [r.getMessage() for r in caplog.records if "outbox full" in r.getMessage()]
    assert full == ["hook ops: outbox full (3 pending); dropped the oldest notification n-0"]
    clock.now_ms += 60_000
    deliverer.submit(notification("n-5"))
    full = [r.getMessage() for r in caplog.records if "outbox full" in r.getMessage()]
    assert full[-1].endswith("n-2 (1 more like it since the last such line)")
    assert len(full) == 2


def test_a_notification_in_flight_is_not_dropped_for_room() -> None:
    clock = Clock()
    release = asyncio.Event()

    class Held(ScriptedTransport):
        async def post(
            self, hook: HookConfig, body: bytes, headers: dict[str, str]
        ) -> AttemptResult:
            await release.wait()
            return AttemptResult(http_status=200)

    deliverer = Deliverer(
        [HOOK], clock=clock, transport=Held(), max_pending_per_hook=2, max_in_flight_per_hook=1
    )

    async def scenario() -> list[Delivery]:
        deliverer.submit(notification("n-0"))
        attempt = asyncio.create_task(deliverer.run_due())
        await asyncio.sleep(0)  # let the attempt start
        deliverer.submit(notification("n-1"))
        dropped = deliverer.submit(notification("n-2"))
        release.set()
        return dropped + await attempt

    records = run(scenario())
    assert [(r.notification_id, r.status) for r in records] == [
        ("n-1", "failed"),
        ("n-0", "delivered"),
    ]


def test_submitting_a_pending_notification_again_keeps_its_attempts() -> None:
    clock = Clock()
    down = ScriptedTransport(lambda hook, nid, n: AttemptResult(error="refused"))
    deliverer = Deliverer([HOOK], clock=clock, rand=lambda: 0.5, transport=down)
    deliverer.submit(notification("n-1"))
    run(deliverer.run_due())
    assert deliverer.submit(notification("n-1")) == []  # a replay of the same notification
    (view,) = deliverer.pending()
    assert (view.attempts, view.next_attempt_at_ms) == (1, NOW_MS + 2500)
    assert run(deliverer.run_due()) == []  # not hammered again before its time


def test_a_cancelled_round_reports_what_finished_and_keeps_the_rest_due() -> None:
    class HangingForSome(ScriptedTransport):
        async def post(
            self, hook: HookConfig, body: bytes, headers: dict[str, str]
        ) -> AttemptResult:
            if headers["webhook-id"] == "hangs":
                await asyncio.Event().wait()
            return AttemptResult(http_status=200)

    stored: list[Delivery] = []
    deliverer = Deliverer(
        [HOOK], clock=Clock(), transport=HangingForSome(), on_delivery=stored.append
    )

    async def scenario() -> None:
        deliverer.submit(notification("quick"))
        deliverer.submit(notification("hangs"))
        attempt = asyncio.create_task(deliverer.run_due())
        for _ in range(3):
            await asyncio.sleep(0)  # let both attempts start and the quick one finish
        assert deliverer.due(NOW_MS) == []  # in flight
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt

    run(scenario())
    assert [(r.notification_id, r.status) for r in stored] == [("quick", "delivered")]
    assert deliverer.due(NOW_MS) == [("ops", "hangs")]
    assert [v.attempts for v in deliverer.pending()] == [0]


def test_submitting_twice_queues_once_and_due_is_bounded_per_hook() -> None:
    clock = Clock()
    transport = ScriptedTransport()
    deliverer = Deliverer([HOOK], clock=clock, transport=transport, max_in_flight_per_hook=2)
    for nid in ("a", "b", "a", "c"):
        deliverer.submit(notification(nid))
    assert deliverer.due(clock()) == [("ops", "a"), ("ops", "b")]
    records = run(deliverer.run_due())
    assert [r.notification_id for r in records] == ["a", "b"]
    assert [r.notification_id for r in run(deliverer.run_due())] == ["c"]


def test_a_transport_bug_keeps_the_notification_pending() -> None:
    class Broken(ScriptedTransport):
        async def post(
            self, hook: HookConfig, body: bytes, headers: dict[str, str]
        ) -> AttemptResult:
            raise KeyError("oops")

    deliverer = Deliverer([HOOK], clock=Clock(), rand=lambda: 0.5, transport=Broken())
    deliverer.submit(notification("n-1"))
    (record,) = run(deliverer.run_due())
    assert (record.status, record.error) == ("retry", "KeyError: 'oops'")
    assert [v.attempts for v in deliverer.pending()] == [1]


def test_log_hook_writes_one_line_per_notification(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="creatorpulse.alerts")
    deliverer = Deliverer([HookConfig(name="console", kind="log")], clock=Clock())
    deliverer.submit(notification("n-7"))
    (record,) = run(deliverer.run_due())
    assert (record.status, record.http_status, record.attempt) == ("delivered", None, 1)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "creatorpulse.alerts"]
    assert line.startswith("alert type=creator.outperforming kind=firing campaign=spring")
    assert "notification_id=n-7 alerts=1 creator=maya handle=@maya.eats status=firing" in line
    assert "metric=engagement_rate value=0.152 median=0.071 z=4.20 lift=2.14 views=12000" in line
    assert line.endswith('url="https://dash.example/campaigns/spring?creator=maya&window=1h"')


def test_log_line_stays_one_line() -> None:
    from sinks.webhooks.loghook import log_line
    from tests.support.webhook_samples import alert

    line = log_line(notification(alerts=[alert("evil\ncreator=x", handle="a b")]))
    assert "\n" not in line
    assert 'creator="evil\\ncreator=x" handle="a b"' in line
