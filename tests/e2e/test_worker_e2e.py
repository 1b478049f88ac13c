"""`creatorpulse worker` as a user runs it: a subprocess on real Kafka, killed with -9.

A hand-built dataset holds every case of the contract. The worker is started,
killed with SIGKILL in the middle of a burst, restarted, stopped with SIGTERM; then
a second worker with a fresh group replays the whole topic. ClickHouse must hold
exactly the totals that ``tests.support.oracle`` computes from the same events.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka.errors import KafkaError

from tests.support.fixtures.kafka import create_topic
from tests.support.oracle import FIELDS, expected_totals
from tests.support.processes import (
    GRACE_S,
    PARTITIONS,
    WorkerProcess,
    committed_everything,
    committed_total,
    progress,
    publish,
    publishing_in_background,
    read_clickhouse,
    real_kafka,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.clickhouse]

T0 = 1_795_338_000_000  # 2026-11-22T09:00:00Z
CAMPAIGN = "spring-launch"
CREATORS = [f"creator-{i:02d}" for i in range(8)]


def event(event_id: str, ts: int, creator: str, **counts: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "ts": ts,
        "campaign_id": counts.pop("campaign_id", CAMPAIGN),
        "creator_id": creator,
        "post_id": counts.pop("post_id", f"{creator}-post-1"),
        **counts,
    }


class Dataset:
    """Records to publish (key, value) and the events the oracle should see, in order."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes]] = []
        self.counted_in_order: list[dict[str, Any]] = []  # valid elements, publish order
        self.invalid = 0

    def add(
        self, key: bytes | None, value: Any, *, valid: list[dict[str, Any]], invalid: int = 0
    ) -> None:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        self.records.append((key, raw))
        self.counted_in_order.extend(valid)
        self.invalid += invalid

    def single(self, ev: dict[str, Any], key: bytes | None = None) -> None:
        self.add(key if key is not None else ev["creator_id"].encode(), ev, valid=[ev])


def phase_one() -> Dataset:
    """Every contract case, small enough to check by hand."""
    d = Dataset()
    a, b, c = CREATORS[:3]
    d.single(event("a-1", T0 + 1_000, a, views=100, likes=8, comments=2, shares=1, saves=3))
    d.single(
        event("a-2", T0 + 65_000, a, views=40, watch_time_ms=400_000, completions=12, replays=2)
    )
    d.single(event("a-1", T0 + 1_000, a, views=100, likes=8, comments=2, shares=1, saves=3))  # dup
    d.single(event("b-1", T0 + 5_000, b, views=10, clicks=2, conversions=1, revenue_cents=4_999))
    # Out of order but on time: counted in its own (earlier) window.
    d.single(event("a-0", T0 - 30_000, a, views=7))
    # Snapshots of one post: growing, repeated, lower (stale), growing again.
    post = {"kind": "snapshot", "post_id": "c-post"}
    d.single(event("c-s1", T0 + 10_000, c, views=500, likes=50, **post))
    d.single(event("c-s2", T0 + 70_000, c, views=800, likes=60, **post))
    d.single(event("c-s3", T0 + 75_000, c, views=800, likes=60, **post))
    d.single(event("c-s4", T0 + 80_000, c, views=700, likes=55, **post))
    d.single(event("c-s5", T0 + 130_000, c, views=900, likes=61, shares=4, **post))
    # ISO time with an offset, and unknown fields.
    iso = event("b-2", 0, b, views=3, likes=1)
    iso["ts"] = "2026-11-22T10:00:20+01:00"  # T0 + 20 s
    iso["note"] = "ignored"
    d.add(b.encode(), iso, valid=[{**iso, "ts": T0 + 20_000}])
    # A batch record for one creator with one bad element among good ones.
    batch = [
        event("b-3", T0 + 21_000, b, views=5),
        event("b-bad", T0 + 21_000, b, views=-1),
        event("b-4", T0 + 22_000, b, likes=2),
    ]
    d.add(b.encode(), batch, valid=[batch[0], batch[2]], invalid=1)
    # Records keyed by something other than the creator: still counted for the creator.
    for i, creator in enumerate(CREATORS[3:6]):
        ev = event(f"rekey-{i}", T0 + 30_000 + i, creator, views=11 + i, clicks=1)
        d.single(ev, key=b"not-the-creator")
    d.add(
        None,
        [event("rekey-null", T0 + 31_000, CREATORS[6], views=9)],
        valid=[event("rekey-null", T0 + 31_000, CREATORS[6], views=9)],
    )
    # Invalid records: each a dead letter with a reason.
    d.add(a.encode(), b"{not json", valid=[], invalid=1)
    d.add(a.encode(), event("x-neg", T0, a, views=-5), valid=[], invalid=1)
    d.add(a.encode(), {"event_id": "x-missing", "ts": T0}, valid=[], invalid=1)
    d.add(a.encode(), {**event("x-naive", 0, a), "ts": "2026-11-22T09:00:00"}, valid=[], invalid=1)
    d.add(a.encode(), event("x-big", T0, a, padding="x" * 70_000), valid=[], invalid=1)
    return d


