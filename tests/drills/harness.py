"""What every drill does around the worker: publish live, sample memory, judge the outcome.

- :class:`LivePublisher`: a thread that publishes a stream at a steady rate until told to
  stop, keeping what it sent (in order) for the oracle;
- :class:`RssSampler` (from :mod:`creatorpulse.bench.processes`, which the bench's soak
  uses too): the resident memory of a process (``/proc/<pid>/status``), whatever process
  currently plays the part (a worker restarted after ``kill -9`` has a new pid), and
  :func:`slope_mb_per_min` (:mod:`creatorpulse.bench.figures`);
- :func:`judge`: ClickHouse against the oracle, exact, and dead letters by reason class;
- :class:`DrillResult` and :data:`RESULTS`: one line of the drills table (tests/drills/
  conftest.py prints them at the end of the run and writes them to bench-results/).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from kafka import KafkaProducer

from creatorpulse.bench.figures import slope_mb_per_min as slope_mb_per_min
from creatorpulse.bench.processes import RssSampler as RssSampler
from tests.drills.data import Record, Stream, reason_class
from tests.support.oracle import Expected, expected_totals
from tests.support.processes import CampaignTotals, CreatorTotals

#: Multiplies the size of every drill (``make drills`` sets 10).
SCALE = max(1, int(os.environ.get("CREATORPULSE_DRILL_SCALE", "1") or "1"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_stats(port: int) -> dict[str, Any] | None:
    """The worker's /stats page, or None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=2) as answer:
            return dict(json.loads(answer.read()))
    except (OSError, ValueError):
        return None


def producer(bootstrap: str) -> KafkaProducer:
    # Idempotent (kafka-python's default with acks=all): a retry keeps the order of a
    # partition's records, which the oracle's lateness depends on.
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        max_request_size=2_000_000,
        enable_idempotence=True,
    )


