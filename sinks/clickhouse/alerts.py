"""The alert tables in ClickHouse: alerts, the notification outbox, delivery attempts,
silences (migration 0005).

:class:`ClickHouseAlertStore` wraps a started :class:`~sinks.clickhouse.ClickHouseSink`
(its one client and lock) and speaks in the contract's types. Every write is
idempotent, so a write repeated after an outage or a crash changes nothing it should
not:

- ``alerts`` is a ``ReplacingMergeTree(version)`` keyed by alert id; :func:`alert_version`
  grows with an alert's state (fresher numbers, then resolved), so ``FINAL`` shows the
  newest whatever order the rows came in;
- ``alert_notifications`` holds one row per notification id (the id is a hash of what
  it says), with ``alert_keys``, the keys :meth:`notified` answers from;
- ``alert_deliveries`` one row per (notification, hook, attempt, status).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.alerts import (
    Alert,
    Notification,
    Silence,
    alert_from_json,
    alert_to_json,
    notification_from_json,
    notification_to_json,
)
from sinks.clickhouse.sink import ClickHouseSink

ALERT_COLUMNS: tuple[str, ...] = (
    "alert_id",
    "fired_at",
    "rule",
    "campaign_id",
    "creator_id",
    "window_size_s",
    "window_start",
    "metric",
    "value",
    "baseline",
    "payload",
    "fingerprint",
    "status",
    "window_end",
    "resolved_at",
    "resolved_reason",
    "z",
    "lift",
    "probability",
    "tier",
    "cohort_size",
    "views",
    "handle",
    "explanation",
    "version",
    "updated_at",
)
NOTIFICATION_COLUMNS: tuple[str, ...] = (
    "notification_id",
    "kind",
    "type",
    "campaign_id",
    "rule",
    "alert_ids",
    "alert_keys",
    "delivery",
    "hooks",
    "body",
    "created_at",
)
DELIVERY_COLUMNS: tuple[str, ...] = (
    "notification_id",
    "hook",
    "attempt",
    "status",
    "http_status",
    "error",
    "attempted_at",
    "next_attempt_at",
)
SILENCE_COLUMNS: tuple[str, ...] = (
    "silence_id",
    "campaign_id",
    "creator_id",
    "rule",
    "comment",
    "created_at",
    "expires_at",
)
#: Statuses after which a notification is done with for a hook.
FINAL_STATUSES = ("delivered", "failed", "disabled", "silenced", "suppressed")
#: The resolved bit of :func:`alert_version`: above every event time in milliseconds.
_RESOLVED_BIT = 1 << 62


def alert_version(alert: Alert) -> int:
    """Grows with the alert's state: later numbers (window end), and resolved above all."""
    return alert.window_end_ms + (_RESOLVED_BIT if alert.status == "resolved" else 0)


