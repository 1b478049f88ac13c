"""Notifications for the webhook tests: realistic numbers, chosen ids and handles."""

from __future__ import annotations

from schemas.alerts import (
    OUTPERFORMING,
    Alert,
    Cohort,
    Figures,
    Notification,
    Thresholds,
    episode_id,
    fingerprint,
)

T0_MS = 1_795_338_060_000  # 2026-11-22T09:01:00Z


def alert(
    creator_id: str = "maya", *, handle: str | None = "@maya.eats", **changes: object
) -> Alert:
    fp = fingerprint(OUTPERFORMING, "spring", creator_id)
    fields: dict[str, object] = {
        "alert_id": episode_id(fp, T0_MS),
        "fingerprint": fp,
        "rule": OUTPERFORMING,
        "status": "firing",
        "campaign_id": "spring",
        "creator_id": creator_id,
        "metric": "engagement_rate",
        "value": 0.152,
        "baseline": 0.071,
        "z": 4.2,
        "lift": 2.14,
        "probability": 0.999,
        "cohort": Cohort(
            campaign_id="spring", tier="micro", scope="tier", size=9, median=-2.57, mad=0.2
        ),
        "figures": Figures(
            views=12_000,
            engagements=1_900,
            clicks=240,
            conversions=12,
            revenue_cents=59_880,
            engagement_rate=0.158,
            engagement_rate_shrunk=0.152,
            ctr=0.02,
            ctr_shrunk=0.019,
            conversion_rate=0.05,
            conversion_rate_shrunk=0.048,
            views_per_minute=200.0,
        ),
        "thresholds": Thresholds(z=3.5, lift=1.5, probability=0.95, recover_z=2.0),
        "window_start_ms": T0_MS - 3_600_000,
        "window_end_ms": T0_MS,
        "starts_at_ms": T0_MS,
        "handle": handle,
    }
    fields.update(changes)
    return Alert(**fields)  # type: ignore[arg-type]


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
