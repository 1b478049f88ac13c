"""The notification policy: grouping, reminders, resolutions, silences, the replay horizon."""

from __future__ import annotations

import msgspec
import pytest

from schemas.alerts import OUTPERFORMING, Alert, Silence
from streams.alerts.machine import CampaignAlerts
from streams.alerts.policy import (
    Dispatch,
    NotificationPolicy,
    dashboard_link,
    notification_id,
    silence_matches,
)
from streams.alerts.rules import Rules
from tests.support.alert_table import CAMPAIGN, T0, Sent, evaluation, minute, run

RULES = Rules()
W = T0 + 5_000  # the wall clock when minute 0 is observed (a live stream)
HOUR_MS = 3_600_000


def fired(creator_id: str, at_ms: int = T0, campaign: str = CAMPAIGN) -> Alert:
    """An alert of ``creator_id`` that started firing at event time ``at_ms``."""
    machine = CampaignAlerts(CAMPAIGN, RULES)
    machine.step(evaluation(at_ms - 60_000, {creator_id: 4.0}, RULES))
    (alert,) = machine.step(evaluation(at_ms, {creator_id: 4.0}, RULES)).fired
    return msgspec.structs.replace(alert, campaign_id=campaign)


def fresh(alert: Alert, at_ms: int, z: float = 4.2) -> Alert:
    return msgspec.structs.replace(alert, window_end_ms=at_ms, z=z)


def resolved(alert: Alert, at_ms: int) -> Alert:
    return msgspec.structs.replace(
        alert, status="resolved", ends_at_ms=at_ms, resolved_reason="cooled"
    )


def summary(dispatches: list[Dispatch]) -> list[tuple[str, tuple[str, ...], str]]:
    return [
        (
            d.notification.kind,
            tuple(a.creator_id for a in d.notification.alerts),
            d.delivery,
        )
        for d in dispatches
    ]


def test_three_creators_crossing_within_group_wait_make_one_message() -> None:
    policy = NotificationPolicy(RULES)
    policy.observe([fired("ana")], W)
    policy.observe([fired("ben")], W + 10_000)
    policy.observe([fired("cai")], W + 25_000)
    assert policy.next_due_ms() == W + 30_000
    assert policy.due(W + 29_999) == []
    (one,) = policy.due(W + 30_000)
    n = one.notification
    assert (n.kind, n.type, n.campaign_id) == ("firing", OUTPERFORMING, CAMPAIGN)
    assert sorted(a.creator_id for a in n.alerts) == ["ana", "ben", "cai"]
    assert one.delivery == "pending"
    # A fourth after the wait is its own message, after its own wait.
    policy.observe([fired("dee")], W + 31_000)
    assert policy.due(W + 60_000) == []
    assert summary(policy.due(W + 61_000)) == [("firing", ("dee",), "pending")]


def test_groups_are_per_campaign() -> None:
    policy = NotificationPolicy(RULES)
    policy.observe([fired("ana"), fired("ben", campaign="autumn")], W)
    out = policy.due(W + 30_000)
    assert [d.notification.campaign_id for d in out] == ["autumn", CAMPAIGN]


def test_a_reminder_with_fresh_numbers_every_repeat_interval() -> None:
    policy = NotificationPolicy(RULES)
    alert = fired("ana")
    policy.observe([alert], W)
    (first,) = policy.due(W + 30_000)
    sent_at = W + 30_000
    assert policy.next_due_ms() == sent_at + 4 * HOUR_MS
    # Still firing, with newer numbers each minute; nothing until the interval is up.
    for m in range(1, 240):
        policy.observe([fresh(alert, minute(m), z=4.0 + m / 1000)], W + m * 60_000)
        assert policy.due(W + m * 60_000 + 30_000) == []
    policy.observe([fresh(alert, minute(240), z=5.5)], sent_at + 4 * HOUR_MS - 1)
    (reminder,) = policy.due(sent_at + 4 * HOUR_MS)
    assert reminder.notification.kind == "repeat"
    assert reminder.delivery == "pending"
    (a,) = reminder.notification.alerts
    assert (a.alert_id, a.z, a.window_end_ms) == (alert.alert_id, 5.5, minute(240))
    assert reminder.notification.notification_id != first.notification.notification_id


def test_no_reminder_without_fresh_numbers() -> None:
    policy = NotificationPolicy(RULES)
    alert = fired("ana")
    policy.observe([alert], W)
    policy.due(W + 30_000)
    policy.observe([alert], W + 60_000)  # the same numbers again (a stalled stream)
    assert policy.due(W + 30_000 + 5 * HOUR_MS) == []
    policy.observe([fresh(alert, minute(300))], W + 5 * HOUR_MS + 60_000)
    assert summary(policy.due(W + 5 * HOUR_MS + 60_000)) == [("repeat", ("ana",), "pending")]


