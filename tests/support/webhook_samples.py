"""Notifications for the webhook tests: realistic numbers, chosen ids and handles."""

from __future__ import annotations

from schemas.alerts import OUTPERFORMING, Alert, Notification, sample_alert

T0_MS = 1_795_338_060_000  # 2026-11-22T09:01:00Z


def alert(
    creator_id: str = "maya", *, handle: str | None = "@maya.eats", **changes: object
) -> Alert:
    return sample_alert("spring", creator_id, T0_MS, handle=handle, **changes)


def notification(
    notification_id: str = "n-1",
    alerts: list[Alert] | None = None,
    *,
    dashboard_url: str | None = "https://dash.example/campaigns/spring?creator=maya&window=1h",
    kind: str = "firing",
) -> Notification:
    return Notification(
        notification_id=notification_id,
        type=OUTPERFORMING,
        kind=kind,  # type: ignore[arg-type]
        campaign_id="spring",
        rule=OUTPERFORMING,
        alerts=alerts if alerts is not None else [alert()],
        created_at_ms=T0_MS + 30_000,
        dashboard_url=dashboard_url,
    )
