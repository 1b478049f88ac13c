"""The alert stage's counters, which the worker's /metrics reads: evaluations, alerts
fired and alerts firing now, by rule, counted from the steps of its state machines."""

from __future__ import annotations

from dataclasses import replace

from streams.alerts.machine import CampaignAlerts
from streams.alerts.rules import Rules
from streams.alerts.stage import CampaignStage, count_steps, firing_by_rule
from streams.observability import AlertStats
from tests.support.alert_table import CAMPAIGN, evaluation, minute

RULES = Rules()
HOT, WARM, COLD = 3.6, 2.5, 1.0


def test_firing_lists_firing_and_recovering_creators_not_pending_ones() -> None:
    machine = CampaignAlerts(CAMPAIGN, RULES)
    machine.step(evaluation(minute(0), {"ana": HOT, "ben": HOT}, RULES))
    assert machine.firing() == ()  # both pending
    machine.step(evaluation(minute(1), {"ana": HOT, "ben": COLD, "cai": HOT}, RULES))
    assert machine.firing() == ("ana",)
    machine.step(evaluation(minute(2), {"ana": COLD, "cai": HOT}, RULES))
    # ana recovers (below 2.0 once): still firing until it resolves.
    assert machine.state_of("ana") == "recovering"
    assert machine.firing() == ("ana", "cai")


def test_steps_count_evaluations_and_each_alert_fired_once() -> None:
    stats = AlertStats()
    machine = CampaignAlerts(CAMPAIGN, RULES)
    steps = [
        machine.step(evaluation(minute(m), {"ana": z}, RULES))
        for m, z in enumerate((HOT, HOT, WARM, HOT))
    ]
    steps.append(machine.step(evaluation(minute(1), {"ana": HOT}, RULES)))  # a replay
    count_steps(stats, steps)
    assert steps[-1].ignored
    assert stats.evaluations == 4  # the replayed minute is not an evaluation
    # Firing after two evaluations, and staying hot fires no second time.
    assert stats.fired_by_rule == {machine.rule: 1}


def test_firing_is_counted_over_every_campaign_the_stage_holds() -> None:
    stages = []
    for campaign, hot in (("spring", ("ana", "ben")), ("autumn", ("cai",))):
        stage = CampaignStage(campaign, RULES)
        for m in range(2):
            seen = {creator: HOT for creator in hot}
            stage.machine.step(replace(evaluation(minute(m), seen, RULES), campaign_id=campaign))
        stages.append(stage)
    rule = stages[0].machine.rule
    assert firing_by_rule(stages) == {rule: 3}
    assert firing_by_rule([CampaignStage("quiet", RULES)]) == {}
