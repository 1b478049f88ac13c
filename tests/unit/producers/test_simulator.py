"""The campaign simulator: deterministic, realistic, and honest about its anomalies.

The checks on figures (tiers, engagement bands) are computed here from the records,
and the anomaly labels are checked against the independent oracle in
``tests/support/oracle.py``: the simulator itself never computes pipeline results.
"""

from __future__ import annotations

import math
import pickle
import statistics
import threading
import time
from collections import Counter, defaultdict
from dataclasses import FrozenInstanceError, dataclass, field
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from producers.loops import simulate
from producers.publisher import PublisherStats
from producers.simulator import (
    TIER_SPECS,
    CampaignSimulator,
    SimRecord,
    SimulationConfig,
)
from schemas.events import DecodedEvent, decode_record
from schemas.metrics import METRICS
from schemas.reference import tier_for
from tests.support.oracle import expected_totals

T0 = 1_795_338_000_000  # 2026-11-22T09:00:00Z
GRACE_S = 600
ANOMALIES: dict[str, Any] = {
    "duplicate_rate": 0.03,
    "late_rate": 0.03,
    "bad_rate": 0.03,
    "stale_rate": 0.08,
}


def run(sim: CampaignSimulator, seconds: float, tick_s: float = 1.0) -> list[SimRecord]:
    """Tick the simulator through ``seconds`` of simulated time from T0."""
    out = sim.tick(T0, 0.0)
    now = T0
    end = T0 + int(seconds * 1000)
    step = int(tick_s * 1000)
    while now < end:
        nxt = min(now + step, end)
        out += sim.tick(nxt, (nxt - now) / 1000)
        now = nxt
    return out


def sim_for(**kwargs: Any) -> CampaignSimulator:
    return CampaignSimulator(SimulationConfig(**kwargs))


def fingerprint(records: list[SimRecord]) -> list[tuple[Any, ...]]:
    return [(r.key, r.value, r.timestamp_ms, r.label) for r in records]


def event_dicts(records: list[SimRecord]) -> list[dict[str, Any]]:
    """Valid events as the oracle wants them (epoch-ms ``ts``), in publish order."""
    return [r.event.model_dump() for r in records if r.event is not None]


# -- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"campaigns": 0},
        {"creators_per_campaign": 0},
        {"posts_per_creator": 0},
        {"mode": "webhook"},
        {"duplicate_rate": 1.5},
        {"late_rate": -0.1},
        {"poll_interval_s": 0},
        {"grace_s": -1},
        {"tier_mix": ()},
        {"tier_mix": (("giga", 1.0),)},
        {"tier_mix": (("micro", 0.0),)},
        {"outperformers_per_campaign": -1},
        {"run_id": ""},
    ],
)
def test_invalid_configurations_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case refuses another field
        SimulationConfig(**kwargs)


def test_tick_refuses_negative_durations_and_rates() -> None:
    sim = sim_for()
    with pytest.raises(ValueError, match="dt_s must be >= 0"):
        sim.tick(T0, -1.0)
    with pytest.raises(ValueError, match="rate_scale must be > 0"):
        sim.tick(T0, 1.0, rate_scale=0)


# -- determinism -----------------------------------------------------------------------


def test_the_same_seed_gives_the_same_cast_and_records() -> None:
    a = sim_for(seed=3, **ANOMALIES)
    b = sim_for(seed=3, **ANOMALIES)
    assert a.profiles() == b.profiles()
    assert a.contracts() == b.contracts()
    assert fingerprint(run(a, 1800)) == fingerprint(run(b, 1800))


def test_another_seed_gives_other_creators_and_ids() -> None:
    a, b = sim_for(seed=1), sim_for(seed=2)
    assert [p.follower_count for p in a.profiles()] != [p.follower_count for p in b.profiles()]
    ids_a = {r.event.event_id for r in run(a, 600) if r.event}
    ids_b = {r.event.event_id for r in run(b, 600) if r.event}
    assert ids_a
    assert ids_b
    assert not ids_a & ids_b


