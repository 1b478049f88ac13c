"""PartitionState: the contract's counting rules, and exactness across crashes and replays."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from schemas.events import DecodedEvent, PostStatEvent
from streams.state import PartitionState, changelog_key
from tests.oracle import FIELDS, expected_totals

GRACE_S = 600
SIZES = (60, 3600)
T0 = 1_795_338_000_000  # 2026-11-22T09:00:00Z, on a window boundary
TOPIC = "post-stats"


def ev(event_id: str, ts: int, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": event_id,
        "ts": ts,
        "campaign_id": fields.pop("campaign_id", "spring"),
        "creator_id": fields.pop("creator_id", "alice"),
        "post_id": fields.pop("post_id", "p1"),
    }
    base.update(fields)
    return base


def model(data: dict[str, Any]) -> DecodedEvent:
    """The event as the worker holds it (validated by the contract model first)."""
    return DecodedEvent.from_model(PostStatEvent.model_validate(data))


def new_state() -> PartitionState:
    return PartitionState(0, window_sizes_s=SIZES, grace_s=GRACE_S)


def totals(state: PartitionState, size: int = 60) -> dict[int, dict[str, int]]:
    return {k[3]: dict(zip(FIELDS, v)) for k, v in state.windows.items() if k[2] == size and any(v)}


def test_deltas_add_up_in_their_event_time_windows() -> None:
    s = new_state()
    s.apply_record(TOPIC, 0, [model(ev("a", T0 + 1_000, views=10, likes=2))])
    s.apply_record(TOPIC, 1, [model(ev("b", T0 + 61_000, views=5))])
    s.apply_record(TOPIC, 2, [model(ev("c", T0 + 2_000, views=1))])  # out of order, on time
    got = totals(s)
    assert got[T0]["views"] == 11 and got[T0]["likes"] == 2
    assert got[T0 + 60_000]["views"] == 5
    assert totals(s, 3600)[T0]["views"] == 16


def test_the_same_event_id_counts_once() -> None:
    s = new_state()
    first = s.apply_record(TOPIC, 0, [model(ev("a", T0, views=10))])
    again = s.apply_record(TOPIC, 1, [model(ev("a", T0, views=10))])
    assert (first.counted, again.counted, again.duplicates) == (1, 0, 1)
    assert totals(s)[T0]["views"] == 10


def test_snapshots_become_deltas_and_stale_ones_add_nothing() -> None:
    s = new_state()
    snap = {"kind": "snapshot"}
    s.apply_record(TOPIC, 0, [model(ev("s1", T0, views=100, likes=10, **snap))])
    s.apply_record(TOPIC, 1, [model(ev("s2", T0 + 60_000, views=150, likes=9, **snap))])
    s.apply_record(TOPIC, 2, [model(ev("s3", T0 + 120_000, views=120, likes=12, **snap))])
    s.apply_record(TOPIC, 3, [model(ev("s4", T0 + 130_000, views=150, likes=12, **snap))])
    got = totals(s)
    assert got[T0] == {**dict.fromkeys(FIELDS, 0), "views": 100, "likes": 10}
    assert got[T0 + 60_000] == {**dict.fromkeys(FIELDS, 0), "views": 50}  # likes went down: 0
    assert got[T0 + 120_000] == {**dict.fromkeys(FIELDS, 0), "likes": 2}  # views stale: 0
    assert totals(s, 3600)[T0]["views"] == 150


def test_late_events_are_reported_and_not_counted() -> None:
    s = new_state()
    s.apply_record(TOPIC, 0, [model(ev("a", T0 + GRACE_S * 1000 + 5_000, views=1))])
    out = s.apply_record(
        TOPIC,
        1,
        [model(ev("on-time", T0 + 5_000, views=2)), model(ev("late", T0 + 4_999, views=3))],
    )
    assert out.late == [1] and out.counted == 1
    assert totals(s)[T0]["views"] == 2


def test_records_at_or_below_the_applied_offset_are_skipped() -> None:
    s = new_state()
    s.apply_record(TOPIC, 5, [model(ev("a", T0, views=1))])
    out = s.apply_record(TOPIC, 5, [model(ev("b", T0, views=1))])
    assert out.skipped and totals(s)[T0]["views"] == 1
    other = s.apply_record("rekeyed", 0, [model(ev("c", T0, views=1))])
    assert not other.skipped and totals(s)[T0]["views"] == 2


def test_flush_emits_full_window_totals_and_closes_old_windows() -> None:
    s = new_state()
    s.apply_record(TOPIC, 0, [model(ev("a", T0, views=4))])
    first = s.flush()
    s.confirm_durable()
    s.confirm_written(first.seq)
    assert {(r.window_size_s, r.window_start_ms, r.counts[0]) for r in first.rows} == {
        (60, T0, 4),
        (3600, T0, 4),
    }
    assert first.changelog[-1][0] == orjson.dumps([0, "c"])  # checkpoint is last
    s.apply_record(TOPIC, 1, [model(ev("b", T0 + 10, views=1))])
    second = s.flush()
    rows = {(r.window_size_s, r.window_start_ms): r for r in second.rows}
    s.confirm_durable()
    s.confirm_written(second.seq)
    assert rows[(60, T0)].counts[0] == 5 and rows[(60, T0)].version == 5
    # Far in the future: both windows are closed and leave memory.
    s.apply_record(TOPIC, 2, [model(ev("c", T0 + 2 * 3_600_000 + GRACE_S * 1000, views=1))])
    s.flush()
    s.confirm_durable()  # expiry waits for a durable checkpoint past the horizon
    closing = s.flush()
    deleted = {key for key, value in closing.changelog if value is None}
    assert changelog_key(0, "w", 60, T0, s._chunk("alice")) in deleted  # the minute's chunk
    assert (("spring", "alice", 60, T0)) not in s.windows


def test_dedup_ids_expire_with_the_grace_period() -> None:
    s = new_state()
    s.apply_record(TOPIC, 0, [model(ev("a", T0, views=1))])
    s.flush()
    s.apply_record(TOPIC, 1, [model(ev("b", T0 + GRACE_S * 1000 + 1, views=1))])
    s.flush()
    assert "a" in s.seen  # the checkpoint past the horizon is not durable yet
    s.confirm_durable()
    s.flush()
    assert "a" not in s.seen and "b" in s.seen


def test_baseline_totals_seed_a_window_once() -> None:
    key = ("spring", "alice", 60, T0)
    s = PartitionState(0, window_sizes_s=SIZES, grace_s=GRACE_S, baseline={key: [7] + [0] * 10})
    s.apply_record(TOPIC, 0, [model(ev("a", T0, views=1))])
    s.apply_record(TOPIC, 1, [model(ev("b", T0, views=1))])
    assert s.windows[key][0] == 9


def test_a_restore_from_a_complete_changelog_equals_the_state() -> None:
    s = new_state()
    log: dict[bytes, bytes | None] = {}
    for offset in range(20):
        kind = "snapshot" if offset % 3 == 0 else "delta"
        s.apply_record(
            TOPIC, offset, [model(ev(f"e{offset}", T0 + offset * 7_000, views=offset, kind=kind))]
        )
        if offset % 5 == 4:
            log.update(s.flush().changelog)
    log.update(s.flush().changelog)
    restored = PartitionState.restore(
        0, [(k, v) for k, v in log.items() if v is not None], window_sizes_s=SIZES, grace_s=GRACE_S
    )
    assert restored.windows == s.windows
    assert restored.posts == s.posts
    assert restored.seen == s.seen
    assert restored.offsets == s.offsets
    assert restored.watermark.value_ms == s.watermark.value_ms


# -- crash and replay -------------------------------------------------------------------


def random_stream(rng: random.Random, n: int) -> list[list[dict[str, Any]]]:
    """Records (lists of events) with duplicates, snapshots, disorder and late events."""
    records: list[list[dict[str, Any]]] = []
    clock = T0
    sent: list[dict[str, Any]] = []
    post_totals: dict[str, int] = {}
    for i in range(n):
        clock += rng.randint(0, 20_000)
        events = []
        for j in range(rng.choice([1, 1, 1, 3])):
            roll = rng.random()
            if roll < 0.1 and sent:
                events.append(dict(rng.choice(sent)))  # duplicate
                continue
            ts = clock - rng.choice([0, 0, 0, 30_000, 300_000, 700_000, 2_000_000])
            creator = rng.choice(["alice", "bob", "carol"])
            campaign = rng.choice(["spring", "summer"])
            if roll < 0.45:
                post = f"{creator}-p{rng.randint(1, 3)}"
                post_totals[post] = post_totals.get(post, 0) + rng.randint(-5, 40)
                e = ev(
                    f"s{i}.{j}",
                    ts,
                    kind="snapshot",
                    campaign_id=campaign,
                    creator_id=creator,
                    post_id=post,
                    views=max(0, post_totals[post]),
                    likes=rng.randint(0, 9),
                )
            else:
                e = ev(
                    f"d{i}.{j}",
                    ts,
                    campaign_id=campaign,
                    creator_id=creator,
                    views=rng.randint(0, 50),
                    clicks=rng.randint(0, 3),
                    revenue_cents=rng.randint(0, 999),
                )
            sent.append(e)
            events.append(e)
        records.append(events)
    return records


class FakeClickHouse:
    """ReplacingMergeTree(version) as seen through FINAL: the highest version wins."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, int, int], tuple[int, tuple[int, ...]]] = {}

    def write(self, rows: Any) -> None:
        for r in rows:
            key = (r.campaign_id, r.creator_id, r.window_size_s, r.window_start_ms)
            old = self.rows.get(key)
            if old is None or r.version >= old[0]:
                self.rows[key] = (r.version, r.counts)


