"""PartitionState: the contract's counting rules, and exactness across crashes and replays."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from schemas.events import DecodedEvent, PostStatEvent
from schemas.metrics import MAX_COUNT
from sinks.memory import MemoryRowSink
from streams import changelog
from streams.changelog import MAX_CHANGELOG_VALUE, POSTS_PER_PIECE, WINDOWS_PER_PIECE, Pieces
from streams.state import PartitionState
from tests.support.oracle import FIELDS, expected_totals

GRACE_S = 600
SIZES = (60, 3600)
T0 = 1_795_338_000_000  # 2026-11-22T09:00:00Z, on a window boundary
TOPIC = "post-stats"
NOW = T0 + 30 * 86_400_000  # the worker's clock: every test event is in its past


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
    s.apply_record(TOPIC, 0, [model(ev("a", T0 + 1_000, views=10, likes=2))], now_ms=NOW)
    s.apply_record(TOPIC, 1, [model(ev("b", T0 + 61_000, views=5))], now_ms=NOW)
    s.apply_record(
        TOPIC, 2, [model(ev("c", T0 + 2_000, views=1))], now_ms=NOW
    )  # out of order, on time
    got = totals(s)
    assert got[T0]["views"] == 11
    assert got[T0]["likes"] == 2
    assert got[T0 + 60_000]["views"] == 5
    assert totals(s, 3600)[T0]["views"] == 16


def test_the_same_event_id_counts_once() -> None:
    s = new_state()
    first = s.apply_record(TOPIC, 0, [model(ev("a", T0, views=10))], now_ms=NOW)
    again = s.apply_record(TOPIC, 1, [model(ev("a", T0, views=10))], now_ms=NOW)
    assert (first.counted, again.counted, again.duplicates) == (1, 0, 1)
    assert totals(s)[T0]["views"] == 10


def test_snapshots_become_deltas_and_stale_ones_add_nothing() -> None:
    s = new_state()
    snap = {"kind": "snapshot"}
    s.apply_record(TOPIC, 0, [model(ev("s1", T0, views=100, likes=10, **snap))], now_ms=NOW)
    s.apply_record(TOPIC, 1, [model(ev("s2", T0 + 60_000, views=150, likes=9, **snap))], now_ms=NOW)
    s.apply_record(
        TOPIC, 2, [model(ev("s3", T0 + 120_000, views=120, likes=12, **snap))], now_ms=NOW
    )
    s.apply_record(
        TOPIC, 3, [model(ev("s4", T0 + 130_000, views=150, likes=12, **snap))], now_ms=NOW
    )
    got = totals(s)
    assert got[T0] == {**dict.fromkeys(FIELDS, 0), "views": 100, "likes": 10}
    assert got[T0 + 60_000] == {**dict.fromkeys(FIELDS, 0), "views": 50}  # likes went down: 0
    assert got[T0 + 120_000] == {**dict.fromkeys(FIELDS, 0), "likes": 2}  # views stale: 0
    assert totals(s, 3600)[T0]["views"] == 150


def test_late_events_are_reported_and_not_counted() -> None:
    s = new_state()
    s.apply_record(TOPIC, 0, [model(ev("a", T0 + GRACE_S * 1000 + 5_000, views=1))], now_ms=NOW)
    out = s.apply_record(
        TOPIC,
        1,
        [model(ev("on-time", T0 + 5_000, views=2)), model(ev("late", T0 + 4_999, views=3))],
        now_ms=NOW,
    )
    assert out.late == 1
    assert out.counted == 1
    (dead,) = out.dead_letters
    assert (dead.topic, dead.partition, dead.offset, dead.idx) == (TOPIC, 0, 1, 1)
    assert dead.reason.startswith("late: event time ")
    assert totals(s)[T0]["views"] == 2


def test_records_at_or_below_the_applied_offset_are_skipped() -> None:
    s = new_state()
    s.apply_record(TOPIC, 5, [model(ev("a", T0, views=1))], now_ms=NOW)
    out = s.apply_record(TOPIC, 5, [model(ev("b", T0, views=1))], now_ms=NOW)
    assert out.skipped
    assert totals(s)[T0]["views"] == 1
    other = s.apply_record("rekeyed", 0, [model(ev("c", T0, views=1))], now_ms=NOW)
    assert not other.skipped
    assert totals(s)[T0]["views"] == 2


def test_flush_emits_full_window_totals_and_closes_old_windows() -> None:
    s = new_state()
    s.apply_record(TOPIC, 0, [model(ev("a", T0, views=4))], now_ms=NOW)
    first = s.flush()
    s.confirm_durable()
    s.confirm_written(first.seq)
    assert {(r.window_size_s, r.window_start_ms, r.counts[0]) for r in first.rows} == {
        (60, T0, 4),
        (3600, T0, 4),
    }
    assert first.changelog[-1][0] == orjson.dumps([0, "c"])  # checkpoint is last
    s.apply_record(TOPIC, 1, [model(ev("b", T0 + 10, views=1))], now_ms=NOW)
    second = s.flush()
    rows = {(r.window_size_s, r.window_start_ms): r for r in second.rows}
    s.confirm_durable()
    s.confirm_written(second.seq)
    assert rows[(60, T0)].counts[0] == 5
    assert rows[(60, T0)].version == 5
    # Far in the future: both windows are closed and leave memory.
    s.apply_record(
        TOPIC, 2, [model(ev("c", T0 + 2 * 3_600_000 + GRACE_S * 1000, views=1))], now_ms=NOW
    )
    s.flush()
    s.confirm_durable()  # expiry waits for a durable checkpoint past the horizon
    closing = s.flush()
    deleted = {key for key, value in closing.changelog if value is None}
    assert changelog.key(0, changelog.WINDOWS, 60, T0, 0) in deleted  # the minute's first piece
    assert (("spring", "alice", 60, T0)) not in s.windows


def test_dedup_ids_expire_with_the_grace_period() -> None:
    s = new_state()
    s.apply_record(TOPIC, 0, [model(ev("a", T0, views=1))], now_ms=NOW)
    s.flush()
    s.apply_record(TOPIC, 1, [model(ev("b", T0 + GRACE_S * 1000 + 1, views=1))], now_ms=NOW)
    s.flush()
    assert "a" in s.seen  # the checkpoint past the horizon is not durable yet
    s.confirm_durable()
    s.flush()
    assert "a" not in s.seen
    assert "b" in s.seen


def test_baseline_totals_seed_a_window_once() -> None:
    key = ("spring", "alice", 60, T0)
    s = PartitionState(0, window_sizes_s=SIZES, grace_s=GRACE_S, baseline={key: [7] + [0] * 10})
    s.apply_record(TOPIC, 0, [model(ev("a", T0, views=1))], now_ms=NOW)
    s.apply_record(TOPIC, 1, [model(ev("b", T0, views=1))], now_ms=NOW)
    assert s.windows[key][0] == 9


def test_a_restore_from_a_complete_changelog_equals_the_state() -> None:
    s = new_state()
    log: dict[bytes, bytes | None] = {}
    for offset in range(20):
        kind = "snapshot" if offset % 3 == 0 else "delta"
        s.apply_record(
            TOPIC,
            offset,
            [model(ev(f"e{offset}", T0 + offset * 7_000, views=offset, kind=kind))],
            now_ms=NOW,
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


def run_with_crashes(
    records: list[list[dict[str, Any]]], rng: random.Random, crashes: int
) -> MemoryRowSink:
    """Process records, flushing at random; crash `crashes` times at random points.

    A crash keeps a random prefix of the changelog sent since the last commit (Kafka keeps
    one partition in order), loses the rows not yet written to ClickHouse, and resumes
    from the last committed offset, as Faust would.
    """
    ch = MemoryRowSink()  # ReplacingMergeTree(version) as FINAL shows it
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
        state.apply_record(TOPIC, offset, [model(e) for e in records[offset]], now_ms=NOW)
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
                ch.write_creator_windows(rows)
            state.confirm_written(unwritten[-1][0])
            unwritten = []
    for _, rows in unwritten:
        ch.write_creator_windows(rows)
    ch.write_creator_windows(state.flush().rows)
    return ch


@pytest.mark.parametrize("seed", range(200))
def test_crashes_and_replays_never_lose_or_double_count(seed: int) -> None:
    rng = random.Random(seed)
    records = random_stream(rng, 120)
    expected = expected_totals(
        (e for r in records for e in r), grace_s=GRACE_S, window_sizes_s=SIZES
    )
    ch = run_with_crashes(records, rng, crashes=rng.randint(1, 4))
    got = {k: list(v.counts) for k, v in ch.windows.items() if any(v.counts)}
    assert got == expected.creator


@pytest.mark.parametrize("seed", range(60))
def test_crashes_are_exact_when_creators_share_changelog_chunks(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pieces of two: a flush writes many pieces, and crashes keep any prefix of them."""
    monkeypatch.setattr("streams.state.WINDOWS_PER_PIECE", 2)
    monkeypatch.setattr("streams.state.POSTS_PER_PIECE", 2)
    rng = random.Random(10_000 + seed)
    records = random_stream(rng, 120)
    expected = expected_totals(
        (e for r in records for e in r), grace_s=GRACE_S, window_sizes_s=SIZES
    )
    ch = run_with_crashes(records, rng, crashes=rng.randint(1, 4))
    assert {k: list(v.counts) for k, v in ch.windows.items() if any(v.counts)} == expected.creator


