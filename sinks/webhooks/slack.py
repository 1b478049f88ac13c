"""A Slack incoming-webhook message built from a notification: ``text`` plus ``blocks``.

Slack treats ``&``, ``<`` and ``>`` as control characters in every text object, so each
is sent as its HTML entity (and nothing else is entity-encoded, or it shows as typed).
The message stays within Slack's limits: a section's text is at most 3000 characters and
a message at most 50 blocks; past that the remaining creators are summarised in one
block. Any Slack-compatible receiver (Mattermost, Rocket.Chat, ...) reads the same.

Pure code: :func:`slack_payload` returns the JSON object; delivery POSTs it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.alerts import Alert, Notification

#: Slack's limits (Block Kit reference): a section's text, and blocks per message.
SECTION_TEXT_LIMIT = 3000
MAX_BLOCKS = 50
#: ``text`` is the notification fallback (push, screen readers); Slack would take more,
#: but a fallback longer than a section helps nobody.
FALLBACK_TEXT_LIMIT = 3000
#: Handles named in the summary of creators that did not get a block of their own.
SUMMARY_NAMES = 20

_RATES = {"engagement_rate": "ER", "ctr": "CTR", "conversion_rate": "CVR"}
_VELOCITY = {"views_per_minute", "views_velocity"}
_TITLES = {
    "firing": "outperforming its cohort",
    "repeat": "still outperforming (reminder)",
    "resolved": "no longer outperforming",
}


def escape(text: str) -> str:
    """Slack's three control characters as entities; the only escaping Slack decodes."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    """``<url|label>``. A URL cannot carry ``|`` or ``>`` here, so those are
    percent-encoded; ``&`` becomes ``&amp;``, which Slack decodes back."""
    safe = url.replace("&", "&amp;").replace("|", "%7C").replace("<", "%3C").replace(">", "%3E")
    return f"<{safe}|{escape(label)}>"


def fit(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis, never inside an entity or a
    ``<...>`` link (a half entity or link breaks the whole block)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    opened = cut.rfind("<")
    if opened != -1 and ">" not in cut[opened:]:
        cut = cut[:opened]
    return cut + "…"


def slack_payload(notification: Notification) -> dict[str, Any]:
    """The message for one notification: a title block, one block per creator (as many
    as fit), a summary of the rest, and the dashboard link."""
    alerts = notification.alerts
    title = _title(notification)
    tail = (
        [_section(link(notification.dashboard_url, "Open the dashboard"))]
        if (notification.dashboard_url)
        else []
    )
    room = MAX_BLOCKS - 1 - len(tail)
    shown = alerts if len(alerts) <= room else alerts[: room - 1]
    blocks = [_section(title)]
    blocks += [_section(_alert_text(alert)) for alert in shown]
    rest = alerts[len(shown) :]
    if rest:
        blocks.append(_section(_summary(rest)))
    blocks += tail
    names = ", ".join(escape(_who(alert)) for alert in alerts[:SUMMARY_NAMES])
    more = f" and {len(alerts) - SUMMARY_NAMES} more" if len(alerts) > SUMMARY_NAMES else ""
    return {"text": fit(f"{title}: {names}{more}", FALLBACK_TEXT_LIMIT), "blocks": blocks}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": fit(text, SECTION_TEXT_LIMIT)}}


def _title(notification: Notification) -> str:
    count = len(notification.alerts)
    who = "1 creator" if count == 1 else f"{count} creators"
    what = _TITLES.get(notification.kind, notification.kind)
    if count != 1:
        what = what.replace("its cohort", "their cohorts")
    return (
        f"*{who} {escape(what)}* in campaign *{escape(notification.campaign_id)}* "
        f"({escape(notification.rule)})"
    )


def _who(alert: Alert) -> str:
    return alert.handle or alert.creator_id


def _alert_text(alert: Alert) -> str:
    name = escape(_who(alert))
    if alert.handle and alert.handle != alert.creator_id:
        name += f" ({escape(alert.creator_id)})"
    cohort = alert.cohort
    scope = "campaign-wide" if cohort.scope == "campaign" else f"{escape(cohort.tier)} tier"
    metric = _metric_label(alert.metric)
    lines = [
        f"*{name}*: {metric} {_value(alert, alert.value)} vs cohort median "
        f"{_value(alert, alert.baseline)} ({scope}, {cohort.size} creators)",
        f"z {alert.z:.2f} (≥ {alert.thresholds.z:g}) · lift {alert.lift:.2f}x "
        f"(≥ {alert.thresholds.lift:g}x)"
        + (f" · P(above median) {alert.probability:.1%}" if alert.probability is not None else ""),
        _status(alert),
        _figures(alert),
    ]
    if alert.explanation:
        lines.append(f"_{escape(alert.explanation)}_")
    return "\n".join(lines)


def _metric_label(metric: str) -> str:
    if metric in _RATES:
        return _RATES[metric]
    if metric in _VELOCITY:
        return "views/min"
    return "CPA" if metric == "cpa" else escape(metric)


def _value(alert: Alert, value: float) -> str:
    if alert.metric in _RATES:
        return f"{value:.2%}" if abs(value) < 0.01 else f"{value:.1%}"
    if alert.metric in _VELOCITY:
        return f"{value:,.0f}"
    if alert.metric == "cpa":
        return f"{value:,.2f}" + (
            f" {escape(alert.figures.currency)}" if alert.figures.currency else ""
        )
    return f"{value:.4g}"


def _status(alert: Alert) -> str:
    window = f"window {_time(alert.window_start_ms)} to {_time(alert.window_end_ms)}"
    if alert.status == "resolved":
        reason = f" ({alert.resolved_reason})" if alert.resolved_reason else ""
        when = f" at {_time(alert.ends_at_ms)}" if alert.ends_at_ms is not None else ""
        return f"Status: *resolved*{reason}{when}; {window}"
    return f"Status: *firing* since {_time(alert.starts_at_ms)}; {window}"


def _figures(alert: Alert) -> str:
    f = alert.figures
    parts = [f"views {f.views:,}", f"clicks {f.clicks:,}", f"conversions {f.conversions:,}"]
    currency = f" {escape(f.currency)}" if f.currency else ""
    parts.append(f"revenue {f.revenue_cents / 100:,.2f}{currency}")
    if f.cpa is not None:
        parts.append(f"CPA {f.cpa:,.2f}{currency}")
    return " · ".join(parts)


def _summary(rest: list[Alert]) -> str:
    names = ", ".join(escape(_who(alert)) for alert in rest[:SUMMARY_NAMES])
    more = f" and {len(rest) - SUMMARY_NAMES} more" if len(rest) > SUMMARY_NAMES else ""
    return f"…and {len(rest)} more creators: {names}{more}"


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