@pytest.mark.parametrize("mode", ["poller", "clickstream"])
def test_the_tick_size_does_not_change_the_stream(mode: str) -> None:
    records = [
        fingerprint(run(sim_for(seed=5, mode=mode, **ANOMALIES), 900, tick_s))
        for tick_s in (1.0, 7.0, 60.0)
    ]
    assert records[0] == records[1] == records[2]
    assert len(records[0]) > 100


# -- the cast --------------------------------------------------------------------------


def test_followers_lie_in_their_tier_and_the_mix_is_mostly_micro() -> None:
    sim = sim_for(seed=11, campaigns=10, creators_per_campaign=40)
    traits = {t.creator_id: t for t in sim.traits()}
    tiers: Counter[str] = Counter()
    for profile in sim.profiles():
        tier = traits[profile.creator_id].tier
        low, high = TIER_SPECS[tier].followers
        assert low <= profile.follower_count < high
        assert tier_for(profile.follower_count) == tier == profile.tier
        tiers[tier] += 1
    total = sum(tiers.values())
    assert total == 400
    assert tiers["micro"] > total / 2
    assert tiers["micro"] > tiers["nano"] > tiers["mega"]
    assert tiers["macro"] > tiers["mega"]
    assert tiers["mega"] < total * 0.08


def test_contracts_cover_every_creator_with_fees_scaled_by_tier() -> None:
    sim = sim_for(seed=4, campaigns=5, creators_per_campaign=20)
    tier_of = {t.creator_id: t.tier for t in sim.traits()}
    campaign_of = {t.creator_id: t.campaign_id for t in sim.traits()}
    contracts = sim.contracts()
    assert len(contracts) == len(sim.profiles()) == 100
    fees: dict[str, list[float]] = defaultdict(list)
    for contract in contracts:
        assert contract.campaign_id == campaign_of[contract.creator_id]
        assert contract.key() == f"{contract.campaign_id}:{contract.creator_id}".encode()
        assert contract.currency == "USD"
        low, high = TIER_SPECS[tier_of[contract.creator_id]].fee
        assert low <= contract.fee <= high
        fees[tier_of[contract.creator_id]].append(contract.fee)
    assert max(fees["nano"]) <= min(fees["micro"])
    assert statistics.median(fees["micro"]) < statistics.median(fees["macro"])


# -- realistic figures -----------------------------------------------------------------


def creator_totals(records: list[SimRecord]) -> dict[str, list[int]]:
    """Per creator: the sum over posts of each post's highest snapshot (poller mode)."""
    highest: dict[str, list[int]] = {}
    creator_of: dict[str, str] = {}
    for record in records:
        if record.label != "ok" or record.event is None:
            continue
        event = record.event
        highest[event.post_id] = list(event.counts())
        creator_of[event.post_id] = event.creator_id
    totals: dict[str, list[int]] = defaultdict(lambda: [0] * len(METRICS))
    for post, counts in highest.items():
        acc = totals[creator_of[post]]
        for i, value in enumerate(counts):
            acc[i] += value
    return totals


@pytest.fixture(scope="module")
def six_hours() -> tuple[CampaignSimulator, dict[str, list[int]]]:
    sim = sim_for(seed=21, campaigns=8, creators_per_campaign=12)
    return sim, creator_totals(run(sim, 6 * 3600, tick_s=60.0))


def rate(counts: list[int], *names: str, per: str = "views") -> float:
    index = {name: i for i, name in enumerate(METRICS)}
    return sum(counts[index[n]] for n in names) / counts[index[per]]


