"""Pending is the one alert state no table holds: the stage keeps it. What the dashboard
reads of it, and how its badges rank it against the stored states."""

from __future__ import annotations

from dataclasses import replace

from creatorpulse.web.dashboard import Dashboard
from streams.alerts.machine import CampaignAlerts
from streams.alerts.rules import Rules
from streams.alerts.stage import CampaignStage, PendingView
from tests.support.alert_table import CAMPAIGN, evaluation, minute

RULES = Rules()
HOT, COLD = 3.6, 1.0


def test_the_machine_lists_its_pending_creators_only() -> None:
    machine = CampaignAlerts(CAMPAIGN, RULES)
    machine.step(evaluation(minute(0), {"ana": HOT, "ben": HOT, "cai": COLD}, RULES))
    assert machine.pending() == ("ana", "ben")
    machine.step(evaluation(minute(1), {"ana": HOT, "ben": COLD, "cai": HOT}, RULES))
    # ana has held twice: firing, no longer pending; ben fell back; cai is new.
    assert machine.state_of("ana") == "firing"
    assert machine.pending() == ("cai",)


def test_the_view_covers_every_campaign_the_stage_holds() -> None:
    stages = {}
    for campaign, hot in (("spring", "ana"), ("autumn", "ben")):
        stage = CampaignStage(campaign, RULES)
        seen = replace(evaluation(minute(0), {hot: HOT}, RULES), campaign_id=campaign)
        stage.machine.step(seen)
        stages[campaign.encode()] = stage
    view = PendingView(stages)
    assert view.pending() == {("spring", "ana"): "pending", ("autumn", "ben"): "pending"}
    stages.clear()  # partitions revoked: nothing held here any more
    assert view.pending() == {}


def alert(campaign: str, creator: str, state: str) -> dict[str, str]:
    return {"campaign_id": campaign, "creator_id": creator, "state": state}


def test_badges_prefer_a_stored_firing_alert_and_show_pending_over_resolved() -> None:
    dashboard = Dashboard(
        None,
        pending=lambda: {("c", "a"): "pending", ("c", "b"): "pending", ("c", "d"): "pending"},
    )
    badges = dashboard.alert_states(
        [alert("c", "a", "firing"), alert("c", "b", "resolved"), alert("c", "e", "silenced")]
    )
    assert badges == {"c/a": "firing", "c/b": "pending", "c/d": "pending", "c/e": "silenced"}


def test_a_failing_view_leaves_the_stored_badges() -> None:
    def broken() -> dict[tuple[str, str], str]:
        raise RuntimeError("stage not started")

    dashboard = Dashboard(None, pending=broken)
    assert dashboard.alert_states([alert("c", "a", "resolved")]) == {"c/a": "resolved"}