def alert_key(alert: Alert, kind: str) -> str:
    """What one alert was notified as: ``<alert_id>:<kind>``, and for a reminder the event
    time of its numbers (each reminder carries new ones)."""
    key = f"{alert.alert_id}:{kind}"
    return f"{key}:{alert.window_end_ms}" if kind == "repeat" else key


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """A notification as the outbox holds it: what it says, what was decided, for whom."""

    notification: Notification
    delivery: str  # pending, silenced or suppressed
    hooks: tuple[str, ...]

    @property
    def keys(self) -> list[str]:
        n = self.notification
        return [alert_key(a, n.kind) for a in n.alerts]


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One row of ``alert_deliveries``: an attempt, or a decision that ended one."""

    notification_id: str
    hook: str
    attempt: int
    status: str
    http_status: int | None
    error: str
    attempted_at_ms: int
    next_attempt_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Unfinished:
    """A pending notification a hook has not finished with (restart: submit it again)."""

    notification: Notification
    hook: str
    attempts: int
    created_at_ms: int


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _ms(value: Any) -> int:
    return int(value)


class ClickHouseAlertStore:
    """Reads and writes the alert tables through one started sink."""

    def __init__(self, sink: ClickHouseSink) -> None:
        self.sink = sink

    # -- writes ----------------------------------------------------------------

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        if not alerts:
            return
        now = datetime.now(UTC)
        rows = [
            [
                a.alert_id,
                _utc(a.starts_at_ms),
                a.rule,
                a.campaign_id,
                a.creator_id,
                max(0, (a.window_end_ms - a.window_start_ms) // 1000),
                _utc(a.window_start_ms),
                a.metric,
                a.value,
                a.baseline,
                alert_to_json(a).decode(),
                a.fingerprint,
                a.status,
                _utc(a.window_end_ms),
                _utc(a.ends_at_ms) if a.ends_at_ms is not None else None,
                a.resolved_reason or "",
                a.z,
                a.lift,
                a.probability,
                a.cohort.tier,
                a.cohort.size,
                a.figures.views,
                a.handle or "",
                a.explanation,
                alert_version(a),
                now,
            ]
            for a in alerts
        ]
        self.sink.insert_rows("alerts", ALERT_COLUMNS, rows)

    def write_notifications(self, records: Sequence[NotificationRecord]) -> None:
        if not records:
            return
        rows = [
            [
                r.notification.notification_id,
                r.notification.kind,
                r.notification.type,
                r.notification.campaign_id,
                r.notification.rule,
                [a.alert_id for a in r.notification.alerts],
                r.keys,
                r.delivery,
                list(r.hooks),
                notification_to_json(r.notification).decode(),
                _utc(r.notification.created_at_ms),
            ]
            for r in records
        ]
        self.sink.insert_rows("alert_notifications", NOTIFICATION_COLUMNS, rows)

    def write_deliveries(self, records: Sequence[DeliveryRow]) -> None:
        if not records:
            return
        rows = [
            [
                r.notification_id,
                r.hook,
                r.attempt,
                r.status,
                r.http_status,
                r.error,
                _utc(r.attempted_at_ms),
                _utc(r.next_attempt_at_ms) if r.next_attempt_at_ms is not None else None,
            ]
            for r in records
        ]
        self.sink.insert_rows("alert_deliveries", DELIVERY_COLUMNS, rows)

    def write_silence(self, silence: Silence) -> None:
        self.sink.insert_rows(
            "alert_silences",
            SILENCE_COLUMNS,
            [
                [
                    silence.silence_id,
                    silence.campaign_id,
                    silence.creator_id,
                    silence.rule,
                    silence.comment,
                    _utc(silence.created_at_ms),
                    _utc(silence.expires_at_ms),
                ]
            ],
        )

    # -- reads -----------------------------------------------------------------

    def silences(self, now_ms: int) -> list[Silence]:
        """The silences that still hold at ``now_ms``."""
        rows = self.sink.query_rows(
            "SELECT silence_id, campaign_id, creator_id, rule, comment,"
            " toUnixTimestamp64Milli(created_at), toUnixTimestamp64Milli(expires_at)"
            " FROM {database}.alert_silences FINAL"
            " WHERE toUnixTimestamp64Milli(expires_at) > {now:Int64}"
            " ORDER BY silence_id",
            {"now": now_ms},
        )
        return [
            Silence(
                silence_id=r[0],
                campaign_id=r[1],
                creator_id=r[2],
                rule=r[3],
                comment=r[4],
                created_at_ms=_ms(r[5]),
                expires_at_ms=_ms(r[6]),
            )
            for r in rows
        ]

    def notified(self, keys: Iterable[str]) -> dict[str, str]:
        """Of ``keys`` (:func:`alert_key`), those already in a notification, with its
        delivery decision."""
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        rows = self.sink.query_rows(
            "SELECT key, any(delivery) FROM {database}.alert_notifications FINAL"
            " ARRAY JOIN alert_keys AS key"
            " WHERE has({keys:Array(String)}, key) GROUP BY key",
            {"keys": wanted},
        )
        return {str(r[0]): str(r[1]) for r in rows}

    def open_alerts(self, resolved_since_ms: int) -> list[Alert]:
        """Every alert still firing, and those resolved at or after ``resolved_since_ms``
        (event time), newest state each: what a restarted outbox may still owe a hook."""
        rows = self.sink.query_rows(
            "SELECT payload FROM {database}.alerts FINAL"
            " WHERE status = 'firing'"
            " OR toUnixTimestamp64Milli(assumeNotNull(resolved_at)) >= {since:Int64}"
            " ORDER BY alert_id",
            {"since": resolved_since_ms},
        )
        return [alert_from_json(str(r[0]).encode()) for r in rows]

    def unfinished(self, created_since_ms: int) -> list[Unfinished]:
        """Pending notifications made at or after ``created_since_ms`` that a hook they
        were for has no final delivery of (delivered, failed, disabled)."""
        rows = self.sink.query_rows(
            "SELECT n.notification_id, hook, n.body, toUnixTimestamp64Milli(n.created_at),"
            " coalesce(d.attempts, 0), coalesce(d.done, 0)"
            " FROM (SELECT * FROM {database}.alert_notifications FINAL"
            "       WHERE delivery = 'pending'"
            "       AND toUnixTimestamp64Milli(created_at) >= {since:Int64}) AS n"
            " ARRAY JOIN n.hooks AS hook"
            " LEFT JOIN (SELECT notification_id, hook, toNullable(max(attempt)) AS attempts,"
            "            toNullable(countIf(status IN {final:Array(String)})) AS done"
            "            FROM {database}.alert_deliveries FINAL"
            "            GROUP BY notification_id, hook) AS d"
            " ON d.notification_id = n.notification_id AND d.hook = hook"
            " ORDER BY n.created_at, n.notification_id, hook",
            {"since": created_since_ms, "final": list(FINAL_STATUSES)},
        )
        return [
            Unfinished(
                notification=notification_from_json(str(r[2]).encode()),
                hook=str(r[1]),
                attempts=int(r[4]),
                created_at_ms=_ms(r[3]),
            )
            for r in rows
            if not r[5]
        ]

    def recent_alerts(self, limit: int = 50, campaign_id: str | None = None) -> list[Alert]:
        """The newest alerts by the event time they fired, newest state each."""
        where = " WHERE campaign_id = {campaign:String}" if campaign_id is not None else ""
        params: dict[str, Any] = {"limit": limit}
        if campaign_id is not None:
            params["campaign"] = campaign_id
        rows = self.sink.query_rows(
            "SELECT payload FROM {database}.alerts FINAL" + where + " ORDER BY fired_at DESC,"
            " alert_id LIMIT {limit:UInt32}",
            params,
        )
        return [alert_from_json(str(r[0]).encode()) for r in rows]

    def notifications_of(self, ident: str) -> list[NotificationRecord]:
        """The notification with id ``ident``, or every notification of the alert ``ident``."""
        rows = self.sink.query_rows(
            "SELECT body, delivery, hooks FROM {database}.alert_notifications FINAL"
            " WHERE notification_id = {id:String} OR has(alert_ids, {id:String})"
            " ORDER BY created_at, notification_id",
            {"id": ident},
        )
        return [
            NotificationRecord(
                notification=notification_from_json(str(r[0]).encode()),
                delivery=str(r[1]),
                hooks=tuple(r[2]),
            )
            for r in rows
        ]

    def deliveries_of(self, notification_id: str) -> list[DeliveryRow]:
        rows = self.sink.query_rows(
            "SELECT notification_id, hook, attempt, status, http_status, error,"
            " toUnixTimestamp64Milli(attempted_at),"
            " if(isNull(next_attempt_at), NULL, toUnixTimestamp64Milli(next_attempt_at))"
            " FROM {database}.alert_deliveries FINAL WHERE notification_id = {id:String}"
            " ORDER BY hook, attempt, attempted_at",
            {"id": notification_id},
        )
        return [
            DeliveryRow(
                notification_id=str(r[0]),
                hook=str(r[1]),
                attempt=int(r[2]),
                status=str(r[3]),
                http_status=None if r[4] is None else int(r[4]),
                error=str(r[5]),
                attempted_at_ms=_ms(r[6]),
                next_attempt_at_ms=None if r[7] is None else _ms(r[7]),
            )
            for r in rows
        ]
