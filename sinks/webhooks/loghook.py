"""The log hook: one structured line per notification, for a demo or a setup with no
receiver. ``key=value`` pairs (logfmt): readable on a terminal, parseable by log tools.
The whole notification also travels in the record's ``notification`` attribute for a
JSON log handler.
"""

from __future__ import annotations

import json
import logging

from schemas.alerts import Notification

LOGGER = logging.getLogger("creatorpulse.alerts")
#: Alerts listed in one line; a group larger than this ends with ``more=N``.
MAX_ALERTS_PER_LINE = 20


def log_line(notification: Notification) -> str:
    """The line, always one line: a value with a space, quote, ``=`` or control
    character is JSON-quoted, which escapes newlines."""
    n = notification
    pairs: list[tuple[str, object]] = [
        ("type", n.type),
        ("kind", n.kind),
        ("campaign", n.campaign_id),
        ("notification_id", n.notification_id),
        ("alerts", len(n.alerts)),
    ]
    for alert in n.alerts[:MAX_ALERTS_PER_LINE]:
        pairs += [
            ("creator", alert.creator_id),
            ("handle", alert.handle or ""),
            ("status", alert.status),
            ("metric", alert.metric),
            ("value", f"{alert.value:.4g}"),
            ("median", f"{alert.baseline:.4g}"),
            ("z", f"{alert.z:.2f}"),
            ("lift", f"{alert.lift:.2f}"),
            ("views", alert.figures.views),
        ]
    if len(n.alerts) > MAX_ALERTS_PER_LINE:
        pairs.append(("more", len(n.alerts) - MAX_ALERTS_PER_LINE))
    if n.dashboard_url:
        pairs.append(("url", n.dashboard_url))
    return "alert " + " ".join(f"{key}={_value(value)}" for key, value in pairs)


def write(notification: Notification, logger: logging.Logger = LOGGER) -> None:
    logger.info("%s", log_line(notification), extra={"notification": notification})


def _value(value: object) -> str:
    text = str(value)
    if text and text.isprintable() and not any(c in text for c in ' "=\\'):
        return text
    return json.dumps(text)  # ASCII escapes: no character can split the line