def run_with_crashes(
    records: list[list[dict[str, Any]]], rng: random.Random, crashes: int
) -> FakeClickHouse:
    """Process records, flushing at random; crash `crashes` times at random points.

    A crash keeps a random prefix of the changelog sent since the last commit (Kafka keeps
    one partition in order), loses the rows not yet written to ClickHouse, and resumes
    from the last committed offset, as Faust would.
    """
    ch = FakeClickHouse()
    durable: dict[bytes, bytes | None] = {}  # the changelog's latest value per key
    in_flight: list[tuple[bytes, bytes | None]] = []  # sent, not yet known durable
    unwritten: list[tuple[int, list[Any]]] = []  # rows handed to the sink writer
    committed = 0  # next offset to consume after a restart
    crash_points = sorted(rng.sample(range(1, len(records)), crashes))
    state = PartitionState(0, window_sizes_s=SIZES, grace_s=GRACE_S)
    offset = 0
    while offset < len(records):
        if crash_points and offset == crash_points[0]:
            crash_points.pop(0)
            keep = rng.randint(0, len(in_flight))
            durable.update(in_flight[:keep])
            in_flight = []
            unwritten = []
            state = PartitionState.restore(
                0,
                [(k, v) for k, v in durable.items() if v is not None],
                window_sizes_s=SIZES,
                grace_s=GRACE_S,
            )
            unwritten.append((state.flush_seq, state.all_rows()))
            offset = committed
            continue
        state.apply_record(TOPIC, offset, [model(e) for e in records[offset]])
        offset += 1
        if rng.random() < 0.3:
            flushed = state.flush()
            unwritten.append((flushed.seq, flushed.rows))
            in_flight.extend(flushed.changelog)
            if rng.random() < 0.5:  # producer flush + offset commit
                durable.update(in_flight)
                in_flight = []
                state.confirm_durable()
                committed = offset
        if unwritten and rng.random() < 0.3:  # the sink writer catches up
            for _, rows in unwritten:
                ch.write(rows)
            state.confirm_written(unwritten[-1][0])
            unwritten = []
    for _, rows in unwritten:
        ch.write(rows)
    ch.write(state.flush().rows)
    return ch