def test_the_crash_harness_notices_a_broken_replay_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guard for the test above: if restore forgot which keys ran ahead, totals double."""
    original = PartitionState.restore.__func__  # type: ignore[attr-defined]

    def forgetful(cls: type[PartitionState], *args: Any, **kwargs: Any) -> PartitionState:
        state: PartitionState = original(cls, *args, **kwargs)
        state._ahead_windows.clear()  # noqa: SLF001 - breaks the rule on purpose
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
        got = {k: list(v.counts) for k, v in ch.windows.items() if any(v.counts)}
        mismatches += got != expected.creator
    assert mismatches > 0


@pytest.mark.parametrize("sizes", [(60,), (60, 90), (45, 300, 3600)])
def test_any_window_sizes_match_the_oracle(sizes: tuple[int, ...]) -> None:
    """Events are grouped by the gcd of the sizes; no size's boundary may split a group."""
    rng = random.Random(sum(sizes))
    records = random_stream(rng, 150)
    state = PartitionState(0, window_sizes_s=sizes, grace_s=GRACE_S)
    for offset, record in enumerate(records):
        state.apply_record(TOPIC, offset, [model(e) for e in record], now_ms=NOW)
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
        s.apply_record(TOPIC, offset, batch, now_ms=NOW)
    huge = b"[" + b"x" * (1024 * 1024 - 2) + b"]"
    s.add_dead_letters(
        DeadLetter(datetime.now(UTC), TOPIC, 0, 100 + i, 0, "bad_json: x", huge) for i in range(40)
    )
    flushed = s.flush()
    sizes = [len(k) + len(v or b"") for k, v in flushed.changelog]
    assert max(sizes) < 900 * 1024
    assert len(flushed.dead_letter_keys) >= 5
    restored = PartitionState.restore(
        0, [(k, v) for k, v in flushed.changelog if v], window_sizes_s=SIZES, grace_s=GRACE_S
    )
    assert len(restored.seen) == 30_000
    assert sum(len(d) for d in restored.unwritten_dead_letters.values()) == 40


