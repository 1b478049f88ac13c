"""The campaign stage: window rows in, one alert for the planted creator, none for the tiny."""

from __future__ import annotations

from schemas.metrics import METRICS
from schemas.rows import CreatorWindowRow
from streams.alerts.rules import load_rules
from streams.alerts.stage import CampaignStage, Reference

T0 = 1_795_338_000_000
RULES = load_rules()
REFS = {f"c{i}": Reference("micro") for i in range(7)}


def row(creator: str, minute: int, views: int, likes: int) -> CreatorWindowRow:
    counts = [0] * len(METRICS)
    counts[METRICS.index("views")] = views
    counts[METRICS.index("likes")] = likes
    return CreatorWindowRow("camp", creator, 60, T0 + minute * 60_000, tuple(counts))


def minute_rows(minute: int) -> list[CreatorWindowRow]:
    cohort = [row(f"c{i}", minute, 2000, 140 + 3 * i) for i in range(7)]
    return [*cohort, row("hot", minute, 2000, 500), row("tiny", minute, 20, 15)]


def run(stage: CampaignStage, minutes: range) -> list[str]:
    fired = []
    for m in minutes:
        stage.add(minute_rows(m))
        fired += [a.creator_id for s in stage.advance(REFS) for a in s.fired]
    return fired


def test_planted_fires_once_and_tiny_never() -> None:
    assert run(CampaignStage("camp", RULES), range(12)) == ["hot"]


def test_restored_state_and_late_revisions_do_not_refire() -> None:
    stage = CampaignStage("camp", RULES)
    assert run(stage, range(6)) == ["hot"]
    restored = CampaignStage.from_bytes(stage.to_bytes(), RULES)
    restored.add([row("hot", 2, 5000, 2000)])  # a late revision of an evaluated minute
    assert run(restored, range(6, 10)) == []
    assert restored.machine.state_of("hot") == "firing"
