"""When an alert becomes a notification, and to whom it is not sent: Alertmanager's policy.

The state machine says what fires and resolves, in event time; this decides, on the wall
clock (``now_ms`` is always an argument), what the hooks get:

- **Grouping.** Alerts are grouped per (campaign, rule). The first change of a group (an
  alert starting to fire, or resolving) opens a wait of ``group_wait_s``; everything of
  the group that becomes due within it goes out as ONE notification per kind.
- **Reminders.** While an alert keeps firing, the group sends a ``repeat`` notification
  with fresh numbers every ``repeat_interval_s`` (only alerts that have newer numbers than
  the last they were sent with: a stalled stream sends no stale reminders).
- **Resolved.** With ``send_resolved``, a resolution is sent to whoever got the firing. An
  alert whose firing was silenced or suppressed resolves the same way: a receiver never
  hears of an alert it was not told about.
- **Silences** match campaign, creator and rule (exact or glob) until they expire; what they
  match is recorded with delivery ``silenced``, not sent.
- **Replay horizon.** An alert whose event time was older than ``replay_horizon_s`` behind
  the wall clock when the policy saw it is recorded ``suppressed``: a replay or backfill
  re-decides history and pages nobody. Such an alert stays unsent for its whole episode.

Every decision is a :class:`Dispatch` (a notification and its delivery) for the outbox. A
notification's id is a hash of its group, kind and alerts (ids, statuses and, for a
reminder, the event time of its numbers), so a retry or a replay of it has the same id.
The state is :meth:`NotificationPolicy.to_bytes`, for a changelog.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from urllib.parse import quote

import msgspec

from schemas.alerts import (
    RESOLVED_SUFFIX,
    Alert,
    Delivery,
    Notification,
    NotificationKind,
    Silence,
)
from streams.alerts.rules import Rules

STATE_VERSION = 1
_ORDER: tuple[Delivery, ...] = ("pending", "silenced", "suppressed")


@dataclass(frozen=True, slots=True)
class Dispatch:
    """A notification and what becomes of it: sent (``pending`` in the outbox) or recorded."""

    notification: Notification
    delivery: Delivery


class _Entry(msgspec.Struct, kw_only=True):
    """One alert of a group, as far as the policy knows it."""

    firing: Alert | None = None  # as it started firing (None: only its resolution was seen)
    seen_ms: int = 0  # wall clock the policy first saw it firing
    delivery: Delivery | None = None  # decided for its firing notification
    latest: Alert | None = None  # its freshest firing numbers
    latest_seen_ms: int = 0
    sent_end_ms: int = 0  # event time of the numbers it was last notified with
    resolved: Alert | None = None
    resolved_seen_ms: int = 0


class _Group(msgspec.Struct, kw_only=True):
    campaign_id: str
    rule: str
    flush_at_ms: int | None = None  # the pending changes are due then
    repeat_from_ms: int | None = None  # wall clock of the last firing or reminder sent
    entries: dict[str, _Entry] = msgspec.field(default_factory=dict)


class _Saved(msgspec.Struct, kw_only=True):
    version: int
    groups: list[_Group]


_DECODER = msgspec.json.Decoder(_Saved)


def silence_matches(silence: Silence, alert: Alert, now_ms: int) -> bool:
    """Whether ``silence`` holds at ``now_ms`` and matches the alert (campaign, creator, rule)."""
    return now_ms < silence.expires_at_ms and all(
        value == pattern or fnmatchcase(value, pattern)
        for value, pattern in (
            (alert.campaign_id, silence.campaign_id),
            (alert.creator_id, silence.creator_id),
            (alert.rule, silence.rule),
        )
    )


def dashboard_link(template: str, alert: Alert) -> str | None:
    """The alert's dashboard URL from a ``{campaign_id}``/``{creator_id}``/``{alert_id}``
    template, each value URL-quoted; ``None`` for an empty template."""
    if not template:
        return None
    return template.format(
        campaign_id=quote(alert.campaign_id, safe=""),
        creator_id=quote(alert.creator_id, safe=""),
        alert_id=quote(alert.alert_id, safe=""),
    )


def notification_id(
    campaign_id: str, rule: str, kind: NotificationKind, alerts: Iterable[Alert]
) -> str:
    """Stable for the same group, kind and alerts. A reminder's alerts carry new numbers
    each time, so the event time of its numbers is part of its id."""
    parts = [campaign_id, rule, kind]
    for a in alerts:
        part = f"{a.alert_id}:{a.status}"
        parts.append(f"{part}:{a.window_end_ms}" if kind == "repeat" else part)
    parts[3:] = sorted(parts[3:])
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


class NotificationPolicy:
    """The notification policy of every group; fed with alerts, asked for what is due."""

    def __init__(self, rules: Rules) -> None:
        self._rules = rules
        self._groups: dict[tuple[str, str], _Group] = {}

    def observe(self, alerts: Iterable[Alert], now_ms: int) -> None:
        """Take the state machine's alerts: every firing one (fresh numbers) and resolutions."""
        for alert in alerts:
            key = (alert.campaign_id, alert.rule)
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = _Group(campaign_id=key[0], rule=key[1])
            entry = group.entries.get(alert.alert_id)
            if alert.status == "firing":
                if entry is None:
                    group.entries[alert.alert_id] = _Entry(
                        firing=alert, seen_ms=now_ms, latest=alert, latest_seen_ms=now_ms
                    )
                    self._schedule(group, now_ms)
                elif entry.resolved is None and (
                    entry.latest is None or alert.window_end_ms > entry.latest.window_end_ms
                ):
                    entry.latest, entry.latest_seen_ms = alert, now_ms
            else:
                if entry is None:
                    entry = group.entries[alert.alert_id] = _Entry()
                if entry.resolved is None:
                    entry.resolved, entry.resolved_seen_ms = alert, now_ms
                    self._schedule(group, now_ms)

    def restore(self, alert: Alert, delivery: Delivery, now_ms: int) -> None:
        """Take a firing alert whose firing notification was already decided (an outbox
        restarting from its records): it is not notified again, reminders and its
        resolution follow ``delivery``, and reminders count from ``now_ms``."""
        if alert.status != "firing":
            return
        key = (alert.campaign_id, alert.rule)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(campaign_id=key[0], rule=key[1])
        if alert.alert_id in group.entries:
            return
        group.entries[alert.alert_id] = _Entry(
            firing=alert,
            seen_ms=now_ms,
            delivery=delivery,
            latest=alert,
            latest_seen_ms=now_ms,
            sent_end_ms=alert.window_end_ms,
        )
        if delivery == "pending" and group.repeat_from_ms is None:
            group.repeat_from_ms = now_ms

    def _schedule(self, group: _Group, now_ms: int) -> None:
        if group.flush_at_ms is None:
            group.flush_at_ms = now_ms + self._rules.group_wait_s * 1000

    def next_due_ms(self) -> int | None:
        """The earliest wall-clock time :meth:`due` may have something to return."""
        times = []
        for group in self._groups.values():
            if group.flush_at_ms is not None:
                times.append(group.flush_at_ms)
            if group.repeat_from_ms is not None:
                times.append(group.repeat_from_ms + self._rules.repeat_interval_s * 1000)
        return min(times, default=None)

    def due(self, now_ms: int, silences: Sequence[Silence] = ()) -> list[Dispatch]:
        """Every notification due at ``now_ms``, in group order; each is decided once."""
        out: list[Dispatch] = []
        for key in sorted(self._groups):
            group = self._groups[key]
            if group.flush_at_ms is not None and group.flush_at_ms <= now_ms:
                out.extend(self._flush(group, now_ms, silences))
            if (
                group.repeat_from_ms is not None
                and now_ms >= group.repeat_from_ms + self._rules.repeat_interval_s * 1000
            ):
                out.extend(self._remind(group, now_ms, silences))
            if not group.entries and group.flush_at_ms is None:
                del self._groups[key]
        return out

    def _decide(
        self, alert: Alert, event_ms: int, seen_ms: int, now_ms: int, silences: Sequence[Silence]
    ) -> Delivery:
        if event_ms < seen_ms - self._rules.replay_horizon_s * 1000:
            return "suppressed"
        if any(silence_matches(s, alert, now_ms) for s in silences):
            return "silenced"
        return "pending"

    def _flush(self, group: _Group, now_ms: int, silences: Sequence[Silence]) -> list[Dispatch]:
        group.flush_at_ms = None
        firing: dict[Delivery, list[Alert]] = {d: [] for d in _ORDER}
        resolved: dict[Delivery, list[Alert]] = {d: [] for d in _ORDER}
        for alert_id in sorted(group.entries):
            entry = group.entries[alert_id]
            if entry.firing is not None and entry.delivery is None:
                a = entry.firing
                entry.delivery = self._decide(a, a.starts_at_ms, entry.seen_ms, now_ms, silences)
                firing[entry.delivery].append(a)
                entry.sent_end_ms = a.window_end_ms
            if entry.resolved is not None:
                r = entry.resolved
                assert r.ends_at_ms is not None
                verdict: Delivery
                if entry.delivery in ("silenced", "suppressed"):
                    verdict = entry.delivery  # its receivers never heard of the alert
                else:
                    verdict = self._decide(
                        r, r.ends_at_ms, entry.resolved_seen_ms, now_ms, silences
                    )
                resolved[verdict].append(r)
                del group.entries[alert_id]
        out = [self._dispatch(group, "firing", firing[d], d, now_ms) for d in _ORDER if firing[d]]
        if self._rules.send_resolved:
            out += [
                self._dispatch(group, "resolved", resolved[d], d, now_ms)
                for d in _ORDER
                if resolved[d]
            ]
        if firing["pending"]:
            group.repeat_from_ms = now_ms
        if not any(e.delivery == "pending" for e in group.entries.values()):
            group.repeat_from_ms = None
        return out

    def _remind(self, group: _Group, now_ms: int, silences: Sequence[Silence]) -> list[Dispatch]:
        fresh: dict[Delivery, list[Alert]] = {d: [] for d in _ORDER}
        for alert_id in sorted(group.entries):
            entry = group.entries[alert_id]
            latest = entry.latest
            if (
                entry.delivery != "pending"
                or entry.resolved is not None
                or latest is None
                or latest.window_end_ms <= entry.sent_end_ms
            ):
                continue
            verdict = self._decide(
                latest, latest.window_end_ms, entry.latest_seen_ms, now_ms, silences
            )
            fresh[verdict].append(latest)
            entry.sent_end_ms = latest.window_end_ms
        if not any(fresh.values()):
            return []  # nothing new to remind with: ask again on the next call
        group.repeat_from_ms = now_ms
        return [self._dispatch(group, "repeat", fresh[d], d, now_ms) for d in _ORDER if fresh[d]]

    def _dispatch(
        self,
        group: _Group,
        kind: NotificationKind,
        alerts: list[Alert],
        delivery: Delivery,
        now_ms: int,
    ) -> Dispatch:
        template = self._rules.dashboard_url
        linked = sorted(
            (msgspec.structs.replace(a, dashboard_url=dashboard_link(template, a)) for a in alerts),
            key=lambda a: (-a.z, a.creator_id),  # the strongest first
        )
        notification = Notification(
            notification_id=notification_id(group.campaign_id, group.rule, kind, linked),
            type=group.rule + RESOLVED_SUFFIX if kind == "resolved" else group.rule,
            kind=kind,
            campaign_id=group.campaign_id,
            rule=group.rule,
            alerts=linked,
            created_at_ms=now_ms,
            dashboard_url=linked[0].dashboard_url,
        )
        return Dispatch(notification, delivery)

    def to_bytes(self) -> bytes:
        groups = [self._groups[k] for k in sorted(self._groups)]
        return msgspec.json.encode(_Saved(version=STATE_VERSION, groups=groups))

    @classmethod
    def from_bytes(cls, data: bytes, rules: Rules) -> NotificationPolicy:
        saved = _DECODER.decode(data)
        if saved.version != STATE_VERSION:
            raise ValueError(f"policy state version {saved.version}, expected {STATE_VERSION}")
        policy = cls(rules)
        policy._groups = {(g.campaign_id, g.rule): g for g in saved.groups}
        return policy