def burst(seed: int, n: int, start_ms: int) -> Dataset:
    """Many small records with duplicates and snapshots, to be killed in the middle of."""
    rng = random.Random(seed)
    d = Dataset()
    totals: dict[str, int] = {}
    for i in range(n):
        creator = rng.choice(CREATORS[3:])  # creators 0-2 stay hand-checkable
        ts = start_ms + i * 10 + rng.randint(-60_000, 0)
        if rng.random() < 0.3:
            post = f"{creator}-post-{rng.randint(1, 3)}"
            totals[post] = totals.get(post, 0) + rng.randint(-3, 30)
            ev = event(
                f"s{seed}-{i}",
                ts,
                creator,
                kind="snapshot",
                post_id=post,
                views=max(0, totals[post]),
            )
        else:
            ev = event(
                f"d{seed}-{i}",
                ts,
                creator,
                views=rng.randint(0, 20),
                likes=rng.randint(0, 3),
                clicks=rng.randint(0, 1),
            )
        d.single(ev)
        if rng.random() < 0.05:
            d.single(ev)  # producer retry: same event again
    return d


def late_tail(start_ms: int) -> Dataset:
    """After everything else: events hours older than the watermark, and a fresh one."""
    d = Dataset()
    for i, creator in enumerate(CREATORS):
        d.add(
            creator.encode(),
            event(f"late-{i}", start_ms - 3 * 3_600_000, creator, views=1000),
            valid=[],
            invalid=1,
        )
        d.single(event(f"tail-{i}", start_ms + i, creator, views=1))
    return d


# -- harness ---------------------------------------------------------------------------