# -- every changelog record fits Kafka's limit by construction (issue 8, finding 1) -------

WORST_ID = "\x01" * 128  # 128 characters, each escaped to six bytes in JSON
LONG_TOPIC = "t" * 249  # the longest topic name Kafka allows


def test_worst_case_window_and_post_pieces_fit_the_changelog_limit() -> None:
    s = PartitionState(0, window_sizes_s=SIZES, grace_s=GRACE_S)
    big = MAX_COUNT // 2
    for offset in range(1_000):
        e = ev(
            f"{WORST_ID[:120]}{offset:08d}",
            T0,
            kind="snapshot",
            campaign_id=WORST_ID,
            creator_id=f"{WORST_ID[:120]}{offset:08d}",
            post_id=WORST_ID,
            **{metric: big for metric in FIELDS},
        )
        s.apply_record(LONG_TOPIC, offset, [model(e)], now_ms=NOW)
    # A second source topic with a huge offset makes every marker as long as it gets.
    s.apply_record(LONG_TOPIC.replace("t", "u"), 2**62, [], now_ms=NOW)
    flushed = s.flush()
    windows = [v for k, v in flushed.changelog if b'"w"' in k and v]
    posts = [v for k, v in flushed.changelog if b'"p"' in k and v]
    assert len(windows) >= 2 * 1_000 // WINDOWS_PER_PIECE
    assert len(posts) >= 1_000 // POSTS_PER_PIECE
    assert max(len(v) for v in windows + posts) <= MAX_CHANGELOG_VALUE
    assert max(len(k) + len(v or b"") for k, v in flushed.changelog) <= MAX_CHANGELOG_VALUE + 100


