"""Properties of ``streams.state.PartitionState`` over generated streams (hypothesis).

Any valid stream (deltas, snapshots, duplicates, single-event and batch records),
delivered in any order within the grace period, and restored from its changelog at any
point, gives the totals the independent oracle gives for that order; and every order
gives the same totals where the contract says order cannot matter.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import DecodedEvent, PostStatEvent
from streams.state import PartitionState
from tests.support.oracle import FIELDS, expected_totals

GRACE_S = 600
SIZES = (60, 3600)
T0 = 1_795_338_000_000  # 2026-11-22T09:00:00Z
NOW = T0 + 30 * 86_400_000  # the worker's clock: every event is in its past
TOPIC = "post-stats"
MAX_COUNT = 2**53

EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def valid_events(draw: st.DrawFn, *, max_count: int = 50) -> list[dict[str, Any]]:
    """Events within one grace period (so no order makes any late), a few duplicated."""
    n = draw(st.integers(min_value=1, max_value=40))
    events = []
    for i in range(n):
        creator = draw(st.sampled_from(["alice", "bob", "карина"]))
        event: dict[str, Any] = {
            "event_id": f"e{i}",
            "ts": T0 + draw(st.integers(min_value=0, max_value=GRACE_S * 1000 - 1)),
            "campaign_id": draw(st.sampled_from(["spring", "summer"])),
            "creator_id": creator,
            "post_id": f"{creator}-{draw(st.integers(min_value=1, max_value=2))}",
        }
        if draw(st.integers(min_value=0, max_value=3)) == 0:
            event["kind"] = "snapshot"
        for name in ("views", "likes", "watch_time_ms", "revenue_cents"):
            event[name] = draw(st.integers(min_value=0, max_value=max_count))
        events.append(event)
    copies = draw(st.lists(st.sampled_from(events), max_size=5))
    return events + [dict(e) for e in copies]


def decoded(event: dict[str, Any]) -> DecodedEvent:
    return DecodedEvent.from_model(PostStatEvent.model_validate(event))


def run(
    records: list[list[dict[str, Any]]],
    restore_after: set[int] = frozenset(),  # type: ignore[assignment]
) -> tuple[dict[tuple[str, str, int, int], list[int]], list[tuple[str, str]]]:
    """Apply ``records`` in order, flushing after each and restoring a new state from the
    changelog after the records numbered in ``restore_after``; the final windows, and the
    dead letters as (event id, reason)."""
    state = PartitionState(0, window_sizes_s=SIZES, grace_s=GRACE_S)
    changelog: dict[bytes, bytes | None] = {}
    reasons: list[tuple[str, str]] = []
    for offset, record in enumerate(records):
        outcome = state.apply_record(TOPIC, offset, [decoded(e) for e in record], now_ms=NOW)
        reasons += [(orjson.loads(d.payload)["event_id"], d.reason) for d in outcome.dead_letters]
        flushed = state.flush()
        changelog.update(flushed.changelog)
        state.confirm_durable()
        if offset in restore_after:
            state = PartitionState.restore(
                0,
                [(k, v) for k, v in changelog.items() if v is not None],
                window_sizes_s=SIZES,
                grace_s=GRACE_S,
            )
    return {k: v for k, v in state.windows.items() if any(v)}, reasons


@st.composite
def delivered(
    draw: st.DrawFn, *, max_count: int = 50, batches: bool = True
) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]], set[int]]:
    """A stream, one order of it cut into records, and where to restore in between."""
    events = draw(valid_events(max_count=max_count))
    order = draw(st.permutations(events))
    records: list[list[dict[str, Any]]] = []
    rest = list(order)
    while rest:
        size = draw(st.integers(min_value=1, max_value=5)) if batches else 1
        records.append(rest[:size])
        rest = rest[size:]
    restores = draw(st.sets(st.integers(min_value=0, max_value=len(records) - 1), max_size=3))
    return events, records, restores


@EXAMPLES
@given(delivered())
def test_any_order_within_grace_gives_the_oracles_totals(
    case: tuple[list[dict[str, Any]], list[list[dict[str, Any]]], set[int]],
) -> None:
    _, records, restores = case
    windows, dead = run(records, restores)
    expected = expected_totals(
        [e for record in records for e in record], grace_s=GRACE_S, window_sizes_s=SIZES
    )
    assert windows == expected.creator
    assert dead == []
    assert expected.late_ids == []


def totals_per_creator(windows: dict[tuple[str, str, int, int], list[int]]) -> dict[Any, list[int]]:
    out: dict[Any, list[int]] = defaultdict(lambda: [0] * len(FIELDS))
    for (campaign, creator, size, _), counts in windows.items():
        acc = out[(campaign, creator, size)]
        for i, value in enumerate(counts):
            acc[i] += value
    return dict(out)


@EXAMPLES
@given(delivered(), st.randoms(use_true_random=False))
def test_every_order_gives_the_same_totals(
    case: tuple[list[dict[str, Any]], list[list[dict[str, Any]]], set[int]], rng: Any
) -> None:
    """Deltas land in their own windows whatever the order; a post's snapshots add up to
    its highest totals whatever the order (only which window holds each step may move)."""
    events, records, restores = case
    windows, _ = run(records, restores)
    in_publish_order, _ = run([[e] for e in events])
    assert totals_per_creator(windows) == totals_per_creator(in_publish_order)
    deltas = [e for e in events if e.get("kind", "delta") == "delta"]
    shuffled = list(deltas)
    rng.shuffle(shuffled)
    assert run([[e] for e in shuffled])[0] == run([[e] for e in deltas])[0]


@EXAMPLES
@given(delivered(max_count=MAX_COUNT, batches=False))
def test_at_the_counter_bound_the_oracle_and_the_state_refuse_the_same_events(
    case: tuple[list[dict[str, Any]], list[list[dict[str, Any]]], set[int]],
) -> None:
    _, records, restores = case
    windows, dead = run(records, restores)
    expected = expected_totals(
        [e for record in records for e in record], grace_s=GRACE_S, window_sizes_s=SIZES
    )
    assert windows == expected.creator
    assert all(max(v) <= MAX_COUNT for v in windows.values())
    assert [event_id for event_id, _ in dead] == [event_id for event_id, _ in expected.over_bound]
    # Which counter a reason names may differ when several pass at once: any of them is right.
    assert all(reason.split(":")[1].strip() in FIELDS for _, reason in dead)


def test_a_batch_at_the_bound_refuses_its_events_in_record_order() -> None:
    half = 2**52
    batch = [
        {"event_id": "e1", "ts": T0, "views": half},
        {"event_id": "e2", "ts": T0 + 60_000, "views": half},
        {"event_id": "e3", "ts": T0 + 1, "views": half},
    ]
    events = [{"campaign_id": "c", "creator_id": "k", "post_id": "p", **e} for e in batch]
    windows, _ = run([events])
    expected = expected_totals(events, grace_s=GRACE_S, window_sizes_s=SIZES)
    assert expected.over_bound == [("e3", "views")]
    assert windows == expected.creator