def kill_mid_burst(
    bootstrap: str, topic: str, burst: Dataset, group: str, *processes: WorkerProcess
) -> None:
    """SIGKILL ``processes`` while the worker is in the middle of ``burst``: it has
    committed part of it and more is still arriving."""
    worker = processes[-1]
    before = committed_total(bootstrap, group, topic)
    with publishing_in_background(bootstrap, topic, burst.records) as published:
        wait_until(
            lambda: committed_total(bootstrap, group, topic) > before + 500,
            120,
            worker,
            "burst progress",
        )
        assert not published.is_set(), "kill must land mid-stream: the burst was all sent"
        for process in processes:
            process.kill9()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def test_worker_is_exact_through_kill9_restart_and_replay(
    kafka_broker: Any, clickhouse_url: str, unique_name: Any, workdir: Path, spawn: Any
) -> None:
    bootstrap = real_kafka(kafka_broker)
    topic = unique_name("post-stats")
    app_id = unique_name("e2e")
    create_topic(bootstrap, topic, PARTITIONS)
    # Event times stay within one grace period of the rekeyed events (T0 + 30 s), so
    # whenever the rekeyed records are consumed relative to the burst, none is late.
    one, two, tail = phase_one(), burst(1, 20_000, T0 + 200_000), late_tail(T0 + 500_000)

    worker = spawn(bootstrap, clickhouse_url, topic, app_id, workdir)
    publish(bootstrap, topic, one.records)
    worker.start()
    rekeyed = f"{app_id}-{topic}-rekeyed"

    def offsets() -> dict[str, tuple[int, int]] | str:
        try:
            return progress(bootstrap, app_id, [topic, rekeyed])
        except KafkaError as exc:
            return f"offsets unavailable: {exc}"

    wait_until(
        lambda: committed_everything(bootstrap, app_id, [topic, rekeyed]),
        120,
        worker,
        "phase one",
        offsets,
    )

    # A burst, and SIGKILL while the worker is in the middle of it.
    kill_mid_burst(bootstrap, topic, two, app_id, worker)

    worker.start()
    publish(bootstrap, topic, tail.records)
    wait_until(
        lambda: committed_everything(bootstrap, app_id, [topic, rekeyed]),
        180,
        worker,
        "catch-up",
        offsets,
    )
    assert worker.terminate() == 0, worker.log_tail()

    events = one.counted_in_order + two.counted_in_order + tail.counted_in_order
    expected = expected_totals(events, grace_s=GRACE_S, window_sizes_s=(60, 3600))
    creator, campaign, dead = read_clickhouse(clickhouse_url)
    assert creator == expected.creator
    assert campaign == expected.campaign()
    # Every invalid element and every late event is one dead letter with a reason.
    reasons = [r[4].split(":")[0] for r in dead]
    assert len(dead) == one.invalid + tail.invalid
    assert reasons.count("late") == len(CREATORS)
    assert {"bad_json", "invalid", "too_large", "late"} <= set(reasons)
    # Hand-checked figures from phase one, independent of the oracle.
    c_minutes = [creator[(CAMPAIGN, CREATORS[2], 60, T0 + m * 60_000)] for m in range(3)]
    views, likes, shares = (FIELDS.index(f) for f in ("views", "likes", "shares"))
    # Snapshots 500 -> 800 -> 800 -> 700 (stale) -> 900: deltas 500, 300, 0, 0, 100.
    assert [w[views] for w in c_minutes] == [500, 300, 100]
    assert [w[likes] for w in c_minutes] == [50, 10, 1]
    assert c_minutes[2][shares] == 4
    a_first = creator[(CAMPAIGN, CREATORS[0], 60, T0)]
    assert a_first[FIELDS.index("views")] == 100
    assert a_first[FIELDS.index("saves")] == 3
    assert creator[(CAMPAIGN, CREATORS[0], 60, T0 - 60_000)][FIELDS.index("views")] == 7
    for i, rekeyed_creator in enumerate(CREATORS[3:6]):
        assert creator[(CAMPAIGN, rekeyed_creator, 60, T0)][FIELDS.index("views")] == 11 + i

    # Replay: a new group over the whole topic rewrites the same totals, adds nothing.
    replayer = spawn(bootstrap, clickhouse_url, topic, unique_name("replay"), workdir / "r")
    (workdir / "r").mkdir()
    replayer.start()
    wait_until(
        lambda: committed_everything(bootstrap, replayer.env["CREATORPULSE_APP_ID"], [topic]),
        180,
        replayer,
        "replay",
    )
    assert replayer.terminate() == 0, replayer.log_tail()
    creator_again, campaign_again, dead_again = read_clickhouse(clickhouse_url)
    assert creator_again == expected.creator
    assert campaign_again == expected.campaign()
    assert len(dead_again) == len(dead)