def test_engagement_rates_fall_in_their_tier_band(
    six_hours: tuple[CampaignSimulator, dict[str, list[int]]],
) -> None:
    sim, totals = six_hours
    checked: Counter[str] = Counter()
    for traits in sim.traits():
        counts = totals[traits.creator_id]
        if traits.outperformer or counts[0] < 5000:
            continue  # small samples are noisy; outperformers are checked below
        er = rate(counts, "likes", "comments", "shares", "saves")
        low, high = TIER_SPECS[traits.tier].engagement_rate
        # 10% slack for sampling noise around a true rate drawn inside the band.
        assert low * 0.9 <= er <= high * 1.1, (traits.tier, er)
        checked[traits.tier] += 1
    assert checked["micro"] >= 20
    assert checked["nano"] >= 3
    assert checked["macro"] >= 3


def test_other_rates_are_in_realistic_ranges(
    six_hours: tuple[CampaignSimulator, dict[str, list[int]]],
) -> None:
    sim, totals = six_hours
    overall = [0] * len(METRICS)
    for traits in sim.traits():
        if traits.outperformer:
            continue
        for i, value in enumerate(totals[traits.creator_id]):
            overall[i] += value
    assert 6.0 <= rate(overall, "watch_time_ms") / 1000 <= 25.0  # seconds per view
    assert 0.15 <= rate(overall, "completions") <= 0.45
    assert 0.05 <= rate(overall, "replays") <= 0.20
    assert 0.005 <= rate(overall, "clicks") <= 0.02
    assert 0.02 <= rate(overall, "conversions", per="clicks") <= 0.06
    assert 1500 <= rate(overall, "revenue_cents", per="conversions") <= 6000
    saves, shares, likes = (overall[METRICS.index(n)] for n in ("saves", "shares", "likes"))
    assert saves < likes
    assert shares < likes


def test_outperformers_clearly_beat_their_cohort(
    six_hours: tuple[CampaignSimulator, dict[str, list[int]]],
) -> None:
    sim, totals = six_hours
    assert len(sim.outperformers()) == 2 * 8
    reach: dict[str, list[float]] = defaultdict(list)  # views per follower, by tier
    for traits in sim.traits():
        if not traits.outperformer:
            reach[traits.tier].append(totals[traits.creator_id][0] / traits.followers)
    for star in (t for t in sim.traits() if t.outperformer):
        counts = totals[star.creator_id]
        er = rate(counts, "likes", "comments", "shares", "saves")
        assert er > TIER_SPECS[star.tier].engagement_rate[1]  # above the whole band
        assert counts[0] / star.followers > 1.5 * statistics.median(reach[star.tier])


# -- the stream ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def poller_records() -> list[SimRecord]:
    return run(sim_for(seed=8, grace_s=GRACE_S, **ANOMALIES), 2 * 3600, tick_s=5.0)


@pytest.fixture(scope="module")
def clickstream_records() -> list[SimRecord]:
    sim = sim_for(seed=9, mode="clickstream", grace_s=GRACE_S, **ANOMALIES)
    return run(sim, 3600, tick_s=5.0)


def test_every_label_occurs(
    poller_records: list[SimRecord], clickstream_records: list[SimRecord]
) -> None:
    assert set(Counter(r.label for r in poller_records)) == {
        "ok",
        "duplicate",
        "late",
        "stale",
        "invalid",
    }
    # Stale readings are a poller's problem; a click stream has none.
    assert set(Counter(r.label for r in clickstream_records)) == {
        "ok",
        "duplicate",
        "late",
        "invalid",
    }


def test_poller_sends_snapshots_with_iso_times_clickstream_deltas_with_epoch_ms(
    poller_records: list[SimRecord], clickstream_records: list[SimRecord]
) -> None:
    for records, kind, ts_type in (
        (poller_records, "snapshot", str),
        (clickstream_records, "delta", int),
    ):
        for record in records:
            if record.event is None:
                continue
            assert record.event.kind == kind
            assert decode_record(record.value).events == [DecodedEvent.from_model(record.event)]
            assert isinstance(orjson.loads(record.value)["ts"], ts_type)


