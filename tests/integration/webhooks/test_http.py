"""Webhook delivery against real HTTP receivers on 127.0.0.1.

Each receiver is an aiohttp app that checks both signatures with code of its own (the
``standardwebhooks`` package's verifier, and ``hmac.compare_digest`` of the hex HMAC)
and keeps the ``webhook-id`` of every request: an id it has already processed is
answered 200 as a duplicate, so "processed as new" is exactly-once per notification.

Time is the injected clock: a test moves it to the next due attempt instead of waiting.
The clock starts at the wall clock and moves by minutes at most, because the
verifier refuses timestamps more than 5 minutes from its own clock (as it should).
Real waiting happens only where a timeout is the point (fractions of a second).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from schemas.alerts import notification_from_json
from sinks.webhooks import Deliverer, Delivery, HookConfig, new_secret, parse_secret
from tests.support.webhook_samples import notification

SECRET = new_secret()
#: What a receiver does with the n-th request (1-based) it gets for one webhook-id.
Behaviour = Callable[[int, "Clock"], "web.StreamResponse | int | float"]


class Clock:
    """The deliverer's clock: starts at the wall clock (whole seconds), moved by tests."""

    def __init__(self) -> None:
        self.now_ms = int(time.time()) * 1000

    def __call__(self) -> int:
        return self.now_ms


@dataclass
class Receiver:
    """Verifies, records and answers as ``behaviour`` says: an int is a status, a float
    a delay (seconds) before a 200, a response is sent as is."""

    behaviour: Behaviour
    clock: Clock
    signed: bool = True
    seen: list[str] = field(default_factory=list)  # webhook-id of every request
    processed: list[str] = field(default_factory=list)  # ids taken as new
    bodies: list[bytes] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # failed verification

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = dict(request.headers)
        if self.signed and not self._verified(body, headers):
            return web.Response(status=400, text="bad signature")
        message_id = request.headers.get("webhook-id", "")  # Slack messages have none
        self.seen.append(message_id)
        self.bodies.append(body)
        what = self.behaviour(self.seen.count(message_id), self.clock)
        if isinstance(what, web.StreamResponse):
            return what
        if isinstance(what, int) and what != 200:
            return web.Response(status=what, text=f"answered {what}")
        if message_id in self.processed:
            return web.Response(status=200, text="duplicate")
        # Processed before the (maybe slow) answer: a sender that times out and retries
        # must be seen here as a duplicate, not a second alert.
        self.processed.append(message_id)
        if isinstance(what, float):
            await asyncio.sleep(what)
        return web.Response(status=200, text="ok")

    def _verified(self, body: bytes, headers: dict[str, str]) -> bool:
        try:
            Webhook(SECRET).verify(body, headers)
        except WebhookVerificationError as error:
            self.rejected.append(f"standard webhooks: {error}")
            return False
        key = base64.b64decode(SECRET.removeprefix("whsec_"))
        expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(headers.get("X-Creatorpulse-Signature", ""), expected):
            self.rejected.append("X-Creatorpulse-Signature")
            return False
        return True