def test_twelve_thousand_long_cyrillic_ids_fit_the_changelog_limit() -> None:
    # These made a 1.35 MB dedup record that crash-looped the worker twice in a row.
    s = new_state()
    records = [
        [model(ev("Ж" * 120 + f"{r:04d}{i:04d}", T0 + i, views=1)) for i in range(100)]
        for r in range(120)
    ]
    for offset, record in enumerate(records):
        s.apply_record(TOPIC, offset, record, now_ms=NOW)
    flushed = s.flush()
    assert max(len(v or b"") for _, v in flushed.changelog) <= MAX_CHANGELOG_VALUE
    restored = PartitionState.restore(
        0, [(k, v) for k, v in flushed.changelog if v], window_sizes_s=SIZES, grace_s=GRACE_S
    )
    assert len(restored.seen) == 12_000


def test_dead_letters_of_control_bytes_fit_the_changelog_limit() -> None:
    # Eight of these shared one 2.9 MB changelog record once escaped.
    from datetime import UTC, datetime

    from schemas.rows import DeadLetter

    s = new_state()
    control = b"\x01" * 60_000
    s.add_dead_letters(
        DeadLetter(datetime.now(UTC), TOPIC, 0, i, 0, "bad_json: x", control) for i in range(40)
    )
    flushed = s.flush()
    assert max(len(v or b"") for _, v in flushed.changelog) <= MAX_CHANGELOG_VALUE
    restored = PartitionState.restore(
        0, [(k, v) for k, v in flushed.changelog if v], window_sizes_s=SIZES, grace_s=GRACE_S
    )
    letters = [d for group in restored.unwritten_dead_letters.values() for d in group]
    assert sorted(d.offset for d in letters) == list(range(40))
    assert all(d.payload == control for d in letters)


