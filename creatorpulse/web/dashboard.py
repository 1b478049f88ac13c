"""What the dashboard shows, as JSON: the campaign overview, the creator board, one
creator's curves, the alerts feed and the pipeline's health.

:class:`Dashboard` reads the store through the sink (fixed, parameterised SQL from
creatorpulse/web/queries.py) and the worker's counters from its processor; it does no
HTTP (creatorpulse/web/routes.py serves it). Every read is bounded: a time range capped
by the settings, a row limit, and sort keys from a whitelist.

Freshness is wall clock minus the newest event time that is queryable. The store holds
windows, not event times, so the worker's watermark (the newest event time it has
applied) is sampled each time its writer reports a finished write: every event up to
that watermark was in the rows written then (a flush writes what was applied before it),
so the figure errs on the fresh side by at most one sampling interval.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from creatorpulse.web import queries as q
from schemas import metrics

log = logging.getLogger("creatorpulse.web")

Highwater = Callable[[str, int], int | None]

#: Creator detail and campaign curves: at most this many hours back.
MAX_SERIES_HOURS = 24
#: Dead letters and deliveries: the last this many minutes of the wall clock.
HEALTH_MINUTES = 30
#: Creators a tier needs for its median to be the creator's cohort (else: the campaign).
MIN_COHORT = 3
#: Alerts returned at most by one request.
MAX_ALERTS = 200


class BadParameter(ValueError):
    """A query parameter the dashboard cannot use; ``name`` is the parameter."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def bounded_int(query: Mapping[str, str], name: str, default: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(name, f"expected an integer from 1 to {high}, got {raw!r}") from None
    if not 1 <= value <= high:
        raise BadParameter(name, f"expected an integer from 1 to {high}, got {value}")
    return value


def required(query: Mapping[str, str], name: str) -> str:
    value = query.get(name, "").strip()
    if not value:
        raise BadParameter(name, "required")
    if len(value) > 256:
        raise BadParameter(name, "longer than 256 characters")
    return value


def _f(value: Any) -> float | None:
    """A float for JSON: ClickHouse NULL and NaN (median of nothing) become None."""
    if value is None:
        return None
    out = float(value)
    return None if out != out else out


@dataclass
class _Rate:
    """Events per second from successive samples of a counter (the last ``span_s``)."""

    span_s: float = 10.0
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))

    def add(self, at: float, value: int) -> float | None:
        self.samples.append((at, value))
        while len(self.samples) > 2 and at - self.samples[1][0] >= self.span_s:
            self.samples.popleft()
        first_at, first = self.samples[0]
        if at - first_at <= 0:
            return None
        return (value - first) / (at - first_at)


_SHRUNK = {
    "er": ("engagement_rate", "engagement_rate_shrunk"),
    "ctr": ("ctr", "ctr_shrunk"),
    "cvr": ("conversion_rate", "conversion_rate_shrunk"),
}


def _payload_parts(payload: str) -> dict[str, Any]:
    """From an alert's stored JSON (schemas.alerts.Alert): its cohort, and the raw and
    shrunk (empirical-Bayes) rates the rule compared, as ``{er: {raw, shrunk}, ...}``."""
    try:
        data = json.loads(payload) if payload else {}
    except ValueError:
        data = {}
    figures = data.get("figures") if isinstance(data, dict) else None
    cohort = data.get("cohort") if isinstance(data, dict) else None
    rates: dict[str, dict[str, float | None]] = {}
    if isinstance(figures, dict):
        for key, (raw, shrunk) in _SHRUNK.items():
            if figures.get(shrunk) is not None:
                rates[key] = {"raw": _f(figures.get(raw)), "shrunk": _f(figures.get(shrunk))}
    return {
        "rates": rates,
        "cohort": {k: cohort.get(k) for k in ("tier", "scope", "size", "median")}
        if isinstance(cohort, dict)
        else None,
    }


def _matches(value: str, pattern: str) -> bool:
    """A silence's matcher, as the notification policy reads it (exact, or a glob as
    :func:`fnmatch.fnmatchcase`; ``*`` matches all); empty matches all too."""
    return pattern in ("", "*") or value == pattern or fnmatchcase(value, pattern)