def free_socket() -> socket.socket:
    """A socket bound to a free loopback port and not listening: connecting to it is
    refused (a receiver that is down) until the test serves on it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def serving(receiver: Receiver, sock: socket.socket | None = None) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    sock = sock or free_socket()
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    finally:
        await runner.cleanup()


def webhook(name: str, url: str, *, timeout_s: float = 2.0) -> HookConfig:
    return HookConfig(
        name=name,
        kind="webhook",
        url=url,
        secret=parse_secret(SECRET),
        timeout_s=timeout_s,
        connect_timeout_s=min(timeout_s, 1.0),
    )


async def drain(deliverer: Deliverer, clock: Clock, *, rounds: int = 20) -> list[Delivery]:
    """Run attempts, moving the clock to each next due time, until nothing is pending."""
    records: list[Delivery] = []
    for _ in range(rounds):
        records += await deliverer.run_due()
        next_due = deliverer.next_due_ms()
        if next_due is None:
            return records
        clock.now_ms = max(clock.now_ms, next_due)
    raise AssertionError(f"still pending after {rounds} rounds: {deliverer.pending()}")


def statuses(records: list[Delivery], nid: str) -> list[tuple[int, str, int | None]]:
    return [(r.attempt, r.status, r.http_status) for r in records if r.notification_id == nid]


def test_500_then_recovery_delivers_each_once_with_the_same_id() -> None:
    clock = Clock()
    receiver = Receiver(lambda n, _: 500 if n <= 2 else 200, clock)

    async def scenario() -> list[Delivery]:
        async with (
            serving(receiver) as url,
            Deliverer([webhook("ops", url)], clock=clock, rand=lambda: 0.5) as d,
        ):
            for i in range(3):
                d.submit(notification(f"n-{i}"))
            return await drain(d, clock)

    records = asyncio.run(scenario())
    for i in range(3):
        assert statuses(records, f"n-{i}") == [
            (1, "retry", 500),
            (2, "retry", 500),
            (3, "delivered", 200),
        ]
    first = [r for r in records if r.notification_id == "n-0"]
    assert first[0].next_attempt_at_ms == first[0].attempted_at_ms + 2_500  # 0.5 x 5 s
    assert first[1].next_attempt_at_ms == first[1].attempted_at_ms + 15_000  # 0.5 x 30 s
    assert first[0].error == "HTTP 500 Internal Server Error: answered 500"
    assert receiver.rejected == []
    assert Counter(receiver.seen) == {"n-0": 3, "n-1": 3, "n-2": 3}  # retries reuse the id
    assert sorted(receiver.processed) == ["n-0", "n-1", "n-2"]
    # The body is the notification itself.
    assert {notification_from_json(b).notification_id for b in receiver.bodies} == {
        "n-0",
        "n-1",
        "n-2",
    }


def test_a_receiver_that_is_down_keeps_everything_pending_until_it_is_up() -> None:
    clock = Clock()
    receiver = Receiver(lambda n, _: 200, clock)
    sock = free_socket()  # bound, not listening: connection refused
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"

    async def scenario() -> list[Delivery]:
        async with Deliverer([webhook("ops", url)], clock=clock, rand=lambda: 0.5) as d:
            d.submit(notification("n-1"))
            d.submit(notification("n-2"))
            records = await d.run_due()
            clock.now_ms = d.next_due_ms() or 0
            records += await d.run_due()
            assert [(v.notification_id, v.attempts) for v in d.pending()] == [
                ("n-1", 2),
                ("n-2", 2),
            ]
            async with serving(receiver, sock):
                clock.now_ms = d.next_due_ms() or 0
                records += await drain(d, clock)
            return records

    records = asyncio.run(scenario())
    for nid in ("n-1", "n-2"):
        assert statuses(records, nid) == [
            (1, "retry", None),
            (2, "retry", None),
            (3, "delivered", 200),
        ]
    refused = records[0]
    assert refused.error.startswith("ClientConnectorError: Cannot connect"), refused.error
    assert sorted(receiver.processed) == ["n-1", "n-2"]
    assert receiver.rejected == []


def test_a_slow_receiver_times_out_without_holding_the_caller() -> None:
    clock = Clock()
    # The first request of each id is processed, then answered after 1 s: past the 0.3 s
    # timeout. The retry is answered at once, as a duplicate.
    receiver = Receiver(lambda n, _: 1.0 if n == 1 else 200, clock)

    async def scenario() -> tuple[list[Delivery], float, int]:
        async with serving(receiver) as url:
            hook = webhook("ops", url, timeout_s=0.3)
            async with Deliverer([hook], clock=clock, rand=lambda: 0.5) as d:
                d.submit(notification("n-1"))
                ticks = 0

                async def counting() -> None:  # stands in for the stream worker
                    nonlocal ticks
                    while True:
                        ticks += 1
                        await asyncio.sleep(0.01)

                counter = asyncio.create_task(counting())
                started = time.monotonic()
                records = await d.run_due()
                waited = time.monotonic() - started
                counter.cancel()
                d.submit(notification("n-2"))  # submitting never waits either
                records += await drain(d, clock)
                return records, waited, ticks

    records, waited, ticks = asyncio.run(scenario())
    assert waited < 0.9, f"the caller waited {waited:.2f} s for a 0.3 s timeout"
    assert ticks >= 5  # the event loop kept running meanwhile
    assert statuses(records, "n-1") == [(1, "retry", None), (2, "delivered", 200)]
    assert records[0].error == "timeout after 0.3 s"
    assert statuses(records, "n-2") == [(1, "retry", None), (2, "delivered", 200)]
    assert Counter(receiver.seen) == {"n-1": 2, "n-2": 2}
    assert receiver.processed == ["n-1", "n-2"]  # each once, although it arrived twice


def test_410_disables_the_endpoint_and_other_hooks_go_on() -> None:
    clock = Clock()
    gone = Receiver(lambda n, _: 410, clock)
    fine = Receiver(lambda n, _: 200, clock)

    async def scenario() -> tuple[list[Delivery], Deliverer]:
        async with serving(gone) as gone_url, serving(fine) as fine_url:
            hooks = [webhook("gone", gone_url), webhook("fine", fine_url)]
            async with Deliverer(hooks, clock=clock, max_in_flight_per_hook=1) as d:
                d.submit(notification("n-1"))
                d.submit(notification("n-2"))
                records = await drain(d, clock)
                records += d.submit(notification("n-3"))
                records += await drain(d, clock)
                return records, d

    records, deliverer = asyncio.run(scenario())
    gone_records = [
        (r.notification_id, r.attempt, r.status, r.http_status) for r in records if r.hook == "gone"
    ]
    assert gone_records == [
        ("n-1", 1, "disabled", 410),
        ("n-2", 0, "disabled", None),
        ("n-3", 0, "disabled", None),
    ]
    assert gone.seen == ["n-1"]  # nothing more was sent to it
    assert "gone" in deliverer.disabled
    assert "fine" not in deliverer.disabled
    assert sorted(fine.processed) == ["n-1", "n-2", "n-3"]


def test_429_retry_after_in_seconds_and_as_a_date() -> None:
    clock = Clock()

    def busy(n: int, now: Clock) -> web.StreamResponse | int:
        if n == 1:
            return web.Response(status=429, headers={"Retry-After": "7"})
        if n == 2:
            at = datetime.fromtimestamp(now() / 1000 + 20, tz=UTC)
            return web.Response(
                status=429, headers={"Retry-After": format_datetime(at, usegmt=True)}
            )
        return 200

    receiver = Receiver(busy, clock)

    async def scenario() -> list[Delivery]:
        async with (
            serving(receiver) as url,
            Deliverer([webhook("ops", url)], clock=clock, rand=lambda: 0.0) as d,
        ):
            d.submit(notification("n-1"))
            records = await d.run_due()
            clock.now_ms += 6_999
            assert await d.run_due() == []  # the receiver said 7 s
            clock.now_ms += 1
            records += await d.run_due()
            clock.now_ms += 19_999
            assert await d.run_due() == []
            clock.now_ms += 1
            records += await d.run_due()
            return records

    first, second, third = asyncio.run(scenario())
    assert (first.status, first.http_status) == ("retry", 429)
    assert first.next_attempt_at_ms == first.attempted_at_ms + 7_000  # no jitter added
    assert second.next_attempt_at_ms == second.attempted_at_ms + 20_000
    assert (third.attempt, third.status) == (3, "delivered")
    assert receiver.processed == ["n-1"]
    assert receiver.seen == ["n-1"] * 3


def test_every_kind_of_trouble_at_once_loses_nothing() -> None:
    clock = Clock()
    down_sock = free_socket()

    def throttled(n: int, _: Clock) -> web.StreamResponse | int:
        return web.Response(status=429, headers={"Retry-After": "3"}) if n == 1 else 200

    receivers = {
        "flaky": Receiver(lambda n, _: 503 if n <= 2 else 200, clock),
        "slow": Receiver(lambda n, _: 0.6 if n == 1 else 200, clock),
        "throttled": Receiver(throttled, clock),
        "down": Receiver(lambda n, _: 200, clock),
    }
    ids = [f"n-{i}" for i in range(6)]

    async def scenario() -> list[Delivery]:
        async with (
            serving(receivers["flaky"]) as flaky,
            serving(receivers["slow"]) as slow,
            serving(receivers["throttled"]) as throttled_url,
        ):
            down_url = f"http://127.0.0.1:{down_sock.getsockname()[1]}/hook"
            hooks = [
                webhook("flaky", flaky),
                webhook("slow", slow, timeout_s=0.2),
                webhook("throttled", throttled_url),
                webhook("down", down_url),
            ]
            async with Deliverer(hooks, clock=clock, rand=lambda: 0.9) as d:
                for nid in ids:
                    d.submit(notification(nid))
                records = await d.run_due()
                async with serving(receivers["down"], down_sock):
                    clock.now_ms = d.next_due_ms() or 0
                    records += await drain(d, clock)
                return records

    records = asyncio.run(scenario())
    delivered = Counter((r.hook, r.notification_id) for r in records if r.status == "delivered")
    assert delivered == {(hook, nid): 1 for hook in receivers for nid in ids}
    assert not [r for r in records if r.status in ("failed", "disabled")]
    for name, receiver in receivers.items():
        assert sorted(receiver.processed) == ids, name
        assert receiver.rejected == [], name
        assert set(receiver.seen) == set(ids), name


def test_slack_hook_posts_text_and_blocks() -> None:
    clock = Clock()
    receiver = Receiver(lambda n, _: 200, clock, signed=False)

    async def scenario() -> list[Delivery]:
        async with serving(receiver) as url:
            hook = HookConfig(name="team", kind="slack", url=url)
            async with Deliverer([hook], clock=clock) as d:
                d.submit(notification("n-1"))
                return await d.run_due()

    (record,) = asyncio.run(scenario())
    assert record.status == "delivered"
    (body,) = receiver.bodies
    message = json.loads(body)
    assert set(message) == {"text", "blocks"}
    assert "@maya.eats" in message["text"]


def test_run_loop_delivers_on_the_wall_clock() -> None:
    receiver = Receiver(lambda n, _: 200, Clock())

    async def scenario() -> list[Delivery]:
        stop = asyncio.Event()
        records: list[Delivery] = []

        def store(record: Delivery) -> None:
            records.append(record)
            if record.status == "delivered":
                stop.set()

        async with (
            serving(receiver) as url,
            Deliverer([webhook("ops", url)], on_delivery=store) as d,
        ):
            loop = asyncio.create_task(d.run(stop, idle_s=0.05))
            d.submit(notification("n-1"))
            await asyncio.wait_for(loop, timeout=5)
        return records

    records = asyncio.run(scenario())
    assert [(r.status, r.http_status) for r in records] == [("delivered", 200)]
    assert receiver.processed == ["n-1"]
    assert receiver.rejected == []