def test_window_pieces_fill_in_order_and_keep_their_keys_across_a_restore(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("streams.state.WINDOWS_PER_PIECE", 2)
    s = new_state()
    for offset, creator in enumerate("abcde"):
        s.apply_record(
            TOPIC, offset, [model(ev(creator, T0, creator_id=creator, views=1))], now_ms=NOW
        )
    changelog = [(k, v) for k, v in s.flush().changelog if v]

    def pieces_of(log: list[tuple[bytes, bytes]]) -> dict[str, int]:
        return {
            entry[1]: key[4]
            for raw_key, value in log
            for key in [orjson.loads(raw_key)]
            if key[1] == "w" and key[2] == 60
            for entry in orjson.loads(value)["w"]
        }

    assert pieces_of(changelog) == {"a": 0, "b": 0, "c": 1, "d": 1, "e": 2}
    restored = PartitionState.restore(0, changelog, window_sizes_s=SIZES, grace_s=GRACE_S)
    restored.apply_record(TOPIC, 5, [model(ev("f", T0, creator_id="f", views=1))], now_ms=NOW)
    restored.apply_record(TOPIC, 6, [model(ev("a2", T0, creator_id="a", views=2))], now_ms=NOW)
    again = [(k, v) for k, v in restored.flush().changelog if v]
    assert pieces_of(again) == {"a": 0, "b": 0, "e": 2, "f": 2}  # only the pieces that changed


def test_pieces_reuse_the_room_that_forgotten_keys_left() -> None:
    pieces = Pieces[str](2)
    pieces.of("kept-0", 0)  # found in piece 0 at restore
    pieces.of("kept-1", 1)
    pieces.of("kept-1b", 1)
    assert [pieces.of(k) for k in ("new-1", "new-2", "new-3")] == [0, 2, 2]
    assert pieces.of("kept-1") == 1


# -- bounds on event time and totals (issue 8, findings 2 and 4) ------------------------


def test_an_event_from_the_future_is_refused_and_never_moves_the_watermark() -> None:
    # One event a year ahead made every later event on its partition late, for good.
    s = new_state()
    year_ahead = ev("future", T0 + 365 * 86_400_000, views=1_000)
    out = s.apply_record(TOPIC, 0, [model(year_ahead)], now_ms=T0)
    assert out.counted == 0
    assert out.invalid == 1
    assert s.watermark.value_ms is None
    (dead,) = out.dead_letters
    assert dead.reason.startswith("invalid: ts: ")
    assert "in the future" in dead.reason
    for offset in range(1, 205):
        later = s.apply_record(TOPIC, offset, [model(ev(f"e{offset}", T0, views=1))], now_ms=T0)
        assert later.counted == 1
        assert not later.dead_letters
    assert totals(s)[T0]["views"] == 204
    restored = PartitionState.restore(
        0, [(k, v) for k, v in s.flush().changelog if v], window_sizes_s=SIZES, grace_s=GRACE_S
    )
    assert restored.watermark.value_ms == T0


def test_the_allowed_skew_is_counted_and_one_millisecond_past_it_is_not() -> None:
    s = PartitionState(0, window_sizes_s=SIZES, grace_s=GRACE_S, future_skew_s=300)
    batch = [
        model(ev("edge", T0 + 300_000, views=1)),
        model(ev("past-edge", T0 + 300_001, views=1)),
        model(ev("now", T0, views=1)),
    ]
    out = s.apply_record(TOPIC, 0, batch, now_ms=T0, positions=[4, 7, 9])
    assert out.counted == 2
    assert [d.idx for d in out.dead_letters] == [7]  # its place in the record


def test_a_window_total_never_passes_2_to_the_53() -> None:
    # 200 events at the per-event cap made a version over 2^64 and wedged the sink.
    s = new_state()
    for offset in range(200):
        s.apply_record(TOPIC, offset, [model(ev(f"big{offset}", T0, views=MAX_COUNT))], now_ms=NOW)
    views = totals(s)[T0]["views"]
    assert views == MAX_COUNT
    row = next(r for r in s.flush().rows if r.window_size_s == 60)
    assert row.version < 2**64
    s2 = new_state()
    reasons = [
        d.reason
        for offset in range(3)
        for d in s2.apply_record(
            TOPIC, offset, [model(ev(f"b{offset}", T0, views=MAX_COUNT))], now_ms=NOW
        ).dead_letters
    ]
    assert len(reasons) == 2
    assert all(r.startswith("invalid: views: ") for r in reasons)


def test_a_record_that_would_pass_the_bound_refuses_only_the_events_that_do() -> None:
    s = new_state()
    s.apply_record(TOPIC, 0, [model(ev("base", T0, views=MAX_COUNT - 10))], now_ms=NOW)
    batch = [
        model(ev("small", T0 + 1, views=4)),
        model(ev("huge", T0 + 2, views=MAX_COUNT)),
        model(ev("fits", T0 + 3, views=6)),
        model(ev("one-too-many", T0 + 4, views=1, likes=3)),
    ]
    out = s.apply_record(TOPIC, 1, batch, now_ms=NOW)
    assert out.counted == 2
    assert out.invalid == 2
    assert [d.idx for d in out.dead_letters] == [1, 3]
    assert totals(s)[T0]["views"] == MAX_COUNT
    assert totals(s)[T0]["likes"] == 0


def test_dedup_ids_and_windows_leave_memory_by_event_time_in_a_steady_stream() -> None:
    # Issue 8, finding 12: memory must level off once the grace period has passed.
    s = new_state()
    per_second, seconds = 5, 3 * GRACE_S
    sizes: list[tuple[int, int]] = []
    for second in range(seconds):
        events = [
            model(ev(f"e{second}-{i}", T0 + second * 1000 + i, creator_id=f"c{i}", views=1))
            for i in range(per_second)
        ]
        s.apply_record(TOPIC, second, events, now_ms=NOW)
        if second % 10 == 9:  # a flush every 10 s of event time, durable and written
            s.flush()
            s.confirm_durable()
            s.confirm_written(s.flush_seq)
            sizes.append((len(s.seen), len(s.windows)))
    late_ids = [ids for ids, _ in sizes[len(sizes) // 2 :]]
    late_windows = [windows for _, windows in sizes[len(sizes) // 2 :]]
    # Ids of at most grace + two flush intervals; windows of the minutes within grace.
    assert max(late_ids) <= per_second * (GRACE_S + 20)
    assert max(late_windows) <= per_second * (GRACE_S // 60 + 3 + 2)
    assert max(late_ids) - min(late_ids) <= per_second * 20  # flat, not growing
