"""Delivering notifications to hooks: one attempt at a time, retried on a schedule, never lost.

- :class:`RetrySchedule` and :func:`decide` are the policy, pure: what an attempt's
  outcome means and when the next one is due. Only a 2xx is delivered; a 410 disables
  the endpoint; a 429 waits what its ``Retry-After`` says; anything else (5xx, another
  status, a timeout, a refused connection) is retried with backoff and full jitter.
- :class:`Deliverer` is the outbox: it holds every pending notification per hook, asks
  what is due at the injected clock's now, runs those attempts and records each one as
  a :class:`Delivery`. :meth:`Deliverer.submit` never waits on a receiver and
  :meth:`Deliverer.run_due` waits at most the slowest hook's timeout, so a dead or slow
  receiver costs its caller a bounded wait and nothing else; its notifications stay
  pending, with their attempts, until delivered or given up (and then recorded so).
- :class:`HttpTransport` is the thin aiohttp adapter that makes one POST.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Literal, Protocol

import aiohttp

from schemas.alerts import Notification, notification_to_json
from sinks.webhooks import loghook
from sinks.webhooks.config import HookConfig
from sinks.webhooks.signing import webhook_headers
from sinks.webhooks.slack import slack_payload

log = logging.getLogger(__name__)

DeliveryStatus = Literal["delivered", "retry", "failed", "disabled"]

#: Pending notifications one hook may hold; past it the oldest is dropped and recorded
#: as ``failed: outbox full``. At the default schedule a receiver down for a day holds
#: every notification of a busy campaign day in far less than this.
DEFAULT_MAX_PENDING_PER_HOOK = 1000
#: Attempts one hook gets per round; they run concurrently, so a round lasts at most one
#: timeout, and a receiver coming back is not hit by its whole backlog at once.
DEFAULT_MAX_IN_FLIGHT_PER_HOOK = 10
#: Of a rejected attempt's response body, this much goes into its error text.
ERROR_BODY_CHARS = 200
#: Repeated warnings about one hook (outbox full, retries) are logged once per this.
WARNING_INTERVAL_MS = 60_000


@dataclass(frozen=True)
class RetrySchedule:
    """When a failed attempt is tried again.

    The n-th retry waits a random time between ``min_delay_s`` and the n-th step (full
    jitter: receivers recovering from an outage are not hit by every sender at once):
    steps of 5 s, 30 s, 2 min, 10 min, 30 min, then ``then_every_s`` (1 h). A notification
    still undelivered ``give_up_after_s`` (24 h) after it was submitted is recorded as
    failed. A 429's ``Retry-After`` replaces the step (no jitter: the receiver named
    the time).
    """

    steps_s: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0, 1800.0)
    then_every_s: float = 3600.0
    give_up_after_s: float = 24 * 3600.0
    #: A retry never goes out in the same instant as the failure it follows.
    min_delay_s: float = 1.0

    def __post_init__(self) -> None:
        numbers = (*self.steps_s, self.then_every_s, self.give_up_after_s, self.min_delay_s)
        if any(not value > 0 for value in numbers):
            raise ValueError(f"every retry delay must be positive: {self}")

    def step_s(self, failures: int) -> float:
        """The cap of the delay after ``failures`` failed attempts (1 = the first)."""
        if failures <= len(self.steps_s):
            return self.steps_s[max(failures, 1) - 1]
        return self.then_every_s

    def delay_s(self, failures: int, rand: float) -> float:
        """The wait after ``failures`` failed attempts; ``rand`` is uniform in [0, 1)."""
        return max(self.min_delay_s, rand * self.step_s(failures))


@dataclass(frozen=True)
class Delivery:
    """One attempt at one notification for one hook, or a decision that ended it."""

    notification_id: str
    hook: str
    attempt: int  # 1 = the first; 0 for a record made without an attempt (outbox full)
    status: DeliveryStatus
    http_status: int | None
    error: str  # "" when delivered
    attempted_at_ms: int
    next_attempt_at_ms: int | None  # set for status "retry" only


@dataclass(frozen=True)
class AttemptResult:
    """What one POST came back with: a status (and Retry-After), or an error."""

    http_status: int | None = None
    retry_after: str | None = None
    error: str = ""


def parse_retry_after(value: str | None, now_ms: int) -> float | None:
    """``Retry-After`` in seconds from ``now_ms``: delay-seconds or an HTTP date (RFC 9110).
    ``None`` when absent or unreadable; a date in the past is 0."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT; "-0000" parses as naive
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_ms / 1000)


