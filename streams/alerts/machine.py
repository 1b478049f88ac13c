"""The alert state machine of one campaign: evaluations in, alert episodes out. Pure.

Each (rule, campaign, creator) fingerprint moves as Prometheus and Grafana move theirs:

- inactive -> pending when the fire condition holds; pending -> firing once it has held for
  ``pending_evaluations`` consecutive evaluations (a lucky window alone never fires); the
  condition failing while pending goes back to inactive;
- firing -> recovering when the alert's metric scores below ``recover_z`` (or cannot be
  scored: an alert stands only while the data shows it), back to firing at or above it,
  and recovering -> resolved (``cooled``) after ``recover_evaluations`` in a row below;
- a firing creator absent from ``missing_evaluations`` evaluations in a row resolves
  (``missing``).

An episode fires once: a creator that stays hot stays firing, and a new alert needs a
resolution first. Its id is the fingerprint and the event time it started firing, so the
same evaluations give the same alerts with the same ids. Evaluations arrive in event-time
order; one at or before the last evaluated time is ignored, so late data that revises a
window already evaluated never fires or resolves anything. Steps are counted in
evaluations: the caller evaluates at every ``evaluation_step_s`` of the campaign's clock.

The whole state is :meth:`CampaignAlerts.to_bytes` (JSON), for a changelog: a restart that
restores it decides the next evaluation exactly as an uninterrupted run would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgspec

from schemas.alerts import (
    OUTPERFORMING,
    Alert,
    ResolvedReason,
    Thresholds,
    episode_id,
    fingerprint,
)
from streams.alerts.evaluate import CAMPAIGN_TIER, Evaluation, Score, Verdict
from streams.alerts.rules import Rules

TrackState = Literal["pending", "firing", "recovering"]
STATE_VERSION = 1


class _Track(msgspec.Struct, kw_only=True):
    """One fingerprint that is not inactive."""

    state: TrackState
    hot: int = 0  # consecutive evaluations the condition held (pending)
    cool: int = 0  # consecutive evaluations below recover_z (recovering)
    absent: int = 0  # consecutive evaluations without the creator (firing, recovering)
    alert: Alert | None = None  # the episode with its latest numbers (firing, recovering)


class _Saved(msgspec.Struct, kw_only=True):
    version: int
    campaign_id: str
    rule: str
    last_at_ms: int | None
    tracks: dict[str, _Track]


_DECODER = msgspec.json.Decoder(_Saved)


@dataclass(frozen=True, slots=True)
class Step:
    """What one evaluation changed."""

    at_ms: int
    ignored: bool = False  # at or before the last evaluated time: nothing changed
    fired: tuple[Alert, ...] = ()  # started firing at this evaluation
    resolved: tuple[Alert, ...] = ()  # resolved at this evaluation
    firing: tuple[Alert, ...] = ()  # every alert firing after it, with its latest numbers

    @property
    def alerts(self) -> tuple[Alert, ...]:
        """What the notification policy observes: the firing and the just resolved."""
        return self.firing + self.resolved


class CampaignAlerts:
    """The state machine of every creator of one campaign, for one rule."""

    def __init__(self, campaign_id: str, rules: Rules, *, rule: str = OUTPERFORMING) -> None:
        self.campaign_id = campaign_id
        self.rule = rule
        self._rules = rules
        self._thresholds = Thresholds(
            z=rules.z, lift=rules.lift, probability=rules.probability, recover_z=rules.recover_z
        )
        self.last_at_ms: int | None = None
        self._tracks: dict[str, _Track] = {}

    def state_of(self, creator_id: str) -> str:
        """``inactive``, ``pending``, ``firing`` or ``recovering``."""
        track = self._tracks.get(creator_id)
        return "inactive" if track is None else track.state

    def pending(self) -> tuple[str, ...]:
        """The creators whose fire condition holds but has not held long enough yet."""
        return tuple(sorted(c for c, t in self._tracks.items() if t.state == "pending"))

    def firing(self) -> tuple[str, ...]:
        """The creators with an open alert: firing, or recovering (still firing until it
        resolves, as Prometheus keeps an alert firing while it recovers)."""
        return tuple(
            sorted(c for c, t in self._tracks.items() if t.state in ("firing", "recovering"))
        )

    def step(self, evaluation: Evaluation) -> Step:
        if evaluation.campaign_id != self.campaign_id:
            raise ValueError(
                f"evaluation of campaign {evaluation.campaign_id!r} given to {self.campaign_id!r}"
            )
        at = evaluation.at_ms
        if self.last_at_ms is not None and at <= self.last_at_ms:
            return Step(at_ms=at, ignored=True)
        self.last_at_ms = at
        present = {v.creator_id: v for v in evaluation.verdicts}
        fired: list[Alert] = []
        resolved: list[Alert] = []
        firing: list[Alert] = []
        for creator_id in sorted(present.keys() | self._tracks.keys()):
            verdict = present.get(creator_id)
            track = self._tracks.get(creator_id)
            if track is None or track.state == "pending":
                hot = (track.hot if track is not None else 0) + 1
                if verdict is None or not verdict.fires:
                    self._tracks.pop(creator_id, None)
                elif hot < self._rules.pending_evaluations:
                    self._tracks[creator_id] = _Track(state="pending", hot=hot)
                else:
                    alert = self._open(verdict, evaluation)
                    self._tracks[creator_id] = _Track(state="firing", alert=alert)
                    fired.append(alert)
                    firing.append(alert)
                continue
            assert track.alert is not None
            if verdict is None:
                track.absent += 1
                if track.absent >= self._rules.missing_evaluations:
                    resolved.append(self._close(track.alert, at, "missing"))
                    del self._tracks[creator_id]
                else:
                    firing.append(track.alert)  # still firing, on the numbers last seen
                continue
            track.absent = 0
            score = verdict.score(track.alert.metric)
            alert = self._refresh(track.alert, verdict, score, evaluation)
            if score is not None and score.z >= self._rules.recover_z:
                track.state, track.cool = "firing", 0
            else:
                track.state, track.cool = "recovering", track.cool + 1
                if track.cool >= self._rules.recover_evaluations:
                    resolved.append(self._close(alert, at, "cooled"))
                    del self._tracks[creator_id]
                    continue
            track.alert = alert
            firing.append(alert)
        return Step(at_ms=at, fired=tuple(fired), resolved=tuple(resolved), firing=tuple(firing))

    def _open(self, verdict: Verdict, evaluation: Evaluation) -> Alert:
        score = verdict.decisive
        assert score is not None
        fp = fingerprint(self.rule, self.campaign_id, verdict.creator_id)
        alert = Alert(
            alert_id=episode_id(fp, evaluation.at_ms),
            fingerprint=fp,
            rule=self.rule,
            status="firing",
            campaign_id=self.campaign_id,
            creator_id=verdict.creator_id,
            metric=score.metric,
            value=score.value,
            baseline=score.baseline,
            z=score.z,
            lift=score.lift,
            probability=score.probability,
            cohort=score.cohort,
            figures=verdict.figures,
            thresholds=self._thresholds,
            window_start_ms=evaluation.window_start_ms,
            window_end_ms=evaluation.window_end_ms,
            starts_at_ms=evaluation.at_ms,
            handle=verdict.handle,
        )
        return msgspec.structs.replace(alert, explanation=explain(alert))

    def _refresh(
        self, alert: Alert, verdict: Verdict, score: Score | None, evaluation: Evaluation
    ) -> Alert:
        """The episode with this evaluation's numbers (its metric's last score if unscored)."""
        alert = msgspec.structs.replace(
            alert,
            figures=verdict.figures,
            window_start_ms=evaluation.window_start_ms,
            window_end_ms=evaluation.window_end_ms,
        )
        if score is None:
            why = dict(verdict.gaps).get(alert.metric, "not scored")
            return msgspec.structs.replace(
                alert, explanation=f"{_LABELS[alert.metric]} not scored now: {why}"
            )
        alert = msgspec.structs.replace(
            alert,
            value=score.value,
            baseline=score.baseline,
            z=score.z,
            lift=score.lift,
            probability=score.probability,
            cohort=score.cohort,
        )
        return msgspec.structs.replace(alert, explanation=explain(alert))

    def _close(self, alert: Alert, at_ms: int, reason: ResolvedReason) -> Alert:
        closed = msgspec.structs.replace(
            alert, status="resolved", ends_at_ms=at_ms, resolved_reason=reason
        )
        return msgspec.structs.replace(closed, explanation=explain(closed))

    def to_bytes(self) -> bytes:
        saved = _Saved(
            version=STATE_VERSION,
            campaign_id=self.campaign_id,
            rule=self.rule,
            last_at_ms=self.last_at_ms,
            tracks=self._tracks,
        )
        return msgspec.json.encode(saved)

    @classmethod
    def from_bytes(cls, data: bytes, rules: Rules) -> CampaignAlerts:
        """The machine :meth:`to_bytes` saved; raises ``ValueError`` if it is not one."""
        saved = _DECODER.decode(data)
        if saved.version != STATE_VERSION:
            raise ValueError(f"alert state version {saved.version}, expected {STATE_VERSION}")
        machine = cls(saved.campaign_id, rules, rule=saved.rule)
        machine.last_at_ms = saved.last_at_ms
        machine._tracks = dict(saved.tracks)
        return machine


_LABELS = {
    "engagement_rate": "engagement rate",
    "ctr": "CTR",
    "conversion_rate": "conversion rate",
    "views_per_minute": "views per minute",
    "cpa": "cost per acquisition",
}


def _figure(alert: Alert, value: float) -> str:
    if alert.metric == "views_per_minute":
        return f"{value:,.0f}/min"
    if alert.metric == "cpa":
        return f"{value:,.2f} {alert.figures.currency or ''}".rstrip()
    return f"{value:.2%}"


def explain(alert: Alert) -> str:
    """One line that says why the alert fired (or resolved), from its own numbers."""
    cohort = alert.cohort
    among = (
        f"{cohort.size} creators campaign-wide"
        if cohort.tier == CAMPAIGN_TIER
        else f"{cohort.size} {cohort.tier} creators"
    )
    minutes = (alert.window_end_ms - alert.window_start_ms) // 60_000
    text = (
        f"{_LABELS.get(alert.metric, alert.metric)} {_figure(alert, alert.value)} vs median "
        f"{_figure(alert, alert.baseline)} of {among}: {alert.lift:.2f}x, z {alert.z:.1f}"
    )
    if alert.probability is not None:
        text += f", P(above median) {alert.probability:.3f}"
    text += f"; {alert.figures.views:,} views in the last {minutes} min"
    if alert.status == "resolved":
        if alert.resolved_reason == "missing":
            return f"resolved: no data for the creator any more (last seen: {text})"
        return f"resolved: cooled below z {alert.thresholds.recover_z:g} ({text})"
    return text
