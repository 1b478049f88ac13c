"""Table tests for the alerting core, in the style of ``promtool test rules``.

A table gives, per creator, what each evaluation (one per minute of event time) saw, and
the notifications expected at given minutes. :func:`run` drives the state machine and the
notification policy as the stream will: each evaluation is observed a few seconds after its
event time (a live stream), and the policy's timer runs at the end of its group wait.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from schemas.alerts import Cohort, Figures, Silence
from streams.alerts.evaluate import Evaluation, Score, Verdict
from streams.alerts.machine import CampaignAlerts, Step
from streams.alerts.policy import Dispatch, NotificationPolicy
from streams.alerts.rules import Rules

CAMPAIGN = "spring"
T0 = 1_795_338_000_000  # event time of minute 0
LAG_MS = 5_000  # a live stream sees an evaluation this long after its event time
UNSCORED = "unscored"  # present, but the metric could not be scored (e.g. below min views)

#: What one creator looked like at one evaluation: its z-score, absent (None), or UNSCORED.
Seen = float | str | None


def minute(m: int) -> int:
    return T0 + m * 60_000


COHORT = Cohort(campaign_id=CAMPAIGN, tier="micro", scope="tier", size=9, median=-2.6, mad=0.1)


def figures(views: int = 12_000) -> Figures:
    return Figures(
        views=views,
        engagements=views // 7,
        clicks=views // 50,
        conversions=views // 1000,
        revenue_cents=0,
        engagement_rate=1 / 7,
        engagement_rate_shrunk=0.14,
        ctr=0.02,
        ctr_shrunk=0.02,
        conversion_rate=0.05,
        conversion_rate_shrunk=0.05,
        views_per_minute=views / 60,
    )


def verdict(creator_id: str, seen: float | str, rules: Rules) -> Verdict:
    """A verdict scored ``seen`` on engagement rate; the condition holds at z >= rules.z
    (lift and posterior clear, so the z-score alone decides, as in the issue's tables)."""
    if seen == UNSCORED:
        return Verdict(
            creator_id=creator_id,
            tier="micro",
            handle=None,
            figures=figures(900),
            scores=(),
            gaps=(("engagement_rate", "below min views (900 < 1000)"),),
            decisive=None,
        )
    assert isinstance(seen, float | int)
    score = Score(
        metric="engagement_rate",
        value=0.14,
        baseline=0.07,
        z=float(seen),
        lift=2.0,
        probability=0.999,
        cohort=COHORT,
        fires=seen >= rules.z,
    )
    return Verdict(
        creator_id=creator_id,
        tier="micro",
        handle=f"@{creator_id}",
        figures=figures(),
        scores=(score,),
        gaps=(),
        decisive=score if score.fires else None,
    )


def evaluation(at_ms: int, seen: Mapping[str, Seen], rules: Rules) -> Evaluation:
    return Evaluation(
        campaign_id=CAMPAIGN,
        at_ms=at_ms,
        window_start_ms=at_ms - rules.trailing_window_s * 1000,
        window_end_ms=at_ms,
        verdicts=tuple(verdict(c, s, rules) for c, s in sorted(seen.items()) if s is not None),
    )


@dataclass(frozen=True)
class Sent:
    """A notification as a table expects it."""

    minute: int  # the evaluation whose wait it came out of
    kind: str
    creators: tuple[str, ...]
    delivery: str = "pending"


@dataclass
class Run:
    steps: list[Step] = field(default_factory=list)
    dispatches: list[tuple[int, Dispatch]] = field(default_factory=list)  # (minute, dispatch)

    @property
    def sent(self) -> list[Sent]:
        return [
            Sent(
                m,
                d.notification.kind,
                tuple(sorted(a.creator_id for a in d.notification.alerts)),
                d.delivery,
            )
            for m, d in self.dispatches
        ]


def run(
    series: Mapping[str, Sequence[Seen]],
    rules: Rules | None = None,
    *,
    silences: Sequence[Silence] = (),
    lag_ms: int = LAG_MS,
    restart_every_step: bool = False,
) -> Run:
    """Evaluate minute 0, 1, ... with what ``series`` says each creator looked like."""
    rules = rules or Rules()
    machine = CampaignAlerts(CAMPAIGN, rules)
    policy = NotificationPolicy(rules)
    out = Run()
    length = max(len(s) for s in series.values())
    for m in range(length):
        seen = {c: (s[m] if m < len(s) else None) for c, s in series.items()}
        if restart_every_step:  # as a restart from the changelog would
            machine = CampaignAlerts.from_bytes(machine.to_bytes(), rules)
            policy = NotificationPolicy.from_bytes(policy.to_bytes(), rules)
        step = machine.step(evaluation(minute(m), seen, rules))
        out.steps.append(step)
        now = minute(m) + lag_ms
        policy.observe(step.alerts, now)
        timer = now + rules.group_wait_s * 1000
        out.dispatches += [(m, d) for d in policy.due(timer, silences)]
    return out
