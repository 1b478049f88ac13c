"""``PartitionState.apply_one`` (the single-event fast path) against ``apply_record``.

Any stream of single-event records (on time, late, from the future, duplicated,
snapshots, replayed offsets, counters near the bound) leaves the same state, the same
outcomes and the same flush through either path.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import DecodedEvent
from streams.state import PartitionState, RecordOutcome

T0 = 1_795_338_000_000
NOW = T0 + 3_600_000
TOPIC = "post-stats"
MAX_COUNT = 2**53


@st.composite
def records(draw: st.DrawFn) -> list[tuple[int, DecodedEvent]]:
    out = []
    offset = 0
    for i in range(draw(st.integers(min_value=1, max_value=40))):
        offset += draw(st.sampled_from([1, 1, 1, 0, -1]))  # some offsets read again
        event = DecodedEvent(
            event_id=f"e{draw(st.integers(min_value=0, max_value=i))}",  # duplicates
            kind=draw(st.sampled_from(["delta", "delta", "snapshot"])),
            # Some an hour late, some beyond the future skew.
            ts=T0 + draw(st.integers(min_value=-3_600_000, max_value=4_000_000)),
            campaign_id="spring",
            creator_id=draw(st.sampled_from(["alice", "bob"])),
            post_id=draw(st.sampled_from(["p1", "p2"])),
            views=draw(st.sampled_from([0, 1, 50, MAX_COUNT // 2 + 1, MAX_COUNT])),
            likes=draw(st.integers(min_value=0, max_value=3)),
        )
        out.append((max(offset, 0), event))
    return out


def state() -> PartitionState:
    return PartitionState(0, window_sizes_s=(60, 3600), grace_s=600, future_skew_s=300)


def view(outcome: RecordOutcome | None) -> Any:
    if outcome is None:
        return (1, 0, 0, 0, False, [])
    dead = list(outcome.dead_letters)
    return (
        outcome.counted,
        outcome.duplicates,
        outcome.late,
        outcome.invalid,
        outcome.skipped,
        dead,
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records())
def test_apply_one_leaves_what_apply_record_leaves(stream: list[tuple[int, DecodedEvent]]) -> None:
    fast, general = state(), state()
    for offset, event in stream:
        got = fast.apply_one(TOPIC, offset, event, now_ms=NOW)
        want = general.apply_record(TOPIC, offset, [event], now_ms=NOW)
        assert view(got) == view(want)
    assert fast.windows == general.windows
    assert fast.posts == general.posts
    assert fast.seen == general.seen
    assert fast.offsets == general.offsets
    assert fast.watermark == general.watermark
    a, b = fast.flush(), general.flush()
    assert a.changelog == b.changelog
    assert a.rows == b.rows
    assert a.dead_letters == b.dead_letters