def test_separate_sink_process_is_exact_through_kill9_of_both(
    kafka_broker: Any, clickhouse_url: str, unique_name: Any, workdir: Path, spawn: Any
) -> None:
    """sink=topic: the worker publishes window rows, `creatorpulse sink` writes them.

    Both are killed with -9 in the middle of a burst and restarted; ClickHouse must
    still hold exactly the oracle's totals and one dead letter per bad element.
    """
    bootstrap = real_kafka(kafka_broker)
    topic = unique_name("post-stats")
    app_id = unique_name("e2e-topic")
    create_topic(bootstrap, topic, PARTITIONS)
    one, two, tail = phase_one(), burst(2, 20_000, T0 + 200_000), late_tail(T0 + 500_000)
    worker = spawn(bootstrap, clickhouse_url, topic, app_id, workdir, "worker", sink="topic")
    sink = spawn(bootstrap, clickhouse_url, topic, app_id, workdir, "sink")
    rekeyed, rows_topic = f"{app_id}-{topic}-rekeyed", f"{app_id}-window-rows"
    publish(bootstrap, topic, one.records)
    worker.start()
    sink.start()
    wait_until(
        lambda: committed_everything(bootstrap, app_id, [topic, rekeyed]),
        120,
        worker,
        "phase one",
    )

    kill_mid_burst(bootstrap, topic, two, app_id, sink, worker)
    sink.start()
    worker.start()
    publish(bootstrap, topic, tail.records)
    wait_until(
        lambda: committed_everything(bootstrap, app_id, [topic, rekeyed]),
        180,
        worker,
        "worker catch-up",
    )
    assert worker.terminate() == 0, worker.log_tail()
    # The dead-letter topic is shared by every worker on the broker (contract name):
    # the sink reads all of it, and only this test's dead letters are checked below.
    wait_until(
        lambda: committed_everything(
            bootstrap, f"{app_id}-sink", [rows_topic, "post-stats-dead-letters"]
        ),
        120,
        sink,
        "sink catch-up",
    )
    assert sink.terminate() == 0, sink.log_tail()
    assert "sink stopped" in sink.log_tail()

    events = one.counted_in_order + two.counted_in_order + tail.counted_in_order
    expected = expected_totals(events, grace_s=GRACE_S, window_sizes_s=(60, 3600))
    creator, campaign, dead = read_clickhouse(clickhouse_url)
    assert creator == expected.creator
    assert campaign == expected.campaign()
    ours = [r for r in dead if r[0] in (topic, rekeyed)]
    assert len(ours) == one.invalid + tail.invalid
    assert [r[4].split(":")[0] for r in ours].count("late") == len(CREATORS)


def test_live_records_are_written_without_waiting_for_the_flush_age(
    kafka_broker: Any, clickhouse_url: str, unique_name: Any, workdir: Path, spawn: Any
) -> None:
    # Interval and age of a minute: only the caught-up rule (the fetch read to the end
    # of its partition) can write these rows within the wait below.
    bootstrap = real_kafka(kafka_broker)
    topic = unique_name("post-stats")
    campaign = unique_name("live")
    create_topic(bootstrap, topic, PARTITIONS)
    now = int(time.time() * 1000)
    records = [
        (c.encode(), orjson.dumps(event(f"{c}-live", now, c, campaign_id=campaign, views=5)))
        for c in CREATORS
    ]
    publish(bootstrap, topic, records)
    worker = spawn(
        bootstrap,
        clickhouse_url,
        topic,
        unique_name("live"),
        workdir,
        flush_interval_s="60",
        flush_max_age_s="60",
    )
    worker.start()

    # Offsets are committed only by a flush, after its checkpoints are durable.
    wait_until(
        lambda: committed_everything(bootstrap, worker.env["CREATORPULSE_APP_ID"], [topic]),
        30,
        worker,
        "the first flush",
    )
    assert worker.terminate() == 0, worker.log_tail()
    creator, _, _ = read_clickhouse(clickhouse_url)
    minutes = [v for (camp, _, size, _), v in creator.items() if camp == campaign and size == 60]
    assert sum(v[FIELDS.index("views")] for v in minutes) == 5 * len(CREATORS)