def test_valid_records_are_keyed_by_creator_and_stamped_with_event_time(
    poller_records: list[SimRecord], clickstream_records: list[SimRecord]
) -> None:
    for record in poller_records + clickstream_records:
        if record.event is not None:
            assert record.key == record.event.creator_id.encode()
            assert record.timestamp_ms == record.event.ts


def test_records_come_in_time_order_apart_from_late_and_duplicate_ones(
    poller_records: list[SimRecord],
) -> None:
    on_time = [r.timestamp_ms for r in poller_records if r.label not in ("late", "duplicate")]
    assert on_time == sorted(on_time)


def test_snapshot_totals_never_fall_except_the_deliberately_stale_ones(
    poller_records: list[SimRecord],
) -> None:
    highest: dict[str, tuple[int, ...]] = {}
    stale = 0
    for record in poller_records:
        event = record.event
        if event is None or record.label in ("late", "duplicate"):
            continue
        before = highest.get(event.post_id, (0,) * len(METRICS))
        counts = event.counts()
        if record.label == "stale":
            stale += 1
            assert all(c <= b for c, b in zip(counts, before, strict=True))
            continue
        assert all(c >= b for c, b in zip(counts, before, strict=True)), event.event_id
        highest[event.post_id] = counts
    assert stale > 10


def test_duplicates_repeat_an_earlier_record_and_only_they_reuse_event_ids(
    poller_records: list[SimRecord], clickstream_records: list[SimRecord]
) -> None:
    for records in (poller_records, clickstream_records):
        seen: dict[str, bytes] = {}
        duplicates = []
        for record in records:
            if record.event is None:
                continue
            event_id = record.event.event_id
            if record.label == "duplicate":
                assert seen[event_id] == record.value  # the very same event again
                duplicates.append(event_id)
            else:
                assert event_id not in seen
                seen[event_id] = record.value
        assert len(duplicates) > 10
        oracle = expected_totals(event_dicts(records), grace_s=GRACE_S)
        assert sorted(oracle.duplicate_ids) == sorted(duplicates)


def test_late_events_are_older_than_grace_and_only_they_are_late(
    poller_records: list[SimRecord], clickstream_records: list[SimRecord]
) -> None:
    for records in (poller_records, clickstream_records):
        newest_of_key: dict[bytes | None, int] = {}
        late = []
        for record in records:
            if record.label == "late":
                # Late even for a watermark kept per creator (and so per partition).
                assert record.timestamp_ms < newest_of_key[record.key] - GRACE_S * 1000
                assert record.event is not None
                late.append(record.event.event_id)
            elif record.event is not None:
                newest_of_key[record.key] = max(
                    newest_of_key.get(record.key, 0), record.timestamp_ms
                )
        assert len(late) > 5
        oracle = expected_totals(event_dicts(records), grace_s=GRACE_S)
        assert sorted(oracle.late_ids) == sorted(late)


def test_invalid_records_are_rejected_and_valid_ones_accepted(
    poller_records: list[SimRecord], clickstream_records: list[SimRecord]
) -> None:
    reasons: Counter[str] = Counter()
    for record in poller_records + clickstream_records:
        decoded = decode_record(record.value)
        if record.event is None:
            assert record.label == "invalid"
            assert decoded.events == []
            assert len(decoded.rejected) == 1
            reasons[decoded.rejected[0].reason.split(":")[0]] += 1
            text = decoded.rejected[0].reason
            reasons["negative"] += "greater than or equal to 0" in text
            reasons["missing"] += "Field required" in text
            reasons["naive"] += "offset" in text
        else:
            assert decoded.rejected == []
            assert decoded.events == [DecodedEvent.from_model(record.event)]
    assert reasons["bad_json"] > 0
    assert reasons["invalid"] > 0
    assert reasons["negative"]
    assert reasons["missing"]
    assert reasons["naive"]


