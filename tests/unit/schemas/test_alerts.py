"""The alert and notification shapes: JSON round trips and stable identities."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from schemas.alerts import (
    OUTPERFORMING,
    Notification,
    Silence,
    alert_from_json,
    alert_to_json,
    episode_id,
    fingerprint,
    notification_from_json,
    notification_to_json,
    sample_alert,
    silence_from_json,
    silence_to_json,
)

T0_MS = 1_795_338_060_000  # 2026-11-22T09:01:00Z


def test_the_sample_alert_fires_for_the_hour_before_it_and_takes_changes() -> None:
    alert = sample_alert("spring", "maya", T0_MS, handle="@maya.eats", status="resolved")
    # Expected values written out here, not derived from the function under test.
    expected_fp = hashlib.sha256(b"creator.outperforming\x00spring\x00maya").hexdigest()[:16]
    assert (alert.fingerprint, alert.alert_id) == (expected_fp, f"{expected_fp}-1795338060000")
    assert (alert.rule, alert.campaign_id, alert.creator_id) == (
        "creator.outperforming",
        "spring",
        "maya",
    )
    assert (alert.window_start_ms, alert.window_end_ms, alert.starts_at_ms) == (
        1_795_334_460_000,
        1_795_338_060_000,
        1_795_338_060_000,
    )
    assert (alert.metric, alert.value, alert.baseline, alert.z, alert.lift) == (
        "engagement_rate",
        0.152,
        0.071,
        4.2,
        2.14,
    )
    assert (alert.cohort.campaign_id, alert.cohort.tier, alert.cohort.size) == (
        "spring",
        "micro",
        9,
    )
    assert (alert.figures.views, alert.figures.revenue_cents) == (12_000, 59_880)
    assert (alert.handle, alert.status) == ("@maya.eats", "resolved")
    plain = sample_alert("spring", "maya", T0_MS)
    assert (plain.handle, plain.status, plain.explanation) == (None, "firing", "")
    # A field named like an argument is a change too: the identity stays that of the arguments.
    moved = sample_alert("spring", "maya", T0_MS, campaign_id="autumn")
    assert (moved.campaign_id, moved.cohort.campaign_id, moved.fingerprint) == (
        "autumn",
        "spring",
        expected_fp,
    )


def test_an_alert_round_trips_through_json() -> None:
    alert = sample_alert("spring", "maya", T0_MS)
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
        alerts=[sample_alert("spring", "maya", T0_MS)],
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