def decide(
    result: AttemptResult,
    *,
    notification_id: str,
    hook: str,
    attempt: int,
    attempted_at_ms: int,
    decided_at_ms: int,
    submitted_at_ms: int,
    schedule: RetrySchedule,
    rand: float,
) -> Delivery:
    """The record of one attempt: delivered, disabled, retry (and when) or failed."""
    status = result.http_status

    def record(state: DeliveryStatus, error: str, next_at: int | None = None) -> Delivery:
        return Delivery(
            notification_id=notification_id,
            hook=hook,
            attempt=attempt,
            status=state,
            http_status=status,
            error=error,
            attempted_at_ms=attempted_at_ms,
            next_attempt_at_ms=next_at,
        )

    if status is not None and 200 <= status < 300:
        return record("delivered", "")
    error = result.error or f"HTTP {status}"
    if status == 410:
        return record("disabled", f"{error}: the receiver is gone; hook disabled")
    delay_s = parse_retry_after(result.retry_after, decided_at_ms) if status == 429 else None
    if delay_s is None:
        delay_s = schedule.delay_s(attempt, rand)
    next_at = decided_at_ms + round(delay_s * 1000)
    if next_at > submitted_at_ms + schedule.give_up_after_s * 1000:
        hours = schedule.give_up_after_s / 3600
        return record("failed", f"gave up after {attempt} attempts in {hours:g} h: {error}")
    return record("retry", error, next_at)


class Transport(Protocol):
    """Makes one POST; never raises for what a receiver does (that is a result)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def post(
        self, hook: HookConfig, body: bytes, headers: dict[str, str]
    ) -> AttemptResult: ...


class HttpTransport:
    """One aiohttp session for every hook; each POST bounded by its hook's timeouts."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            # trust_env off: a proxy from the environment must not see signed alerts
            # unless configured here on purpose.
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": "creatorpulse-webhooks"}, trust_env=False
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, hook: HookConfig, body: bytes, headers: dict[str, str]) -> AttemptResult:
        if self._session is None:
            raise RuntimeError("HttpTransport.start() was not called")
        assert hook.url is not None  # HookConfig requires one for HTTP kinds
        timeout = aiohttp.ClientTimeout(
            total=hook.timeout_s,
            connect=hook.connect_timeout_s,
            sock_connect=hook.connect_timeout_s,
        )
        try:
            # The outer bound keeps the caller's wait bounded whatever the client does.
            async with asyncio.timeout(hook.timeout_s + 1.0):
                async with self._session.post(
                    hook.url,
                    data=body,
                    headers={**headers, "Content-Type": "application/json"},
                    timeout=timeout,
                    allow_redirects=False,  # a redirect would carry the body elsewhere
                ) as response:
                    if 200 <= response.status < 300:
                        return AttemptResult(http_status=response.status)
                    text = await response.content.read(ERROR_BODY_CHARS * 4)
                    return AttemptResult(
                        http_status=response.status,
                        retry_after=response.headers.get("Retry-After"),
                        error=_error_text(response.status, response.reason, text),
                    )
        except TimeoutError:
            return AttemptResult(error=f"timeout after {hook.timeout_s:g} s")
        except (aiohttp.ClientError, OSError) as error:
            return AttemptResult(error=f"{type(error).__name__}: {error}"[:ERROR_BODY_CHARS])


def _error_text(status: int, reason: str | None, body: bytes) -> str:
    """``HTTP 503 Service Unavailable: <start of the body>``, on one line."""
    text = " ".join(body.decode("utf-8", errors="replace").split())[:ERROR_BODY_CHARS]
    head = f"HTTP {status} {reason or ''}".rstrip()
    return f"{head}: {text}" if text else head


