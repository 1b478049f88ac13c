"""Alerts and notifications: what the alerting stage decides and what hooks receive.

Contract section 3. An :class:`Alert` is one episode of one rule for one creator: it
starts firing once and later resolves, and every number that made it fire travels with
it, so a receiver can see why without querying anything. A :class:`Notification` is what a
hook gets: the alerts of one campaign and rule that became due together (Alertmanager's
grouping), as one message.

Both are msgspec structs: their JSON is the alerts topic's and the webhooks' body, and
reading it back validates it.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import msgspec

#: The rule of contract section 3, and the type of its notifications.
OUTPERFORMING = "creator.outperforming"
RESOLVED_SUFFIX = ".resolved"

AlertStatus = Literal["firing", "resolved"]
#: What a cohort is: the creator's tier within the campaign, or (fallback, when the tier
#: has too few eligible creators) the whole campaign.
CohortScope = Literal["tier", "campaign"]
#: Why an alert resolved: its creator cooled down, or stopped appearing in the data.
ResolvedReason = Literal["cooled", "missing"]
#: Why a notification is sent.
NotificationKind = Literal["firing", "repeat", "resolved"]
#: What the policy decided for a notification: ``pending`` goes to the hooks (the outbox
#: keeps it until delivered); ``silenced`` matched a silence and ``suppressed`` is older than
#: the replay horizon, and both are recorded, never sent.
Delivery = Literal["pending", "silenced", "suppressed"]


class Cohort(msgspec.Struct, frozen=True, kw_only=True):
    """The creators a figure was compared with, and the robust centre and spread."""

    campaign_id: str
    tier: str  # nano, micro, macro, mega or unknown; "all" for a campaign-wide cohort
    scope: CohortScope
    size: int  # eligible creators in it
    median: float
    mad: float  # median absolute deviation (on the score's scale: logit or log1p)
    # Set when MAD is 0 and the z-score fell back to the mean absolute deviation (x 1.2533).
    mean_ad: float | None = None


class Figures(msgspec.Struct, frozen=True, kw_only=True):
    """A creator's figures over the trailing window. Rates are ``None`` without a
    denominator; ``*_shrunk`` are the empirical-Bayes estimates the rule compares."""

    views: int
    engagements: int
    clicks: int
    conversions: int
    revenue_cents: int
    engagement_rate: float | None
    engagement_rate_shrunk: float | None
    ctr: float | None
    ctr_shrunk: float | None
    conversion_rate: float | None
    conversion_rate_shrunk: float | None
    views_per_minute: float
    fee: float | None = None
    currency: str | None = None
    cpa: float | None = None  # fee / conversions, where a fee is known


class Thresholds(msgspec.Struct, frozen=True, kw_only=True):
    z: float
    lift: float
    probability: float
    recover_z: float


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """One episode of a rule for one creator: fires once, then resolves."""

    alert_id: str  # the episode: fingerprint and the event time it started firing
    fingerprint: str  # rule, campaign and creator, hashed
    rule: str
    status: AlertStatus
    campaign_id: str
    creator_id: str
    metric: str  # the figure that decided: engagement_rate, ctr, conversion_rate, ...
    value: float  # the creator's figure on that metric (shrunk, for a rate)
    baseline: float  # the cohort's median of it
    z: float  # modified z-score, signed so that higher is better (for CPA: of -log1p(cost))
    lift: float  # value / baseline (for cost per acquisition: baseline / value)
    probability: float | None  # posterior P(rate > cohort median); None for volumes
    cohort: Cohort
    figures: Figures
    thresholds: Thresholds
    window_start_ms: int  # the trailing window evaluated, in event time
    window_end_ms: int
    starts_at_ms: int  # event time of the evaluation that fired it
    ends_at_ms: int | None = None  # event time it resolved
    resolved_reason: ResolvedReason | None = None
    handle: str | None = None
    explanation: str = ""
    dashboard_url: str | None = None  # filled by the notification policy from its template


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """What a hook receives: the alerts of one group that became due together.

    ``notification_id`` is stable for the same group, kind and alerts, so it serves as the
    Standard Webhooks ``webhook-id`` and stays the same across retries.
    """

    notification_id: str
    type: str  # OUTPERFORMING, or OUTPERFORMING + RESOLVED_SUFFIX
    kind: NotificationKind
    campaign_id: str
    rule: str
    alerts: list[Alert]
    created_at_ms: int  # wall clock when the policy made it due
    dashboard_url: str | None = None


class Silence(msgspec.Struct, frozen=True, kw_only=True):
    """Mutes the alerts it matches until it expires. Each matcher is an exact value or a
    glob (``*``, ``?``, ``[...]``, as :func:`fnmatch.fnmatchcase`); ``*`` matches all."""

    silence_id: str
    expires_at_ms: int  # wall clock; the silence holds while now < expires_at_ms
    campaign_id: str = "*"
    creator_id: str = "*"
    rule: str = "*"
    created_at_ms: int = 0
    comment: str = ""


def fingerprint(rule: str, campaign_id: str, creator_id: str) -> str:
    """The identity of a rule for one creator: the same in every run over the same data."""
    digest = hashlib.sha256("\x00".join((rule, campaign_id, creator_id)).encode()).hexdigest()
    return digest[:16]


def episode_id(fingerprint_hex: str, starts_at_ms: int) -> str:
    """An alert's id: its fingerprint and the event time it started firing."""
    return f"{fingerprint_hex}-{starts_at_ms}"


def sample_alert(campaign_id: str, creator_id: str, starts_at_ms: int, /, **changes: Any) -> Alert:
    """An outperforming alert with realistic numbers, firing from ``starts_at_ms`` for the
    hour window that ends then: what ``creatorpulse alerts test-hook`` sends, and the
    sample the tests build on. Its fingerprint and id are those of the three arguments;
    ``changes`` then replace any field (a ``handle``, a ``status``, even a
    ``campaign_id``, which leaves the identity and cohort as they were)."""
    fp = fingerprint(OUTPERFORMING, campaign_id, creator_id)
    alert = Alert(
        alert_id=episode_id(fp, starts_at_ms),
        fingerprint=fp,
        rule=OUTPERFORMING,
        status="firing",
        campaign_id=campaign_id,
        creator_id=creator_id,
        metric="engagement_rate",
        value=0.152,
        baseline=0.071,
        z=4.2,
        lift=2.14,
        probability=0.999,
        cohort=Cohort(
            campaign_id=campaign_id, tier="micro", scope="tier", size=9, median=-2.57, mad=0.2
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
        window_start_ms=starts_at_ms - 3_600_000,
        window_end_ms=starts_at_ms,
        starts_at_ms=starts_at_ms,
    )
    return msgspec.structs.replace(alert, **changes) if changes else alert


_ENCODER = msgspec.json.Encoder()
_ALERT = msgspec.json.Decoder(Alert)
_NOTIFICATION = msgspec.json.Decoder(Notification)
_SILENCE = msgspec.json.Decoder(Silence)


def alert_to_json(alert: Alert) -> bytes:
    return _ENCODER.encode(alert)


def alert_from_json(value: bytes) -> Alert:
    """Read an alert; raises ``msgspec.ValidationError`` (a ``ValueError``) if malformed."""
    return _ALERT.decode(value)


def notification_to_json(notification: Notification) -> bytes:
    return _ENCODER.encode(notification)


def notification_from_json(value: bytes) -> Notification:
    return _NOTIFICATION.decode(value)


def silence_to_json(silence: Silence) -> bytes:
    return _ENCODER.encode(silence)


def silence_from_json(value: bytes) -> Silence:
    return _SILENCE.decode(value)