def test_anomalies_change_nothing_in_the_truth() -> None:
    """Duplicates, stale readings, late and bad records add nothing the oracle counts."""
    clean = run(sim_for(seed=13), 3600, tick_s=10.0)
    noisy = run(sim_for(seed=13, **ANOMALIES), 3600, tick_s=10.0)
    # Truth per run = the highest on-time snapshot of each post, summed per creator.
    for records in (clean, noisy):
        oracle = expected_totals(event_dicts(records), grace_s=GRACE_S, window_sizes_s=(3600,))
        counted: dict[str, list[int]] = defaultdict(lambda: [0] * len(METRICS))
        for (_campaign, creator, _size, _start), counts in oracle.creator.items():
            acc = counted[creator]
            for i, value in enumerate(counts):
                acc[i] += value
        truth = creator_totals(records)
        assert {k: v for k, v in truth.items() if any(v)} == dict(counted)


def test_rate_scale_adds_events_not_audience() -> None:
    base = run(sim_for(seed=6, mode="clickstream"), 600, tick_s=5.0)
    sim = sim_for(seed=6, mode="clickstream")
    scaled = sim.tick(T0, 0.0, rate_scale=4.0)
    for step in range(1, 121):
        scaled += sim.tick(T0 + step * 5000, 5.0, rate_scale=4.0)
    assert len(scaled) > 2.5 * len(base)
    views = [sum(r.event.views for r in rs if r.event) for rs in (base, scaled)]
    assert math.isclose(views[0], views[1], rel_tol=0.1)


def test_a_gap_between_ticks_skips_missed_polls() -> None:
    sim = sim_for(seed=2)
    sim.tick(T0, 0.0)
    sim.tick(T0 + 120_000, 120.0)
    later = sim.tick(T0 + 3_600_000, 1.0)  # a slice of 1 s after a long gap
    assert all(T0 + 3_599_000 < r.timestamp_ms <= T0 + 3_600_000 for r in later)


# -- benchmark generator ---------------------------------------------------------------