@dataclass(frozen=True)
class PendingView:
    """A notification waiting for one hook, as :meth:`Deliverer.pending` shows it."""

    hook: str
    notification_id: str
    attempts: int
    submitted_at_ms: int
    next_attempt_at_ms: int
    last_error: str


@dataclass
class _Pending:
    notification: Notification
    submitted_at_ms: int
    next_attempt_at_ms: int
    attempts: int = 0
    last_error: str = ""
    in_flight: bool = False


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Deliverer:
    """The outbox of every hook: submit notifications, then call :meth:`run_due` (or
    :meth:`run`) to attempt what is due. Every attempt and every decision that ends a
    notification (delivered, failed, disabled, outbox full) is passed to
    ``on_delivery`` and returned, for the caller to store.

    ``clock`` (epoch ms) and ``rand`` (uniform in [0, 1)) are injected so that tests
    decide time and jitter; ``transport`` defaults to :class:`HttpTransport`.
    """

    def __init__(
        self,
        hooks: Sequence[HookConfig],
        *,
        clock: Callable[[], int] = _wall_clock_ms,
        rand: Callable[[], float] | None = None,
        schedule: RetrySchedule = RetrySchedule(),
        max_pending_per_hook: int = DEFAULT_MAX_PENDING_PER_HOOK,
        max_in_flight_per_hook: int = DEFAULT_MAX_IN_FLIGHT_PER_HOOK,
        on_delivery: Callable[[Delivery], None] | None = None,
        transport: Transport | None = None,
        logger: logging.Logger = loghook.LOGGER,
    ) -> None:
        names = [hook.name for hook in hooks]
        if len(set(names)) != len(names):
            raise ValueError(f"hook names must be unique: {names}")
        if max_pending_per_hook < max_in_flight_per_hook or max_in_flight_per_hook < 1:
            raise ValueError("need 1 <= max_in_flight_per_hook <= max_pending_per_hook")
        self.hooks = {hook.name: hook for hook in hooks}
        self._clock = clock
        self._rand = rand or random.Random().random
        self.schedule = schedule
        self.max_pending_per_hook = max_pending_per_hook
        self.max_in_flight_per_hook = max_in_flight_per_hook
        self._on_delivery = on_delivery
        self._transport: Transport = transport or HttpTransport()
        self._alert_log = logger
        # Insertion order is submission order: the first entry is the oldest.
        self._pending: dict[str, dict[str, _Pending]] = {name: {} for name in names}
        self._disabled: dict[str, str] = {}  # hook -> why
        self._warned_at: dict[tuple[str, str], int] = {}
        self._unwarned: dict[tuple[str, str], int] = {}

    async def start(self) -> None:
        await self._transport.start()

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> Deliverer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def disabled(self) -> dict[str, str]:
        """Hooks a 410 disabled, with the reason."""
        return dict(self._disabled)

    def enable(self, hook: str) -> None:
        """Take a hook back into service (its receiver is back, or was replaced)."""
        self._disabled.pop(hook, None)

    def submit(
        self,
        notification: Notification,
        hooks: Iterable[str] | None = None,
        *,
        attempts: int = 0,
        submitted_at_ms: int | None = None,
    ) -> list[Delivery]:
        """Queue a notification for every hook (or those named); due at once.

        Never waits. A notification already pending for a hook is not queued twice.
        Returns the records this made: a disabled hook's refusal, and the oldest pending
        notification dropped when a hook's outbox is full. ``attempts`` and
        ``submitted_at_ms`` resume a notification from an earlier run's records (attempt
        numbers go on; the give-up time counts from the first submission).
        """
        now = self._clock()
        made: list[Delivery] = []
        for name in self.hooks if hooks is None else hooks:
            queue = self._pending[name]  # KeyError for an unknown hook: a caller's bug
            nid = notification.notification_id
            if name in self._disabled:
                made.append(self._ended(name, nid, 0, "disabled", self._disabled[name], now))
                continue
            if nid in queue:
                continue
            if len(queue) >= self.max_pending_per_hook:
                made.extend(self._drop_oldest(name, now))
            queue[nid] = _Pending(
                notification,
                submitted_at_ms=now if submitted_at_ms is None else submitted_at_ms,
                next_attempt_at_ms=now,
                attempts=attempts,
            )
        return self._emit(made)

    def pending(self, hook: str | None = None) -> list[PendingView]:
        """What waits, oldest first (per hook)."""
        names = self.hooks if hook is None else [hook]
        return [
            PendingView(
                hook=name,
                notification_id=nid,
                attempts=item.attempts,
                submitted_at_ms=item.submitted_at_ms,
                next_attempt_at_ms=item.next_attempt_at_ms,
                last_error=item.last_error,
            )
            for name in names
            for nid, item in self._pending[name].items()
        ]

    def next_due_ms(self) -> int | None:
        """When the earliest pending attempt is due (``None``: nothing pending)."""
        times = [
            item.next_attempt_at_ms
            for queue in self._pending.values()
            for item in queue.values()
            if not item.in_flight
        ]
        return min(times, default=None)

    def due(self, now_ms: int) -> list[tuple[str, str]]:
        """(hook, notification id) of the attempts due at ``now_ms``, earliest first, at
        most ``max_in_flight_per_hook`` per hook counting those already in flight."""
        chosen: list[tuple[int, str, str]] = []
        for name, queue in self._pending.items():
            room = self.max_in_flight_per_hook - sum(item.in_flight for item in queue.values())
            ready = [
                (item.next_attempt_at_ms, name, nid)
                for nid, item in queue.items()
                if not item.in_flight and item.next_attempt_at_ms <= now_ms
            ]
            # sorted() is stable: equal times keep submission order.
            chosen += sorted(ready, key=lambda entry: entry[0])[: max(room, 0)]
        chosen.sort(key=lambda entry: entry[0])
        return [(name, nid) for _, name, nid in chosen]

    async def run_due(self) -> list[Delivery]:
        """Attempt everything due now, concurrently; returns the records. Waits at most
        the slowest hook's timeout: a slow receiver times out into a retry."""
        now = self._clock()
        batch = self.due(now)
        for name, nid in batch:
            self._pending[name][nid].in_flight = True
        try:
            results = await asyncio.gather(*(self._attempt(name, nid) for name, nid in batch))
        except asyncio.CancelledError:
            # Shutting down: attempts cut short did not happen; they stay due.
            for name, nid in batch:
                if nid in self._pending[name]:
                    self._pending[name][nid].in_flight = False
            raise
        return [record for group in results for record in group]

    async def run(self, stop: asyncio.Event, *, idle_s: float = 1.0) -> None:
        """Call :meth:`run_due` until ``stop`` is set, sleeping until the next attempt is
        due (at most ``idle_s``, so new submissions go out within it)."""
        while not stop.is_set():
            await self.run_due()
            next_due = self.next_due_ms()
            wait_s = idle_s if next_due is None else (next_due - self._clock()) / 1000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(max(wait_s, 0.01), idle_s))

    async def _attempt(self, name: str, nid: str) -> list[Delivery]:
        hook = self.hooks[name]
        item = self._pending[name][nid]
        attempt = item.attempts + 1
        attempted_at = self._clock()
        try:
            result = await self._send(hook, item.notification, attempted_at)
        except Exception as error:  # a bug here must not lose the notification
            log.exception("hook %s: attempt failed unexpectedly", name)
            result = AttemptResult(error=f"{type(error).__name__}: {error}"[:ERROR_BODY_CHARS])
        if result is None:  # written locally (the log hook): nothing to retry
            record = Delivery(nid, name, attempt, "delivered", None, "", attempted_at, None)
        else:
            record = self._decide(result, nid, name, attempt, attempted_at, item)
        item.in_flight = False
        item.attempts = attempt
        item.last_error = record.error
        made = [record]
        if record.status == "retry" and name in self._disabled:
            # Another attempt's 410 disabled the hook while this one was out.
            made.append(self._ended(name, nid, attempt, "disabled", self._disabled[name]))
        elif record.status == "retry":
            assert record.next_attempt_at_ms is not None
            item.next_attempt_at_ms = record.next_attempt_at_ms
            self._warn(name, "retry", "hook %s: %s; will retry (%s)", name, record.error, nid)
        else:
            del self._pending[name][nid]
            if record.status == "failed":
                log.warning("hook %s: notification %s failed: %s", name, nid, record.error)
            elif record.status == "disabled":
                made.extend(self._disable(name, record.error, attempted_at))
        # Each attempt's records go out as it ends, so a round cut short by shutdown
        # still reports the attempts that did finish.
        return self._emit(made)

    def _decide(
        self, result: AttemptResult, nid: str, name: str, attempt: int, at_ms: int, item: _Pending
    ) -> Delivery:
        return decide(
            result,
            notification_id=nid,
            hook=name,
            attempt=attempt,
            attempted_at_ms=at_ms,
            decided_at_ms=self._clock(),
            submitted_at_ms=item.submitted_at_ms,
            schedule=self.schedule,
            rand=self._rand(),
        )

    async def _send(
        self, hook: HookConfig, notification: Notification, now_ms: int
    ) -> AttemptResult | None:
        """One attempt; ``None`` when the hook wrote it locally (the log hook)."""
        if hook.kind == "log":
            loghook.write(notification, self._alert_log)
            return None
        if hook.kind == "slack":
            body = json.dumps(slack_payload(notification), ensure_ascii=False).encode()
            headers: dict[str, str] = {}
        else:
            body = notification_to_json(notification)
            headers = webhook_headers(
                body,
                message_id=notification.notification_id,
                timestamp_s=now_ms // 1000,
                key=hook.secret,
            )
        return await self._transport.post(hook, body, headers)

    def _disable(self, name: str, why: str, now_ms: int) -> list[Delivery]:
        """A 410: the hook takes nothing more, and what it still holds is recorded as
        disabled (kept in the records, so it can be redelivered elsewhere or later)."""
        self._disabled[name] = why
        log.warning("hook %s disabled: %s", name, why)
        queue = self._pending[name]
        made = []
        for nid, item in list(queue.items()):
            if not item.in_flight:
                made.append(self._ended(name, nid, item.attempts, "disabled", why, now_ms))
        return made

    def _drop_oldest(self, name: str, now_ms: int) -> list[Delivery]:
        queue = self._pending[name]
        for nid, item in queue.items():
            if not item.in_flight:
                self._warn(
                    name,
                    "full",
                    "hook %s: outbox full (%d pending); dropped the oldest notification %s",
                    name,
                    len(queue),
                    nid,
                )
                return [self._ended(name, nid, item.attempts, "failed", "outbox full", now_ms)]
        return []  # unreachable: max_pending > max_in_flight

    def _ended(
        self,
        name: str,
        nid: str,
        attempts: int,
        status: DeliveryStatus,
        error: str,
        now_ms: int | None = None,
    ) -> Delivery:
        """A record that ends a notification for a hook without an attempt of its own."""
        self._pending[name].pop(nid, None)
        return Delivery(
            notification_id=nid,
            hook=name,
            attempt=attempts,
            status=status,
            http_status=None,
            error=error,
            attempted_at_ms=self._clock() if now_ms is None else now_ms,
            next_attempt_at_ms=None,
        )

    def _warn(self, name: str, what: str, message: str, *args: object) -> None:
        """Log at most once per WARNING_INTERVAL_MS per hook and kind, counting the rest."""
        key = (name, what)
        now = self._clock()
        last = self._warned_at.get(key)
        if last is not None and now - last < WARNING_INTERVAL_MS:
            self._unwarned[key] = self._unwarned.get(key, 0) + 1
            return
        left_out = self._unwarned.pop(key, 0)
        suffix = f" ({left_out} more like it since the last such line)" if left_out else ""
        self._warned_at[key] = now
        log.warning(message + suffix, *args)

    def _emit(self, records: list[Delivery]) -> list[Delivery]:
        if self._on_delivery is not None:
            for record in records:
                self._on_delivery(record)
        return records