def test_resolutions_are_sent_grouped_and_only_with_send_resolved() -> None:
    a, b = fired("ana"), fired("ben")
    for send, expected in ((True, [("resolved", ("ana", "ben"), "pending")]), (False, [])):
        policy = NotificationPolicy(Rules(send_resolved=send))
        policy.observe([a, b], W)
        policy.due(W + 30_000)
        policy.observe([resolved(a, minute(10)), resolved(b, minute(10))], W + 600_000)
        out = policy.due(W + 630_000)
        assert summary(out) == expected
        if out:
            assert out[0].notification.type == OUTPERFORMING + ".resolved"
        assert policy.next_due_ms() is None  # nothing left to remind of


def test_an_alert_that_fires_and_resolves_within_the_wait_sends_both_in_order() -> None:
    policy = NotificationPolicy(RULES)
    a = fired("ana")
    policy.observe([a], W)
    policy.observe([resolved(a, minute(2))], W + 10_000)
    assert summary(policy.due(W + 30_000)) == [
        ("firing", ("ana",), "pending"),
        ("resolved", ("ana",), "pending"),
    ]


@pytest.mark.parametrize(
    ("silence", "silenced"),
    [
        (Silence(silence_id="s", expires_at_ms=W + HOUR_MS, creator_id="ana"), {"ana"}),
        (Silence(silence_id="s", expires_at_ms=W + HOUR_MS, creator_id="b*"), {"ben"}),
        (Silence(silence_id="s", expires_at_ms=W + HOUR_MS, campaign_id="spr?ng"), {"ana", "ben"}),
        (Silence(silence_id="s", expires_at_ms=W + HOUR_MS, rule="creator.*"), {"ana", "ben"}),
        (Silence(silence_id="s", expires_at_ms=W + HOUR_MS, campaign_id="autumn"), set()),
        (Silence(silence_id="s", expires_at_ms=W + HOUR_MS, rule="other.rule"), set()),
        (Silence(silence_id="s", expires_at_ms=W + 30_000, creator_id="ana"), set()),  # expired
    ],
    ids=["exact", "glob", "campaign", "rule", "other-campaign", "other-rule", "expired"],
)
def test_silences(silence: Silence, silenced: set[str]) -> None:
    policy = NotificationPolicy(RULES)
    a, b = fired("ana"), fired("ben")
    policy.observe([a, b], W)
    out = policy.due(W + 30_000, [silence])
    got = {a.creator_id: d.delivery for d in out for a in d.notification.alerts}
    assert got == {c: ("silenced" if c in silenced else "pending") for c in ("ana", "ben")}
    # The resolution of a silenced alert is recorded silenced too: nobody heard of it.
    policy.observe([resolved(a, minute(5)), resolved(b, minute(5))], W + 300_000)
    out = policy.due(W + 330_000)  # the silence is not even given any more
    got = {a.creator_id: d.delivery for d in out for a in d.notification.alerts}
    assert got == {c: ("silenced" if c in silenced else "pending") for c in ("ana", "ben")}


def test_a_silence_matches_an_exact_id_with_glob_characters() -> None:
    a = msgspec.structs.replace(fired("ana"), creator_id="[vip] ana")
    s = Silence(silence_id="s", expires_at_ms=W + 1, creator_id="[vip] ana")
    assert silence_matches(s, a, W)
    assert not silence_matches(s, a, W + 1)


def test_the_replay_horizon_suppresses_old_alerts_for_their_whole_episode() -> None:
    policy = NotificationPolicy(RULES)
    old = fired("ana", at_ms=T0)
    edge = fired("ben", at_ms=T0 + 120_000)
    now = T0 + HOUR_MS + 60_000  # ana is 61 min behind the wall clock, ben 59
    policy.observe([old, edge], now)
    assert summary(policy.due(now + 30_000)) == [
        ("firing", ("ben",), "pending"),
        ("firing", ("ana",), "suppressed"),
    ]
    # Fresh numbers for the suppressed alert send no reminder; its resolution is recorded
    # suppressed, though it happens live: its receivers never heard of it.
    later = now + 5 * HOUR_MS
    policy.observe([fresh(old, later - 5_000), fresh(edge, later - 5_000)], later)
    assert summary(policy.due(later)) == [("repeat", ("ben",), "pending")]
    policy.observe([resolved(old, later), resolved(edge, later)], later)
    assert summary(policy.due(later + 30_000)) == [
        ("resolved", ("ben",), "pending"),
        ("resolved", ("ana",), "suppressed"),
    ]


def test_a_replay_sends_nothing() -> None:
    """A new consumer group re-evaluates a campaign of last week, as fast as it reads."""
    r = run({"ana": [4.0] * 5 + [1.0] * 3, "ben": [4.0] * 8}, lag_ms=7 * 24 * HOUR_MS)
    assert {s.delivery for s in r.sent} == {"suppressed"}
    assert [(s.kind, s.creators) for s in r.sent] == [
        ("firing", ("ana", "ben")),
        ("resolved", ("ana",)),
    ]


