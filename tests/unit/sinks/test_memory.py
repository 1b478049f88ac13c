"""The shipped in-memory sink keeps what a ClickHouse store shows through FINAL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.metrics import METRICS
from schemas.reference import CampaignContract, CreatorProfile
from schemas.rows import CreatorWindowRow, DeadLetter
from sinks.base import Refused
from sinks.memory import MemoryRowSink

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
T0_MS = 1_795_338_000_000


def row(creator: str, views: int, start_ms: int = T0_MS) -> CreatorWindowRow:
    return CreatorWindowRow("camp", creator, 60, start_ms, (views,) + (0,) * (len(METRICS) - 1))


def test_the_highest_version_of_a_window_wins_whatever_the_order() -> None:
    sink = MemoryRowSink()
    sink.write_creator_windows([row("a", 5), row("b", 1)])
    sink.write_creator_windows([row("a", 3)])  # an older version, written late
    sink.write_creator_windows([row("a", 9), row("b", 1, T0_MS + 60_000)])
    assert [(r.creator_id, r.window_start_ms, r.counts[0]) for r in sink.rows()] == [
        ("a", T0_MS, 9),
        ("b", T0_MS, 1),
        ("b", T0_MS + 60_000, 1),
    ]
    assert sink.windows[("camp", "a", 60, T0_MS)].counts[0] == 9


def test_dead_letters_collapse_by_identity_and_reference_data_by_key() -> None:
    sink = MemoryRowSink()
    first = DeadLetter(NOW, "post-stats", 2, 41, 0, "bad_json: x", b"{")
    again = DeadLetter(NOW, "post-stats", 2, 41, 0, "bad_json: y", b"{")
    other = DeadLetter(NOW, "post-stats", 2, 41, 1, "invalid: ts", b"{}")
    sink.write_dead_letters([first, other])
    sink.write_dead_letters([again])  # a replay of the same element
    assert sink.dead_letters == [again, other]

    sink.write_profiles([CreatorProfile(creator_id="c", follower_count=10)])
    sink.write_profiles([CreatorProfile(creator_id="c", follower_count=20)])
    sink.write_contracts([CampaignContract(campaign_id="camp", creator_id="c", fee=1.0)])
    sink.write_contracts([CampaignContract(campaign_id="camp", creator_id="c", fee=2.0)])
    assert [p.follower_count for p in sink.profiles] == [20]
    assert [c.fee for c in sink.contracts] == [2.0]


def test_a_refused_row_refuses_its_whole_call_and_keeps_nothing_of_it() -> None:
    sink = MemoryRowSink(refuse_windows=lambda r: "too many" if r.counts[0] > 100 else None)
    with pytest.raises(Refused) as refused:
        sink.write_creator_windows([row("a", 1), row("b", 101)])
    assert (refused.value.table, refused.value.detail) == ("creator_metrics", "too many")
    assert sink.rows() == []
    sink.write_creator_windows([row("a", 1)])
    assert [r.creator_id for r in sink.rows()] == ["a"]
    assert sink.calls["creator_metrics"] == 2


def test_an_outage_fails_the_next_calls_then_the_store_is_back() -> None:
    sink = MemoryRowSink(outages=2)
    with pytest.raises(ConnectionError):
        sink.write_creator_windows([row("a", 1)])
    with pytest.raises(ConnectionError):
        sink.write_dead_letters([DeadLetter(NOW, "post-stats", 0, 1, 0, "bad_json", b"{")])
    assert sink.rows() == []
    assert sink.dead_letters == []
    sink.write_creator_windows([row("a", 1)])
    assert [r.creator_id for r in sink.rows()] == ["a"]
    assert (sink.calls["creator_metrics"], sink.calls["dead_letters"]) == (2, 1)
