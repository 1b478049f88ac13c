"""The alert and notification shapes: JSON round trips and stable identities."""

from __future__ import annotations

import msgspec
import pytest

from schemas.alerts import (
    OUTPERFORMING,
    Alert,
    Cohort,
    Figures,
    Notification,
    Silence,
    Thresholds,
    alert_from_json,
    alert_to_json,
    episode_id,
    fingerprint,
    notification_from_json,
    notification_to_json,
    silence_from_json,
    silence_to_json,
)


def sample_alert() -> Alert:
    fp = fingerprint(OUTPERFORMING, "spring", "maya")
    return Alert(
        alert_id=episode_id(fp, 1_795_338_060_000),
        fingerprint=fp,
        rule=OUTPERFORMING,
        status="firing",
        campaign_id="spring",
        creator_id="maya",
        metric="engagement_rate",
        value=0.152,
        baseline=0.071,
        z=4.2,
        lift=2.14,
        probability=0.999,
        cohort=Cohort(
            campaign_id="spring", tier="micro", scope="tier", size=9, median=-2.57, mad=0.2
        ),
        figures=Figures(
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
        thresholds=Thresholds(z=3.5, lift=1.5, probability=0.95, recover_z=2.0),
        window_start_ms=1_795_334_460_000,
        window_end_ms=1_795_338_060_000,
        starts_at_ms=1_795_338_060_000,
    )


def test_an_alert_round_trips_through_json() -> None:
    alert = sample_alert()
    assert alert_from_json(alert_to_json(alert)) == alert
    # The fields added for the alerting stage round-trip too.
    fallback = msgspec.structs.replace(
        alert,
        cohort=msgspec.structs.replace(alert.cohort, mad=0.0, mean_ad=0.05),
        dashboard_url="http://board/spring/maya",
    )
    assert alert_from_json(alert_to_json(fallback)) == fallback


def test_a_silence_round_trips_and_defaults_to_matching_everything() -> None:
    silence = Silence(silence_id="s1", expires_at_ms=1_795_345_200_000, creator_id="maya")
    assert silence_from_json(silence_to_json(silence)) == silence
    assert (silence.campaign_id, silence.rule) == ("*", "*")
    with pytest.raises(msgspec.ValidationError):
        silence_from_json(b'{"silence_id": "s1"}')  # no expiry: a silence always ends


def test_a_notification_round_trips_and_malformed_json_is_refused() -> None:
    notification = Notification(
        notification_id="n-1",
        type=OUTPERFORMING,
        kind="firing",
        campaign_id="spring",
        rule=OUTPERFORMING,
        alerts=[sample_alert()],
        created_at_ms=1,
    )
    assert notification_from_json(notification_to_json(notification)) == notification
    with pytest.raises(msgspec.ValidationError):
        notification_from_json(b'{"notification_id": 5}')


def test_identities_are_stable_and_distinct() -> None:
    a = fingerprint(OUTPERFORMING, "spring", "maya")
    assert a == fingerprint(OUTPERFORMING, "spring", "maya")
    assert (
        len({a, fingerprint(OUTPERFORMING, "spring", "omar"), fingerprint("x", "spring", "maya")})
        == 3
    )
    # The separator keeps ("ab", "c") and ("a", "bc") apart.
    assert fingerprint("r", "ab", "c") != fingerprint("r", "a", "bc")
    assert episode_id(a, 42) == f"{a}-42"