class LivePublisher:
    """Publishes records from ``source`` at ``rate`` records/s (0: as fast as it can) in a
    thread, until :meth:`stop` or until ``source`` ends; :attr:`sent` is what it published.

    ``events_per_s``: pace by events instead. ``keep=False``: only count what was sent
    (a long soak would hold millions of events); the caller regenerates the stream.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        source: Iterator[Stream],
        rate: float = 0.0,
        *,
        events_per_s: float = 0.0,
        keep: bool = True,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.source = source
        self.rate = rate
        self.events_per_s = events_per_s
        self.keep = keep
        self.sent = Stream()
        self.records = 0
        self.events = 0
        self.taken = 0  # streams taken from ``source``: what regenerating it must repeat
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-publisher", daemon=True)
        self.started = 0.0
        self.finished = 0.0

    def start(self) -> LivePublisher:
        self._thread.start()
        return self

    def stop(self) -> Stream:
        """Stop, wait until Kafka acknowledged everything sent, and return it."""
        self._stop.set()
        return self.finish(180)

    def finish(self, timeout_s: float) -> Stream:
        """Wait until the source ended and Kafka acknowledged everything; return it."""
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise AssertionError(f"the live publisher did not finish within {timeout_s:.0f} s")
        if self.error is not None:
            raise AssertionError(f"the live publisher failed: {self.error!r}")
        return self.sent

    def _run(self) -> None:
        kafka = producer(self.bootstrap)
        self.started = time.monotonic()
        try:
            for one in self.source:
                if self._stop.is_set():
                    break
                for key, value in one.records:
                    kafka.send(self.topic, key=key, value=value)
                if self.keep:
                    self.sent.add(one)
                self.taken += 1
                self.records += len(one.parts)
                self.events += len(one.events)
                due = None
                if self.events_per_s:
                    due = self.started + self.events / self.events_per_s
                elif self.rate:
                    due = self.started + self.records / self.rate
                if due is not None:
                    self._stop.wait(max(0.0, due - time.monotonic()))
            kafka.flush(120)
        except BaseException as exc:  # reported by stop()
            self.error = exc
        finally:
            self.finished = time.monotonic()
            kafka.close(30)


def publish_stream(bootstrap: str, topic: str, records: list[Record]) -> None:
    kafka = producer(bootstrap)
    try:
        for key, value in records:
            kafka.send(topic, key=key, value=value)
        kafka.flush(120)
    finally:
        kafka.close(30)


# -- judging ------------------------------------------------------------------------------


@dataclass
class DrillResult:
    """One line of the drills table."""

    drill: str
    events_sent: int = 0
    counted: int = 0  # what the oracle counts; ClickHouse matched it when mismatches == 0
    dead_planted: int = 0
    dead_found: int = 0
    mismatches: int = 0
    duration_s: float = 0.0
    peak_rss_mb: float = 0.0
    note: str = ""


RESULTS: list[DrillResult] = []


@dataclass
class Verdict:
    expected: Expected
    dead_expected: Counter[str]
    dead_found: Counter[str]
    creator_diff: list[str] = field(default_factory=list)
    campaign_diff: list[str] = field(default_factory=list)

    @property
    def mismatches(self) -> int:
        dead = sum(
            abs(self.dead_expected[c] - self.dead_found[c])
            for c in set(self.dead_expected) | set(self.dead_found)
        )
        return len(self.creator_diff) + len(self.campaign_diff) + dead

    def explain(self) -> str:
        lines = [f"{self.mismatches} mismatches"]
        lines += [f"creator window {d}" for d in self.creator_diff[:15]]
        lines += [f"campaign window {d}" for d in self.campaign_diff[:15]]
        lines.append(f"dead letters expected {dict(self.dead_expected)}")
        lines.append(f"dead letters found    {dict(self.dead_found)}")
        return "\n".join(lines)


def _diff(got: dict[Any, list[int]], want: dict[Any, list[int]]) -> list[str]:
    out = []
    for key in sorted(set(got) | set(want), key=repr):
        if got.get(key) != want.get(key):
            out.append(f"{key}: ClickHouse {got.get(key)} oracle {want.get(key)}")
    return out


class Sent(Protocol):
    """What :func:`judge` needs of a stream: ``events`` may be iterated more than once."""

    @property
    def events(self) -> Iterable[dict[str, Any]]: ...

    planted: Counter[str]
    rekeyed_ids: set[str]


def judge(
    sent: Sent,
    creator: CreatorTotals,
    campaign: CampaignTotals,
    dead: list[tuple[Any, ...]],
    *,
    topics: tuple[str, ...],
    grace_s: int,
    partitions: int,
    now_ms: int,
    window_sizes_s: tuple[int, ...] = (60, 3600),
) -> Verdict:
    """ClickHouse (``creator``, ``campaign`` FINAL, ``dead`` letters) against the oracle.

    Events forwarded through the rekey topic may be judged late on arrival
    (``late_rekeyed``, contract v1.1) when a backlog is longer than the grace period: those
    found so are taken out of the oracle's input, after checking that each was one of the
    forwarded events and could not have been on time at the end.
    """
    from tests.drills.data import partition_of

    ours = [d for d in dead if d[0] in topics]
    found = Counter(reason_class(d[4]) for d in ours)
    late_rekeyed: set[str] = set()
    for d in ours:
        if reason_class(d[4]) == "late_rekeyed":
            late_rekeyed.add(orjson.loads(d[5])["event_id"])
    stray = late_rekeyed - sent.rekeyed_ids
    assert not stray, f"late_rekeyed dead letters for events that were not forwarded: {stray}"
    expected = expected_totals(
        (e for e in sent.events if e["event_id"] not in late_rekeyed),
        grace_s=grace_s,
        window_sizes_s=window_sizes_s,
        partition_of=lambda c: partition_of(c, partitions),
        now_ms=now_ms,
    )
    for e in sent.events if late_rekeyed else ():
        if e["event_id"] in late_rekeyed:
            horizon = (
                expected.watermarks[partition_of(e["creator_id"], partitions)] - grace_s * 1000
            )
            assert int(e["ts"]) < horizon, f"{e['event_id']} was late_rekeyed but is on time"
    dead_expected = Counter(sent.planted)
    dead_expected["late"] += len(expected.late_ids)
    dead_expected["late_rekeyed"] += len(late_rekeyed)
    dead_expected["invalid: ts"] += len(expected.future_ids)
    for _, metric in expected.over_bound:
        dead_expected[f"invalid: {metric}"] += 1
    dead_expected = +dead_expected  # drop zero counts
    return Verdict(
        expected,
        dead_expected,
        found,
        _diff(creator, expected.creator),
        _diff(campaign, expected.campaign()),
    )


def record(
    drill: str,
    events_sent: int,
    verdict: Verdict,
    started: float,
    peak_rss_mb: float,
    note: str = "",
) -> DrillResult:
    result = DrillResult(
        drill=drill,
        events_sent=events_sent,
        counted=verdict.expected.counted,
        dead_planted=sum(verdict.dead_expected.values()),
        dead_found=sum(verdict.dead_found.values()),
        mismatches=verdict.mismatches,
        duration_s=time.monotonic() - started,
        peak_rss_mb=peak_rss_mb,
        note=note,
    )
    RESULTS.append(result)
    return result


def dump_topics(bootstrap: str, topics: list[str], path: Any) -> None:
    """Every record of ``topics`` as JSON lines (topic, partition, offset, key, value),
    for reading a failed drill after the broker is gone."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, consumer_timeout_ms=3000)
    try:
        parts = [
            TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        with open(path, "wb") as out:
            while any(consumer.position(tp) < ends[tp] for tp in parts):
                for tp, records in consumer.poll(timeout_ms=1000).items():
                    for r in records:
                        out.write(
                            orjson.dumps(
                                {
                                    "topic": tp.topic,
                                    "partition": tp.partition,
                                    "offset": r.offset,
                                    "key": (r.key or b"").decode("utf-8", "replace"),
                                    "value": (r.value or b"").decode("utf-8", "replace"),
                                }
                            )
                            + b"\n"
                        )
    finally:
        consumer.close()