@pytest.mark.parametrize("seed", range(200))
def test_crashes_and_replays_never_lose_or_double_count(seed: int) -> None:
    rng = random.Random(seed)
    records = random_stream(rng, 120)
    expected = expected_totals(
        (e for r in records for e in r), grace_s=GRACE_S, window_sizes_s=SIZES
    )
    ch = run_with_crashes(records, rng, crashes=rng.randint(1, 4))
    got = {k: list(v[1]) for k, v in ch.rows.items() if any(v[1])}
    assert got == expected.creator


@pytest.mark.parametrize("seed", range(60))
def test_crashes_are_exact_when_creators_share_changelog_chunks(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One chunk for everyone: a flush mixes windows that are ahead with ones that are not."""
    monkeypatch.setattr("streams.state.CHUNKS", 1)
    rng = random.Random(10_000 + seed)
    records = random_stream(rng, 120)
    expected = expected_totals(
        (e for r in records for e in r), grace_s=GRACE_S, window_sizes_s=SIZES
    )
    ch = run_with_crashes(records, rng, crashes=rng.randint(1, 4))
    assert {k: list(v[1]) for k, v in ch.rows.items() if any(v[1])} == expected.creator


def test_the_crash_harness_notices_a_broken_replay_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guard for the test above: if restore forgot which keys ran ahead, totals double."""
    original = PartitionState.restore.__func__  # type: ignore[attr-defined]

    def forgetful(cls: type[PartitionState], *args: Any, **kwargs: Any) -> PartitionState:
        state = original(cls, *args, **kwargs)
        state._ahead_windows.clear()
        return state

    monkeypatch.setattr(PartitionState, "restore", classmethod(forgetful))
    mismatches = 0
    for seed in range(40):
        rng = random.Random(seed)
        records = random_stream(rng, 120)
        expected = expected_totals(
            (e for r in records for e in r), grace_s=GRACE_S, window_sizes_s=SIZES
        )
        ch = run_with_crashes(records, rng, crashes=rng.randint(1, 4))
        mismatches += {k: list(v[1]) for k, v in ch.rows.items() if any(v[1])} != expected.creator
    assert mismatches > 0


@pytest.mark.parametrize("sizes", [(60,), (60, 90), (45, 300, 3600)])
def test_any_window_sizes_match_the_oracle(sizes: tuple[int, ...]) -> None:
    """Events are grouped by the gcd of the sizes; no size's boundary may split a group."""
    rng = random.Random(sum(sizes))
    records = random_stream(rng, 150)
    state = PartitionState(0, window_sizes_s=sizes, grace_s=GRACE_S)
    for offset, record in enumerate(records):
        state.apply_record(TOPIC, offset, [model(e) for e in record])
    expected = expected_totals(
        (e for r in records for e in r), grace_s=GRACE_S, window_sizes_s=sizes
    )
    assert {k: v for k, v in state.windows.items() if any(v)} == expected.creator


def test_changelog_records_stay_under_kafkas_size_limit() -> None:
    """A flush of 30k new ids and a flood of 1 MiB dead letters still fits in records."""
    from datetime import UTC, datetime

    from schemas.rows import DeadLetter

    s = new_state()
    for offset in range(30):
        batch = [model(ev(f"e{offset}-{i}", T0 + i, creator_id=f"c{i % 500}")) for i in range(1000)]
        s.apply_record(TOPIC, offset, batch)
    huge = b"[" + b"x" * (1024 * 1024 - 2) + b"]"
    s.add_dead_letters(
        DeadLetter(datetime.now(UTC), TOPIC, 0, 100 + i, 0, "bad_json: x", huge) for i in range(40)
    )
    flushed = s.flush()
    sizes = [len(k) + len(v or b"") for k, v in flushed.changelog]
    assert max(sizes) < 900 * 1024
    assert len(flushed.dead_letter_keys) == 5
    restored = PartitionState.restore(
        0, [(k, v) for k, v in flushed.changelog if v], window_sizes_s=SIZES, grace_s=GRACE_S
    )
    assert len(restored.seen) == 30_000
    assert sum(len(d) for d in restored.unwritten_dead_letters.values()) == 40
