"""The state machine, as tables of evaluations -> notifications (``promtool test rules`` style)."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import pytest

from schemas.alerts import OUTPERFORMING, episode_id, fingerprint
from streams.alerts.machine import CampaignAlerts
from streams.alerts.rules import Rules
from tests.support.alert_table import CAMPAIGN, UNSCORED, Seen, Sent, evaluation, minute, run

RULES = Rules()


@dataclass(frozen=True)
class Case:
    name: str
    series: dict[str, list[Seen]]  # creator -> what each minute's evaluation saw
    expect: list[Sent]


HOT, COLD = 3.6, 1.0

CASES = [
    Case(
        "one evaluation above the threshold, then a drop: no notification",
        {"maya": [HOT, COLD, COLD, HOT, 2.4, 3.4]},
        [],
    ),
    Case(
        "fires after 2 evaluations, once",
        {"maya": [COLD, HOT, HOT, HOT, HOT, HOT]},
        [Sent(2, "firing", ("maya",))],
    ),
    Case(
        "3.6 / 2.5 / 3.6 stays firing with no repeat",
        {"maya": [HOT, HOT, 2.5, HOT, 2.5, HOT]},
        [Sent(1, "firing", ("maya",))],
    ),
    Case(
        "resolves after 2 evaluations below 2.0",
        {"maya": [HOT, HOT, 1.9, 1.9, 1.9]},
        [Sent(1, "firing", ("maya",)), Sent(3, "resolved", ("maya",))],
    ),
    Case(
        "one evaluation below 2.0 between two at 2.0 or above: still firing",
        {"maya": [HOT, HOT, 1.9, 2.0, 1.9, 3.0]},
        [Sent(1, "firing", ("maya",))],
    ),
    Case(
        "a creator that stops appearing for 2 evaluations resolves (missing)",
        {"maya": [HOT, HOT, HOT, None, None]},
        [Sent(1, "firing", ("maya",)), Sent(4, "resolved", ("maya",))],
    ),
    Case(
        "absent once, then back: still firing",
        {"maya": [HOT, HOT, None, HOT, None, 3.0]},
        [Sent(1, "firing", ("maya",))],
    ),
    Case(
        "absent while pending: back to inactive",
        {"maya": [HOT, None, HOT, COLD]},
        [],
    ),
    Case(
        "an unscored metric counts toward recovery",
        {"maya": [HOT, HOT, UNSCORED, UNSCORED]},
        [Sent(1, "firing", ("maya",)), Sent(3, "resolved", ("maya",))],
    ),
    Case(
        "a new episode after a resolution fires again",
        {"maya": [HOT, HOT, COLD, COLD, HOT, HOT]},
        [
            Sent(1, "firing", ("maya",)),
            Sent(3, "resolved", ("maya",)),
            Sent(5, "firing", ("maya",)),
        ],
    ),
    Case(
        "three creators crossing in the same evaluation: one message",
        {"ana": [HOT, HOT], "ben": [COLD, HOT, HOT], "cai": [HOT, HOT], "dee": [HOT, HOT]},
        [Sent(1, "firing", ("ana", "cai", "dee")), Sent(2, "firing", ("ben",))],
    ),
    Case(
        "below-minimum creators never fire",
        {"tiny": [UNSCORED] * 6},
        [],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_table(case: Case) -> None:
    assert run(case.series).sent == case.expect


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_table_with_a_restart_from_bytes_before_every_evaluation(case: Case) -> None:
    """The machine's (and the policy's) bytes hold everything that decides the next step."""
    assert run(case.series, restart_every_step=True).sent == case.expect


def test_resolution_reasons_and_times() -> None:
    cooled = run({"maya": [HOT, HOT, 1.9, 1.9]})
    (r,) = cooled.steps[3].resolved
    assert (r.status, r.resolved_reason, r.ends_at_ms, r.starts_at_ms) == (
        "resolved",
        "cooled",
        minute(3),
        minute(1),
    )
    assert r.z == 1.9  # the resolution carries the numbers that resolved it
    missing = run({"maya": [HOT, HOT, None, None]})
    (m,) = missing.steps[3].resolved
    assert (m.resolved_reason, m.ends_at_ms) == ("missing", minute(3))
    assert m.explanation.startswith("resolved: no data")


def test_a_firing_alert_carries_fresh_numbers_but_keeps_its_identity() -> None:
    steps = run({"maya": [HOT, HOT, 5.0, 2.5]}).steps
    (fired,) = steps[1].fired
    fp = fingerprint(OUTPERFORMING, CAMPAIGN, "maya")
    assert (fired.fingerprint, fired.alert_id) == (fp, episode_id(fp, minute(1)))
    assert fired.window_end_ms == minute(1)
    assert fired.thresholds.z == 3.5
    assert fired.thresholds.recover_z == 2.0
    assert "engagement rate 14.00% vs median 7.00% of 9 micro creators" in fired.explanation
    for m, z in ((2, 5.0), (3, 2.5)):
        (now,) = steps[m].firing
        assert now.alert_id == fired.alert_id
        assert now.z == z
        assert now.window_end_ms == minute(m)
        assert steps[m].fired == ()


def test_two_runs_give_the_same_alerts_with_the_same_ids() -> None:
    series: dict[str, list[Seen]] = {
        "ana": [HOT, HOT, COLD, COLD, HOT, HOT],
        "ben": [COLD, HOT, HOT, None, None, HOT],
    }
    first, second = run(series), run(series)
    assert first.steps == second.steps
    ids = [a.alert_id for s in first.steps for a in s.fired]
    assert len(ids) == len(set(ids)) == 3


def test_late_evaluations_are_ignored() -> None:
    machine = CampaignAlerts(CAMPAIGN, RULES)
    assert machine.step(evaluation(minute(1), {"maya": HOT}, RULES)).fired == ()
    assert machine.state_of("maya") == "pending"
    # Late data revises minute 1 (and an older one): ignored, so it cannot be the second
    # consecutive evaluation that fires.
    for at in (minute(1), minute(0)):
        step = machine.step(evaluation(at, {"maya": HOT}, RULES))
        assert step.ignored
        assert step.alerts == ()
    assert machine.step(evaluation(minute(2), {"maya": COLD}, RULES)).fired == ()
    assert machine.state_of("maya") == "inactive"
    # Once firing, a revision of an evaluated minute neither re-fires nor resolves.
    machine.step(evaluation(minute(3), {"maya": HOT}, RULES))
    (fired,) = machine.step(evaluation(minute(4), {"maya": HOT}, RULES)).fired
    assert machine.step(evaluation(minute(4), {"maya": COLD}, RULES)).ignored
    assert machine.step(evaluation(minute(3), {"maya": HOT}, RULES)).ignored
    (still,) = machine.step(evaluation(minute(5), {"maya": HOT}, RULES)).firing
    assert still.alert_id == fired.alert_id


def test_state_round_trips_through_bytes_mid_episode() -> None:
    machine = CampaignAlerts(CAMPAIGN, RULES)
    machine.step(evaluation(minute(0), {"ana": HOT, "ben": HOT, "cai": HOT}, RULES))
    machine.step(evaluation(minute(1), {"ana": HOT, "ben": HOT, "cai": COLD}, RULES))
    machine.step(evaluation(minute(2), {"ana": 1.0, "cai": HOT, "dee": HOT}, RULES))
    states = {c: machine.state_of(c) for c in ("ana", "ben", "cai", "dee")}
    assert states == {"ana": "recovering", "ben": "firing", "cai": "pending", "dee": "pending"}
    data = machine.to_bytes()
    restored = CampaignAlerts.from_bytes(data, RULES)
    assert restored.to_bytes() == data
    assert restored.last_at_ms == minute(2)
    nxt = evaluation(minute(3), {"ana": 1.0, "cai": HOT, "dee": COLD}, RULES)
    assert restored.step(nxt) == machine.step(nxt)
    assert restored.to_bytes() == machine.to_bytes()
    with pytest.raises(msgspec.ValidationError):
        CampaignAlerts.from_bytes(b'{"version": 99}', RULES)


def test_another_campaigns_evaluation_is_refused() -> None:
    machine = CampaignAlerts("other", RULES)
    with pytest.raises(ValueError, match="spring"):
        machine.step(evaluation(minute(0), {"maya": HOT}, RULES))


def test_the_counts_come_from_the_rules() -> None:
    rules = Rules(pending_evaluations=3, recover_evaluations=1, missing_evaluations=3)
    r = run({"maya": [HOT, HOT, HOT, 1.0, HOT, HOT, HOT, None, None, None]}, rules)
    assert r.sent == [
        Sent(2, "firing", ("maya",)),
        Sent(3, "resolved", ("maya",)),
        Sent(6, "firing", ("maya",)),
        Sent(9, "resolved", ("maya",)),
    ]