def test_events_at_rate_spreads_valid_deltas_over_creators_at_the_rate() -> None:
    sim = sim_for(seed=1)
    records = list(sim.events_at_rate(T0, 2000.0, 10_000))
    assert len(records) == 10_000
    assert [r.timestamp_ms for r in records] == [T0 + i // 2 for i in range(10_000)]
    creators: Counter[str] = Counter()
    for record in records[:2000]:
        decoded = decode_record(record.value)
        assert record.event is not None
        assert decoded.events == [DecodedEvent.from_model(record.event)]
        assert record.event is not None
        assert record.event.kind == "delta"
        assert record.key == record.event.creator_id.encode()
        creators[record.event.creator_id] += 1
    ids = {r.event.event_id for r in records if r.event}
    assert len(ids) == 10_000
    assert len(creators) > len(sim.profiles()) * 0.75
    again = {r.event.event_id for r in sim.events_at_rate(T0, 2000.0, 100) if r.event}
    assert not again & ids  # each call has ids of its own


def test_events_at_rate_refuses_ids_that_would_not_be_valid_json() -> None:
    # Records skip their own validation; the checks made once per call must catch this.
    sim = sim_for(seed=1, run_id='say "hi"')
    with pytest.raises(ValidationError):
        next(iter(sim.events_at_rate(T0, 100.0, 10)))
    with pytest.raises(ValidationError):
        next(iter(sim_for(seed=1).events_at_rate(-1_000, 100.0, 10)))  # negative ts


def test_a_record_known_to_be_valid_decodes_its_event_on_first_use() -> None:
    (eager,) = sim_for(seed=3, mode="clickstream").events_at_rate(T0, 10.0, 1)
    value, key = eager.value, eager.key
    lazy = SimRecord.known_valid(key, value, T0)
    assert lazy.has_event
    assert lazy.event == eager.event
    assert lazy.event is not None
    assert DecodedEvent.from_model(lazy.event) == decode_record(value).events[0]
    assert lazy.event is lazy.event  # decoded once
    decoded = SimRecord(key, value, T0, eager.event)
    assert SimRecord.known_valid(key, value, T0) == decoded
    assert hash(SimRecord.known_valid(key, value, T0)) == hash(decoded)
    assert SimRecord.known_valid(key, value, T0, "duplicate") != decoded
    invalid = SimRecord(key, b"{", T0, None, "invalid")
    assert not invalid.has_event
    assert invalid.event is None
    assert pickle.loads(pickle.dumps(lazy)) == lazy
    assert "event=PostStatEvent(" in repr(lazy)
    with pytest.raises(FrozenInstanceError):
        lazy.key = b"other"
    wrong = SimRecord.known_valid(key, b'{"event_id": ""}', T0)
    with pytest.raises(ValidationError):
        _ = wrong.event  # the caller's claim is checked when the event is used


def test_events_at_rate_generation_speed_is_reported() -> None:
    """Measured, not asserted: timing depends on the machine (see -rP output)."""
    sim = sim_for(seed=1)
    count = 100_000
    started = time.perf_counter()
    for _ in sim.events_at_rate(T0, 100_000.0, count):
        pass
    elapsed = time.perf_counter() - started
    print(f"events_at_rate: {count / elapsed:,.0f} events/s generated")


# -- the simulate loop, with a fake publisher and a fake clock -------------------------


@dataclass
class FakePublisher:
    records: list[SimRecord] = field(default_factory=list)
    raw: list[tuple[str | None, bytes | None, bytes | None]] = field(default_factory=list)
    flushes: int = 0
    stats: PublisherStats = field(default_factory=PublisherStats)

    def publish(self, record: SimRecord) -> None:
        self.records.append(record)

    def publish_many(self, records: list[SimRecord]) -> None:
        self.records.extend(records)

    def publish_raw(
        self,
        value: bytes | None,
        *,
        key: bytes | None,
        timestamp_ms: int | None = None,
        topic: str | None = None,
    ) -> None:
        self.raw.append((topic, key, value))

    def flush(self, timeout: float | None = None) -> None:
        self.flushes += 1


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def test_simulate_fast_publishes_reference_data_then_a_backfill_ending_now() -> None:
    publisher = FakePublisher()
    clock = FakeClock(T0 / 1000)
    stats = simulate(
        publisher,  # type: ignore[arg-type]
        sim_for(seed=3),
        duration_s=1800,
        realtime=False,
        progress=False,
        clock=clock,
        sleep=clock.sleep,
    )
    assert clock.slept == 0
    topics = Counter(topic for topic, _, _ in publisher.raw)
    assert topics == {"creator-profiles": 36, "campaign-contracts": 36}
    assert stats.reference_records == 72
    assert stats.sim_start_ms == T0 - 1_800_000
    assert stats.sim_end_ms == T0
    assert stats.records == len(publisher.records) > 0
    assert all(T0 - 1_800_000 < r.timestamp_ms <= T0 for r in publisher.records)
    assert stats.labels == {"ok": len(publisher.records)}
    # Same records as ticking the simulator by hand over the same time.
    by_hand = sim_for(seed=3)
    expected = by_hand.tick(T0 - 1_800_000, 0.0)
    now = T0 - 1_800_000
    while now < T0:
        expected += by_hand.tick(now + 1000, 1.0)
        now += 1000
    assert fingerprint(publisher.records) == fingerprint(expected)


def test_simulate_realtime_ticks_on_the_clock_until_the_duration() -> None:
    publisher = FakePublisher()
    clock = FakeClock(T0 / 1000)
    stats = simulate(
        publisher,  # type: ignore[arg-type]
        sim_for(seed=3),
        duration_s=300,
        realtime=True,
        progress=False,
        clock=clock,
        sleep=clock.sleep,
        profiles_topic="p",
        contracts_topic="c",
    )
    assert {topic for topic, _, _ in publisher.raw} == {"p", "c"}
    assert stats.ticks == 300
    assert math.isclose(clock.slept, 300.0)
    assert stats.sim_end_ms == T0 + 300_000
    assert all(T0 < r.timestamp_ms <= T0 + 300_000 for r in publisher.records)
    assert publisher.flushes >= 300  # every tick is flushed so BI sees it at once


def test_simulate_realtime_stops_when_asked() -> None:
    publisher = FakePublisher()
    clock = FakeClock(T0 / 1000)
    stop = threading.Event()

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.now >= T0 / 1000 + 30:
            stop.set()

    stats = simulate(
        publisher,  # type: ignore[arg-type]
        sim_for(seed=3),
        duration_s=None,
        realtime=True,
        progress=False,
        stop=stop,
        clock=clock,
        sleep=sleep,
        reference=False,
    )
    assert stats.stopped
    assert 25 <= stats.ticks <= 31
    assert publisher.raw == []


def test_simulate_refuses_an_endless_fast_run_and_a_used_simulator() -> None:
    with pytest.raises(ValueError, match="needs duration_s or a stop event"):
        simulate(FakePublisher(), sim_for(), duration_s=None, realtime=False, progress=False)  # type: ignore[arg-type]
    used = sim_for()
    used.tick(T0, 0.0)
    with pytest.raises(ValueError, match="already run"):
        simulate(FakePublisher(), used, duration_s=10, realtime=False, progress=False)  # type: ignore[arg-type]


# -- what the alerts demo plants -------------------------------------------------------


def test_a_tiny_hot_creator_is_hot_on_a_tiny_sample_and_changes_no_one_else() -> None:
    plain = sim_for(seed=7, campaigns=3)
    planted = sim_for(seed=7, campaigns=3, tiny_hot_per_campaign=1)
    tiny = planted.tiny_hot()
    assert len(tiny) == 3
    assert not tiny & planted.outperformers()
    others = [t for t in planted.traits() if not t.tiny_hot]
    assert others == [t for t in plain.traits() if t.creator_id not in tiny]
    views: Counter[str] = Counter()
    engaged: Counter[str] = Counter()
    last: dict[str, list[int]] = {}
    for record in run(planted, 3600, tick_s=5.0):
        event = record.event
        if event is not None and event.creator_id in tiny:
            last[event.post_id] = [
                event.views,
                event.likes + event.comments + event.shares + event.saves,
            ]
    for post, (v, e) in last.items():
        views[post.rsplit("-p", 1)[0]] += v
        engaged[post.rsplit("-p", 1)[0]] += e
    for creator in tiny:
        assert 0 < views[creator] < 1000  # below the alerts' minimum sample in its first hour
        assert engaged[creator] / views[creator] > 0.2  # and far above every tier's band


def test_simulate_realtime_with_history_catches_up_then_keeps_time() -> None:
    publisher = FakePublisher()
    clock = FakeClock(T0 / 1000)
    stats = simulate(
        publisher,  # type: ignore[arg-type]
        sim_for(seed=3),
        duration_s=3600 + 10,
        realtime=True,
        progress=False,
        clock=clock,
        sleep=clock.sleep,
        history_s=3600,
        reference=False,
    )
    assert stats.sim_start_ms == T0 - 3_600_000
    assert stats.sim_end_ms == T0 + 10_000
    assert math.isclose(clock.slept, 10.0)  # the hour of history went out without waiting
    times = [r.timestamp_ms for r in publisher.records]
    assert min(times) < T0 - 3_000_000
    assert max(times) > T0
    assert all(T0 - 3_600_000 < t <= T0 + 10_000 for t in times)
    with pytest.raises(ValueError, match="history_s"):
        simulate(publisher, sim_for(), duration_s=10, realtime=False, history_s=60)  # type: ignore[arg-type]