def test_notification_ids_are_stable_across_runs_retries_and_restarts() -> None:
    series = {"ana": [4.0, 4.0, 1.0, 1.0], "ben": [1.0, 4.0, 4.0, 4.0]}
    first = [d.notification.notification_id for _, d in run(series).dispatches]
    second = [d.notification.notification_id for _, d in run(series).dispatches]
    restarted = run(series, restart_every_step=True)
    assert first == second == [d.notification.notification_id for _, d in restarted.dispatches]
    assert len(set(first)) == len(first) == 3
    assert restarted.sent == [
        Sent(1, "firing", ("ana",)),
        Sent(2, "firing", ("ben",)),
        Sent(3, "resolved", ("ana",)),
    ]


def test_the_notification_id_hashes_group_kind_and_alerts() -> None:
    a, b = fired("ana"), fired("ben")
    base = notification_id(CAMPAIGN, OUTPERFORMING, "firing", [a, b])
    assert base == notification_id(CAMPAIGN, OUTPERFORMING, "firing", [b, a])  # order-free
    assert len(base) == 32
    others = {
        notification_id("autumn", OUTPERFORMING, "firing", [a, b]),
        notification_id(CAMPAIGN, "other", "firing", [a, b]),
        notification_id(CAMPAIGN, OUTPERFORMING, "resolved", [a, b]),
        notification_id(CAMPAIGN, OUTPERFORMING, "firing", [a]),
        notification_id(CAMPAIGN, OUTPERFORMING, "firing", [a, resolved(b, minute(3))]),
    }
    assert base not in others
    assert len(others) == 5
    # A reminder's id moves with the event time of its numbers; a firing's does not.
    assert notification_id(CAMPAIGN, OUTPERFORMING, "repeat", [a]) != notification_id(
        CAMPAIGN, OUTPERFORMING, "repeat", [fresh(a, minute(9))]
    )
    assert base == notification_id(CAMPAIGN, OUTPERFORMING, "firing", [fresh(a, minute(9)), b])


def test_the_dashboard_link_quotes_every_value() -> None:
    a = msgspec.structs.replace(fired("ana"), campaign_id="spring 26/eu", creator_id="a&b?c")
    template = "https://board/c/{campaign_id}/{creator_id}?alert={alert_id}"
    assert dashboard_link(template, a) == (
        f"https://board/c/spring%2026%2Feu/a%26b%3Fc?alert={a.alert_id}"
    )
    assert dashboard_link("", a) is None
    policy = NotificationPolicy(Rules(dashboard_url="https://board/{creator_id}"))
    policy.observe([fired("ana")], W)
    (d,) = policy.due(W + 30_000)
    assert d.notification.dashboard_url == "https://board/ana"
    assert d.notification.alerts[0].dashboard_url == "https://board/ana"


def test_the_policy_state_round_trips_mid_wait() -> None:
    policy = NotificationPolicy(RULES)
    policy.observe([fired("ana")], W)
    restored = NotificationPolicy.from_bytes(policy.to_bytes(), RULES)
    restored.observe([fired("ben")], W + 10_000)
    policy.observe([fired("ben")], W + 10_000)
    assert restored.due(W + 30_000) == policy.due(W + 30_000)
    assert restored.to_bytes() == policy.to_bytes()
    with pytest.raises(ValueError, match="policy state version 2"):
        NotificationPolicy.from_bytes(b'{"version": 2, "groups": []}', RULES)


@pytest.mark.parametrize("decided", ["pending", "silenced", "suppressed"])
def test_a_restored_alert_is_not_notified_again_and_resolves_as_decided(decided: str) -> None:
    policy = NotificationPolicy(RULES)
    ana = fired("ana")
    policy.restore(ana, decided, W)  # type: ignore[arg-type]
    policy.observe([fresh(ana, T0 + 60_000)], W + 60_000)  # republished with new numbers
    assert policy.due(W + 120_000) == []
    policy.observe([resolved(ana, T0 + 300_000)], W + 300_000)
    assert summary(policy.due(W + 330_000)) == [("resolved", ("ana",), decided)]


def test_a_restored_firing_alert_gets_its_reminders() -> None:
    policy = NotificationPolicy(RULES)
    ana = fired("ana")
    policy.restore(ana, "pending", W)
    policy.observe([fresh(ana, T0 + 3_600_000)], W + 3_600_000)
    assert policy.next_due_ms() == W + RULES.repeat_interval_s * 1000
    assert summary(policy.due(W + RULES.repeat_interval_s * 1000)) == [
        ("repeat", ("ana",), "pending")
    ]
