"""Batched delivery through a rebalance and a restart, on real Apache Kafka.

Two ``creatorpulse worker`` subprocesses in one group: A starts alone; B joins while
records are still arriving, so partitions move from A to B mid-stream; once the group
has committed everything, B is restarted (its partitions go to A and come back). The
same app runs a reference-topic agent (creator profiles, Faust's per-record path) and
recovers its table from the changelog on every assignment.

A chDB store opens in one process only, so each worker writes a store of its own (which
keeps the reference agents on), and the test's store is written afterwards by
``creatorpulse sink`` from the window rows both workers published: the same rows a
two-worker deployment with ``sink=topic`` would hand it.

What reached the processor is recorded without touching production code: each worker
gets a ``sitecustomize`` (on its PYTHONPATH only) that appends every record handed to
``StreamProcessor.apply_records`` to a file of its own. The test then asserts that every
offset of the input and rekey topics reached a processor exactly once (none lost, none
twice: issue 13's two traps), that the partitions B took over were restored from A's
changelog, and that ClickHouse holds exactly the oracle's totals, so no duplicate event
was counted twice after a partition moved.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.support.fixtures.kafka import create_topic
from tests.support.oracle import expected_totals
from tests.support.processes import (
    GRACE_S,
    WorkerProcess,
    committed_everything,
    committed_total,
    progress,
    publish,
    read_clickhouse,
    real_kafka,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]

PARTITIONS = 4
T0 = 1_795_338_000_000  # 2026-11-22T09:00:00Z
CREATORS = [f"rb-creator-{i:02d}" for i in range(40)]

SITECUSTOMIZE = '''"""Test only: note every record handed to the processor, one file per process."""

import os

import streams.processor

_PATH = os.environ["CREATORPULSE_TEST_DELIVERIES"]
_apply = streams.processor.StreamProcessor.apply_records
_fd = []


def _noted(self, messages, *args, **kwargs):
    if not _fd:
        _fd.append(os.open(f"{_PATH}.{os.getpid()}", os.O_WRONLY | os.O_CREAT | os.O_APPEND))
    lines = "".join(f"{m.topic} {m.partition} {m.offset}\\n" for m in messages)
    os.write(_fd[0], lines.encode())
    return _apply(self, messages, *args, **kwargs)


streams.processor.StreamProcessor.apply_records = _noted
'''


def make_events(seed: int, n: int, start_ms: int) -> list[dict[str, Any]]:
    """``n`` single events, about 5% of them sent again later (a producer retry).

    Event times stay within one grace period, so none is late whatever the order in
    which partitions are read; a retry lands up to 2,000 events later, often after
    its partition has moved to the other worker.
    """
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    retries: dict[int, dict[str, Any]] = {}
    for i in range(n):
        creator = rng.choice(CREATORS)
        events.append(
            {
                "event_id": f"rb{seed}-{i}",
                "ts": start_ms + i * 5,
                "campaign_id": "rebalance",
                "creator_id": creator,
                "post_id": f"{creator}-post",
                "views": rng.randint(0, 20),
                "likes": rng.randint(0, 3),
            }
        )
        if rng.random() < 0.05:
            retries.setdefault(i + rng.randint(1, 2_000), events[-1])
        if i in retries:
            events.append(retries.pop(i))
    return events


def as_records(events: list[dict[str, Any]]) -> list[tuple[bytes | None, bytes]]:
    # One record in 50 is keyed by something else: forwarded through the rekey topic.
    return [
        (b"not-the-creator" if i % 50 == 0 else ev["creator_id"].encode(), orjson.dumps(ev))
        for i, ev in enumerate(events)
    ]


class PacedPublisher:
    """Publishes ``records`` in paced chunks from a thread until told to stop.

    However long B takes to start on a busy machine, records keep arriving while it
    joins: the test stops the publisher a few chunks after B's first assignment, and
    the oracle gets exactly the events sent (:attr:`sent`).
    """

    def __init__(self, bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]):
        self._args = (bootstrap, topic)
        self._records = records
        self._chunks_left: int | None = None  # None: until told
        self._lock = threading.Lock()
        self.sent = 0
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="paced-publisher", daemon=True)

    def __enter__(self) -> PacedPublisher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_after(0)
        self._thread.join(timeout=120)
        if self.failure is not None:
            raise self.failure

    def stop_after(self, chunks: int) -> None:
        with self._lock:
            self._chunks_left = chunks

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            while self.sent < len(self._records):
                with self._lock:
                    if self._chunks_left is not None:
                        if self._chunks_left <= 0:
                            return
                        self._chunks_left -= 1
                chunk = self._records[self.sent : self.sent + 200]
                publish(*self._args, chunk)
                self.sent += len(chunk)
                time.sleep(0.1)  # pacing, not ordering: the worker reads whatever is there
        except BaseException as exc:
            self.failure = exc


def end_offsets(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        tps = [
            TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())
        ]
        return {(tp.topic, tp.partition): end for tp, end in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def deliveries(workdir: Path) -> Counter[tuple[str, int, int]]:
    seen: Counter[tuple[str, int, int]] = Counter()
    for path in workdir.glob("deliveries.*"):
        for line in path.read_text().splitlines():
            topic, partition, offset = line.split()
            seen[(topic, int(partition), int(offset))] += 1
    return seen


def assigned_partitions(log: str) -> list[int] | None:
    """The partitions of the last ``partitions assigned`` line of a worker log."""
    found = re.findall(r"partitions assigned: \[([\d, ]*)\]", log)
    return [int(p) for p in found[-1].split(",") if p.strip()] if found else None


def restored_with_windows(log: str) -> set[int]:
    return {
        int(p) for p, w in re.findall(r"partition (\d+) restored: (\d+) windows", log) if w != "0"
    }


def test_every_offset_reaches_the_processor_once_through_a_rebalance_and_a_restart(
    kafka_broker: Any, clickhouse_url: str, unique_name: Any, tmp_path: Path, spawn: Any
) -> None:
    bootstrap = real_kafka(kafka_broker)
    topic, app_id = unique_name("post-stats"), unique_name("rebalance")
    rekeyed = f"{app_id}-{topic}-rekeyed"
    create_topic(bootstrap, topic, PARTITIONS)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {"PYTHONPATH": str(site), "CREATORPULSE_TEST_DELIVERIES": str(tmp_path / "deliveries")}

    def worker(name: str) -> WorkerProcess:
        w: WorkerProcess = spawn(
            bootstrap,
            f"chdb:///{tmp_path / name / 'store'}",
            topic,
            app_id,
            tmp_path / name,
            partitions=str(PARTITIONS),
            extra_env=env,
        )
        return w

    a, b = worker("a"), worker("b")
    first, second = make_events(1, 60_000, T0), make_events(2, 2_000, T0 + 350_000)
    # Profiles share the reference topic of the broker: ids of this test only.
    profiles = [
        (c.encode(), orjson.dumps({"creator_id": c, "follower_count": 1_000 + i}))
        for i, c in enumerate(CREATORS)
    ]

    def offsets() -> Any:
        return progress(bootstrap, app_id, [topic, rekeyed])

    a.start()
    with PacedPublisher(bootstrap, topic, as_records(first)) as publisher:
        wait_until(lambda: committed_total(bootstrap, app_id, topic) > 500, 60, a, "A alone")
        b.start()
        wait_until(
            lambda: bool(assigned_partitions(b.log_path.read_text(errors="replace"))),
            60,
            b,
            "B's first partitions",
            also_alive=[a],
        )
        assert publisher.running, "B must join mid-stream: every record was sent before"
        publisher.stop_after(10)  # records go on arriving through the rebalance
        publish(bootstrap, "creator-profiles", profiles)
    first = first[: publisher.sent]
    wait_until(
        lambda: committed_everything(bootstrap, app_id, [topic, rekeyed]),
        60,
        a,
        "the group to catch up",
        offsets,
        also_alive=[b],
    )
    moved_to_b = set(assigned_partitions(b.log_path.read_text(errors="replace")) or ())
    # B took over partitions A had been counting, and rebuilt them from A's changelog.
    assert restored_with_windows(b.log_path.read_text(errors="replace")) & moved_to_b

    # Restart B: its partitions go to A and come back, each time restored.
    assert b.terminate() == 0, b.log_tail()
    b.start()
    wait_until(
        lambda: bool(assigned_partitions(b.log_path.read_text(errors="replace"))),
        60,
        b,
        "B's partitions after its restart",
        also_alive=[a],
    )
    publish(bootstrap, topic, as_records(second))
    wait_until(
        lambda: committed_everything(bootstrap, app_id, [topic, rekeyed, "creator-profiles"]),
        60,
        a,
        "the group after B's restart",
        offsets,
        also_alive=[b],
    )
    assert b.terminate() == 0, b.log_tail()
    assert a.terminate() == 0, a.log_tail()

    # Every offset of the worker's own topics reached a processor, and only once.
    seen = deliveries(tmp_path)
    ends = end_offsets(bootstrap, [topic, rekeyed])
    assert sum(end for (t, _), end in ends.items() if t == rekeyed) > 0, "none was forwarded"
    expected_offsets = {(t, p, o) for (t, p), end in ends.items() for o in range(end)}
    assert set(seen) == expected_offsets
    twice = {k: n for k, n in seen.items() if n > 1}
    assert twice == {}
    logs = a.logs() + b.logs()
    assert "came before its state was restored" not in logs
    assert "were not delivered" not in logs

    # No event counted twice or lost, whichever worker held its partition when.
    rows_topic = f"{app_id}-window-rows"
    sink = spawn(
        bootstrap,
        clickhouse_url,
        topic,
        app_id,
        tmp_path / "sink",
        "sink",
        partitions=str(PARTITIONS),
    )
    sink.start()
    wait_until(
        lambda: committed_everything(bootstrap, f"{app_id}-sink", [rows_topic]),
        60,
        sink,
        "the sink",
    )
    assert sink.terminate() == 0, sink.log_tail()
    expected = expected_totals(first + second, grace_s=GRACE_S, window_sizes_s=(60, 3600))
    creator, campaign, _ = read_clickhouse(clickhouse_url)
    assert creator == expected.creator
    assert campaign == expected.campaign()
