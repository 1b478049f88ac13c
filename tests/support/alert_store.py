"""An in-memory :class:`creatorpulse.alerts.outbox.AlertStore` for unit tests: the tables as
lists, FINAL semantics where the outbox relies on them, and a switch that makes every
call fail as a store outage would."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from schemas.alerts import Alert, Silence
from sinks.clickhouse.alerts import (
    FINAL_STATUSES,
    DeliveryRow,
    NotificationRecord,
    Unfinished,
    alert_version,
)


class StoreDown(ConnectionError):
    pass


class MemoryAlertStore:
    def __init__(self) -> None:
        self.alert_rows: list[Alert] = []
        self.notifications: list[NotificationRecord] = []
        self.deliveries: list[DeliveryRow] = []
        self.silence_rows: list[Silence] = []
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise StoreDown("store is down")

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        self._check()
        self.alert_rows.extend(alerts)

    def write_notifications(self, records: Sequence[NotificationRecord]) -> None:
        self._check()
        self.notifications.extend(records)

    def write_deliveries(self, records: Sequence[DeliveryRow]) -> None:
        self._check()
        self.deliveries.extend(records)

    def silences(self, now_ms: int) -> list[Silence]:
        self._check()
        return [s for s in self.silence_rows if s.expires_at_ms > now_ms]

    def notified(self, keys: Iterable[str]) -> dict[str, str]:
        self._check()
        wanted = set(keys)
        return {k: r.delivery for r in self.notifications for k in r.keys if k in wanted}

    def final_alerts(self) -> dict[str, Alert]:
        """What ``alerts FINAL`` shows: the highest version of each alert."""
        out: dict[str, Alert] = {}
        for a in self.alert_rows:
            kept = out.get(a.alert_id)
            if kept is None or alert_version(a) >= alert_version(kept):
                out[a.alert_id] = a
        return out

    def open_alerts(self, resolved_since_ms: int) -> list[Alert]:
        self._check()
        return [
            a
            for _, a in sorted(self.final_alerts().items())
            if a.status == "firing" or (a.ends_at_ms or 0) >= resolved_since_ms
        ]

    def unfinished(self, created_since_ms: int) -> list[Unfinished]:
        self._check()
        out = []
        for r in self.notifications:
            n = r.notification
            if r.delivery != "pending" or n.created_at_ms < created_since_ms:
                continue
            for hook in r.hooks:
                mine = [
                    d
                    for d in self.deliveries
                    if (d.notification_id, d.hook) == (n.notification_id, hook)
                ]
                if any(d.status in FINAL_STATUSES for d in mine):
                    continue
                attempts = max((d.attempt for d in mine), default=0)
                out.append(Unfinished(n, hook, attempts, n.created_at_ms))
        return out

    def sent_keys(self) -> list[str]:
        """Every alert key of a pending notification, in order (duplicates kept)."""
        return [k for r in self.notifications if r.delivery == "pending" for k in r.keys]