class Dashboard:
    """The dashboard's reads. ``sink`` is a started ClickHouseSink (None: the process
    writes no store, so only the health figures from its counters are shown);
    ``processor`` the worker's StreamProcessor (None in the sink process); ``clock``
    returns wall-clock seconds."""

    def __init__(
        self,
        sink: Any | None,
        processor: Any | None = None,
        *,
        highwater: Highwater | None = None,
        clock: Callable[[], float] = time.time,
        sink_stats: Callable[[], Mapping[str, Any]] | None = None,
        pending: Callable[[], Mapping[tuple[str, str], str]] | None = None,
    ) -> None:
        self.sink = sink
        self.processor = processor
        self.highwater = highwater
        self.clock = clock
        self.sink_stats = sink_stats
        #: (campaign, creator) -> "pending", from the alert stage in this process.
        self.pending = pending
        self._events_rate = _Rate()
        self._last_write: float | None = None
        self._queryable_ms: int | None = None
        # health() runs in worker threads, for the stream and for /api/health at once.
        self._sampling = threading.Lock()

    # -- store reads ---------------------------------------------------------------

    def _rows(self, sql: str, parameters: dict[str, Any], **fragments: str) -> list[Any]:
        if self.sink is None:
            return []
        for name, fragment in fragments.items():
            sql = sql.replace("{" + name + "}", fragment)
        return list(self.sink.query_rows(sql, parameters))

    def _newest_end_s(self, campaign_id: str | None) -> int | None:
        parameters: dict[str, Any] = {"window_size_s": q.SERIES_WINDOW_S}
        fragment = ""
        if campaign_id is not None:
            parameters["campaign_id"] = campaign_id
            fragment = q.CAMPAIGN_FILTER
        rows = self._rows(q.NEWEST_END_SQL, parameters, campaign_filter=fragment)
        if not rows or not rows[0][0]:
            return None
        return int(rows[0][1])

    def campaign_series(self, campaign_id: str | None, hours: int) -> dict[str, Any]:
        """Views and conversions per 60 s window, per campaign, over the last ``hours``
        of event time (up to the newest window)."""
        newest = self._newest_end_s(campaign_id)
        if newest is None:
            return {"to": None, "campaigns": {}}
        parameters: dict[str, Any] = {
            "window_size_s": q.SERIES_WINDOW_S,
            "from_s": newest - hours * 3600,
        }
        fragment = ""
        if campaign_id is not None:
            parameters["campaign_id"] = campaign_id
            fragment = q.CAMPAIGN_FILTER
        out: dict[str, dict[str, list[int]]] = {}
        for campaign, start_s, views, conversions in self._rows(
            q.CAMPAIGN_SERIES_SQL, parameters, campaign_filter=fragment
        ):
            series = out.setdefault(campaign, {"t": [], "views": [], "conversions": []})
            series["t"].append(int(start_s))
            series["views"].append(int(views))
            series["conversions"].append(int(conversions))
        return {"to": newest, "campaigns": out}

    def tiers(self, campaign_id: str | None, from_s: int) -> dict[str, dict[str, int]]:
        parameters: dict[str, Any] = {"window_size_s": q.SERIES_WINDOW_S, "from_s": from_s}
        fragment = ""
        if campaign_id is not None:
            parameters["campaign_id"] = campaign_id
            fragment = q.CAMPAIGN_FILTER
        out: dict[str, dict[str, int]] = {}
        for campaign, tier, creators in self._rows(
            q.TIERS_SQL, parameters, campaign_filter=fragment
        ):
            out.setdefault(campaign, {})[str(tier)] = int(creators)
        return out

    def creator(self, campaign_id: str, creator_id: str, hours: int) -> dict[str, Any]:
        """One creator's 60 s curves over the last ``hours`` of its campaign's event
        time, the median of its cohort (campaign and tier) per window, and its alerts."""
        newest = self._newest_end_s(campaign_id)
        result: dict[str, Any] = {
            "campaign_id": campaign_id,
            "creator_id": creator_id,
            "window_size_s": q.SERIES_WINDOW_S,
            "to": newest,
            "series": {k: [] for k in ("t", "views", "er", "avg_watch_s", "clicks", "conversions")},
            "cohort": {
                "tier": None,
                "scope": None,
                "t": [],
                "creators": [],
                "views": [],
                "er": [],
                "avg_watch_s": [],
            },
            "alerts": [],
        }
        if newest is None:
            return result
        from_s = newest - hours * 3600
        parameters: dict[str, Any] = {
            "window_size_s": q.SERIES_WINDOW_S,
            "campaign_id": campaign_id,
            "creator_id": creator_id,
            "from_s": from_s,
        }
        series = result["series"]
        for start_s, views, engagements, watch_ms, clicks, conversions in self._rows(
            q.CREATOR_SERIES_SQL, parameters
        ):
            series["t"].append(int(start_s))
            series["views"].append(int(views))
            series["er"].append(metrics.ratio(int(engagements), int(views)))
            series["avg_watch_s"].append(metrics.ratio(int(watch_ms) / 1000, int(views)))
            series["clicks"].append(int(clicks))
            series["conversions"].append(int(conversions))
        profile = self._rows(
            "SELECT handle, tier FROM {database}.creator_profiles FINAL "
            "WHERE creator_id = {creator_id:String}",
            {"creator_id": creator_id},
        )
        handle, tier = (profile[0][0], profile[0][1]) if profile else (None, None)
        result["handle"] = handle
        result["tier"] = tier
        parameters = {
            "window_size_s": q.SERIES_WINDOW_S,
            "campaign_id": campaign_id,
            "from_s": from_s,
            "tier": tier or "",
        }
        rows = self._rows(q.COHORT_SERIES_SQL, parameters, tier_filter=q.TIER_FILTER)
        scope = "tier"
        if tier is None or max((int(r[1]) for r in rows), default=0) < MIN_COHORT:
            # As the alert rule does: a tier with too few creators is no cohort, so the
            # creator stands against its whole campaign.
            rows = self._rows(q.COHORT_SERIES_SQL, parameters, tier_filter="")
            scope = "campaign"
        cohort = result["cohort"]
        cohort["tier"] = tier if scope == "tier" else "all"
        cohort["scope"] = scope
        for start_s, creators, views, er, watch in rows:
            cohort["t"].append(int(start_s))
            cohort["creators"].append(int(creators))
            cohort["views"].append(_f(views))
            cohort["er"].append(_f(er))
            cohort["avg_watch_s"].append(_f(watch))
        result["alerts"] = self.alerts(MAX_ALERTS, campaign_id=campaign_id, creator_id=creator_id)
        return result

    # -- alerts --------------------------------------------------------------------

    def alerts(
        self,
        limit: int = 50,
        *,
        campaign_id: str | None = None,
        creator_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """The newest alerts, each with its explanation and how it was delivered; empty
        when the store has no alerts table (a store migrated before 0005)."""
        parameters: dict[str, Any] = {"limit": limit}
        fragments = {"campaign_filter": "", "creator_filter": ""}
        if campaign_id is not None:
            parameters["campaign_id"] = campaign_id
            fragments["campaign_filter"] = q.CAMPAIGN_FILTER
        if creator_id is not None:
            parameters["creator_id"] = creator_id
            fragments["creator_filter"] = q.CREATOR_FILTER
        try:
            rows = self._rows(q.ALERTS_SQL, parameters, **fragments)
        except Exception as exc:  # no alerts table yet: the page shows the rest
            log.debug("alerts not readable: %s", exc)
            return []
        silences = self._silences()
        alerts = []
        for (
            alert_id,
            payload,
            fired_ms,
            rule,
            campaign,
            creator,
            handle,
            tier,
            metric,
            value,
            baseline,
            status,
            resolved_ms,
            resolved_reason,
            explanation,
            window_end_s,
            z,
            lift,
        ) in rows:
            silenced = any(
                all(
                    _matches(value, pattern)
                    for value, pattern in ((campaign, s_c), (creator, s_k), (rule, s_r))
                )
                for s_c, s_k, s_r in silences
            )
            alerts.append(
                {
                    "alert_id": alert_id,
                    "fired_at_ms": int(fired_ms),
                    "rule": rule,
                    "campaign_id": campaign,
                    "creator_id": creator,
                    "handle": handle or None,
                    "tier": tier or None,
                    "metric": metric,
                    "value": _f(value),
                    "baseline": _f(baseline),
                    "status": status,
                    # The badge: firing and resolved as stored, silenced where a silence
                    # in force covers a firing alert.
                    "state": "silenced" if silenced and status == "firing" else status,
                    "resolved_at_ms": None if resolved_ms is None else int(resolved_ms),
                    "resolved_reason": resolved_reason or None,
                    "explanation": explanation,
                    "window_end_s": int(window_end_s),
                    "z": _f(z),
                    "lift": _f(lift),
                    "deliveries": [],
                    **_payload_parts(payload),
                }
            )
        self._add_deliveries(alerts)
        return alerts

    def _silences(self) -> list[tuple[str, str, str]]:
        try:
            rows = self._rows(q.SILENCES_SQL, {"now_ms": int(self.clock() * 1000)})
        except Exception:
            return []
        return [(str(c), str(k), str(r)) for c, k, r in rows]

    def _add_deliveries(self, alerts: list[dict[str, Any]]) -> None:
        if not alerts:
            return
        by_id = {a["alert_id"]: a for a in alerts}
        try:
            rows = self._rows(q.ALERT_DELIVERY_SQL, {"alert_ids": list(by_id)})
        except Exception as exc:
            log.debug("alert deliveries not readable: %s", exc)
            return
        for alert_id, kind, delivery, hook, status in rows:
            by_id[alert_id]["deliveries"].append(
                {
                    "kind": kind,
                    "decision": delivery,
                    "hook": hook or None,
                    "status": status or None,
                }
            )

    def alert_states(self, alerts: list[dict[str, Any]]) -> dict[str, str]:
        """Per ``campaign_id/creator_id``, the badge: the state of its newest alert, or
        ``pending`` where the alert stage in this process holds the creator as pending
        and no alert of it is firing (pending is in no table: the stage keeps it)."""
        states: dict[str, str] = {}
        for alert in alerts:  # newest first
            states.setdefault(f"{alert['campaign_id']}/{alert['creator_id']}", alert["state"])
        if self.pending is not None:
            try:
                pending = dict(self.pending())
            except Exception as exc:  # the stage's view must never take the page down
                log.debug("pending alerts not readable: %s", exc)
                pending = {}
            for (campaign, creator), state in pending.items():
                key = f"{campaign}/{creator}"
                if states.get(key) in (None, "resolved"):
                    states[key] = state
        return states

    # -- health --------------------------------------------------------------------

    def _sample_freshness(self) -> None:
        processor = self.processor
        if processor is None:
            return
        writer = processor.writer
        last_write = (
            writer.stats.last_write_unix if writer is not None else processor.stats.last_flush_unix
        )
        if last_write is not None and last_write != self._last_write:
            self._last_write = last_write
            marks = [
                s.watermark.value_ms
                for s in processor.states.values()
                if s.watermark.value_ms is not None
            ]
            if marks:
                self._queryable_ms = max(marks)

    def health(self) -> dict[str, Any]:
        """Freshness, lag per partition, events/s, dead letters per minute by reason,
        sink errors and retries, and webhook deliveries by outcome."""
        with self._sampling:
            return self._health()

    def _health(self) -> dict[str, Any]:
        now = self.clock()
        self._sample_freshness()
        out: dict[str, Any] = {
            "now_ms": int(now * 1000),
            "freshness_s": None
            if self._queryable_ms is None
            else round(now - self._queryable_ms / 1000, 3),
            "queryable_event_time_ms": self._queryable_ms,
            "events_per_s": None,
            "partitions": [],
            "counters": {},
            "sink": {},
        }
        processor = self.processor
        if processor is not None:
            stats = processor.stats
            rate = self._events_rate.add(now, stats.events_counted)
            out["events_per_s"] = None if rate is None else round(rate, 1)
            out["counters"] = {
                "records": stats.records,
                "events_counted": stats.events_counted,
                "duplicates": stats.duplicates,
                "late": stats.late,
                "invalid": stats.invalid,
                "dead_letters_by_reason": dict(stats.dead_letters_by_reason),
                "kafka_send_failures": stats.send_failures,
            }
            topics = (processor.config.input_topic, processor.topics.rekey)
            for partition, state in sorted(processor.states.items()):
                lag: dict[str, int | None] = {}
                for topic in topics:
                    end = self.highwater(topic, partition) if self.highwater else None
                    lag[topic] = (
                        None if end is None else max(end - (state.offsets.get(topic, -1) + 1), 0)
                    )
                out["partitions"].append(
                    {
                        "partition": partition,
                        "watermark_ms": state.watermark.value_ms,
                        "windows_open": len(state.windows),
                        "lag": lag,
                    }
                )
            writer = processor.writer
            if writer is not None:
                w = writer.stats
                out["sink"] = {
                    "rows_written": w.rows_written,
                    "rows_pending": w.rows_pending,
                    "rows_refused": w.rows_refused,
                    "failures": w.failures,
                    "last_error": w.last_error or None,
                    "last_write_unix": w.last_write_unix,
                }
        if self.sink_stats is not None:
            out["sink"] = dict(self.sink_stats())
        out["dead_letters_per_minute"] = self._dead_letters(now)
        out["webhook_deliveries"] = self._deliveries(now)
        return out

    def _dead_letters(self, now: float) -> list[dict[str, Any]]:
        try:
            rows = self._rows(q.DEAD_LETTERS_SQL, {"from_s": int(now) - HEALTH_MINUTES * 60})
        except Exception as exc:
            log.debug("dead letters not readable: %s", exc)
            return []
        return [
            {"minute_s": int(m), "reason": str(r) or "other", "count": int(n)} for m, r, n in rows
        ]

    def _deliveries(self, now: float) -> dict[str, int]:
        try:
            rows = self._rows(q.DELIVERIES_SQL, {"from_s": int(now) - HEALTH_MINUTES * 60})
        except Exception:
            return {}
        return {str(status): int(n) for status, n in rows}


# -- the board and the overview -------------------------------------------------------


def board_json(
    dashboard: Dashboard,
    *,
    campaign: str | None,
    tier: str | None,
    last_s: int,
    sort: str,
    limit: int,
    alerts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The board `top --board-json` shows (creatorpulse/board.py, the same model), its
    rows cut to ``tier`` when given, each with its alert badge. ``alerts``: the newest
    alerts when the caller has read them already."""
    return _both(
        dashboard, campaign=campaign, tier=tier, last_s=last_s, sort=sort, limit=limit,
        alerts=alerts, hours=None,
    )[0]  # fmt: skip


def overview_json(
    dashboard: Dashboard, *, campaign: str | None, last_s: int, hours: int
) -> dict[str, Any]:
    """Each campaign's totals over the range (views, ER, CTR, conversion rate, revenue,
    spend, CPA, ROAS, open alerts), its creators by tier, and its views per 60 s window."""
    return _both(
        dashboard, campaign=campaign, tier=None, last_s=last_s, sort="er", limit=0,
        alerts=None, hours=hours,
    )[1]  # fmt: skip


def snapshot_json(dashboard: Dashboard) -> dict[str, Any]:
    """What the event stream sends: overview, board (default filters), alerts, from one
    read of each (the board and the overview share theirs)."""
    alerts = dashboard.alerts(MAX_ALERTS)
    board, overview = _both(
        dashboard, campaign=None, tier=None, last_s=3600, sort="er", limit=100,
        alerts=alerts, hours=2,
    )  # fmt: skip
    return {"overview": overview, "board": board, "alerts": alerts[:50]}


def _both(
    dashboard: Dashboard,
    *,
    campaign: str | None,
    tier: str | None,
    last_s: int,
    sort: str,
    limit: int,
    alerts: list[dict[str, Any]] | None,
    hours: int | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    from dataclasses import replace

    from creatorpulse.board import empty_board, parse_sort, read_board

    try:
        key = parse_sort(sort)
    except ValueError as exc:
        raise BadParameter("sort", str(exc)) from None
    if dashboard.sink is None:
        empty = empty_board(key).to_json()
        return (
            {**empty, "alerts": {}, "shrunk": {}},
            {**{k: v for k, v in empty.items() if k != "creators"}, "tiers": {},
             "series": {"to": None, "campaigns": {}}},
        )  # fmt: skip
    if alerts is None:
        alerts = dashboard.alerts(MAX_ALERTS, campaign_id=campaign)
    elif campaign is not None:
        alerts = [a for a in alerts if a["campaign_id"] == campaign]
    states = {
        key: state
        for key, state in dashboard.alert_states(alerts).items()
        if campaign is None or key.startswith(f"{campaign}/")
    }
    badges = {tuple(key.split("/", 1)): state for key, state in states.items()}
    shrunk: dict[str, dict[str, Any]] = {}
    for alert in alerts:  # newest first: a creator's newest alert has its newest rates
        if alert["rates"]:
            shrunk.setdefault(f"{alert['campaign_id']}/{alert['creator_id']}", alert["rates"])
    board = read_board(
        dashboard.sink,
        campaign=campaign,
        last_s=last_s,
        sort=key,
        limit=None,
        alerts={(k[0], k[1]): v for k, v in badges.items()},
    )
    rows = board.rows
    if tier is not None:
        rows = tuple(r for r in rows if (r.tier or "unknown") == tier)
    whole = replace(board, rows=()).to_json()  # the range and summaries, no creators
    cut = replace(board, rows=rows[:limit])
    board_out = {**cut.to_json(), "alerts": states, "shrunk": shrunk}
    overview: dict[str, Any] = {}
    if hours is not None:
        overview = {
            **{k: v for k, v in whole.items() if k != "creators"},
            "tiers": dashboard.tiers(campaign, board.from_s) if board.to_s else {},
            "series": dashboard.campaign_series(campaign, hours),
        }
    return board_out, overview
