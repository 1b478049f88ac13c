"""Fault drills during a live stream: a producer publishes all along while the worker is
killed with -9 three times, while the broker stops and starts, and while the separate sink
process is stopped for a while and then killed with -9. Each ends with ClickHouse exactly
equal to the independent oracle, and one dead letter per bad element.

Every step waits on a condition (committed offsets), never on a sleep.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.drills import data
from tests.drills.harness import SCALE, LivePublisher, RssSampler, dump_topics, judge, record
from tests.support.fixtures.kafka import create_topic
from tests.support.processes import (
    WorkerProcess,
    committed_everything,
    committed_total,
    progress,
    read_clickhouse,
    real_kafka,
    wait_until,
)

pytestmark = [pytest.mark.drills, pytest.mark.e2e, pytest.mark.kafka, pytest.mark.clickhouse]

GRACE_S = 600
PARTITIONS = 3
#: Records per second the live producer sends.
RATE = 400 * SCALE
#: Records a worker must have committed before it is disturbed again.
PROGRESS = 300 * SCALE


def live_source(seed: int) -> Iterator[data.Stream]:
    """A campaign with a null-key record now and then and a bad record every 200th.

    Event times advance 2 ms an event: minutes of event time per run, so no event of the
    stream is late however long a restart takes.
    """
    campaign = data.Campaign(seed, creators=50, step_ms=2, prefix=f"live{seed}")
    records = campaign.records()
    for n in range(1, 1 << 62):
        if n % 200 == 0:
            bad = data.Stream()
            creator = campaign.rng.choice(campaign.creators)
            bad.malformed(creator.encode(), b'{"event_id": "torn', bad_json=1)
            yield bad
        elif n % 37 == 0:
            forwarded = data.Stream()
            forwarded.unkeyed([campaign.next_event(snapshots=False) for _ in range(3)])
            yield forwarded
        else:
            yield next(records)


class Drill:
    """One live drill: topic, worker, publisher, and the final judgement."""

    def __init__(
        self, kafka_broker: Any, clickhouse_url: str, unique_name: Any, tmp_path: Path, spawn: Any
    ) -> None:
        self.started = time.monotonic()
        self.now_ms = int(time.time() * 1000)
        self.bootstrap = real_kafka(kafka_broker)
        self.clickhouse_url = clickhouse_url
        self.topic, self.app_id = unique_name("post-stats"), unique_name("drill")
        self.rekeyed = f"{self.app_id}-{self.topic}-rekeyed"
        self.tmp_path = tmp_path
        self.spawn = spawn
        self._committed = 0
        create_topic(self.bootstrap, self.topic, PARTITIONS)

    def process(self, command: str = "worker", **settings: str) -> WorkerProcess:
        process: WorkerProcess = self.spawn(
            self.bootstrap,
            self.clickhouse_url,
            self.topic,
            self.app_id,
            self.tmp_path,
            command,
            grace_s=str(GRACE_S),
            partitions=str(PARTITIONS),
            **settings,
        )
        return process

    def committed(self) -> int:
        """The group's committed offsets on the input topic, summed. They only grow, so
        the highest seen stands in while the broker cannot answer (0)."""
        self._committed = max(
            self._committed, committed_total(self.bootstrap, self.app_id, self.topic)
        )
        return self._committed

    def wait_for_progress(self, worker: WorkerProcess, what: str, **kw: Any) -> None:
        """Until the worker's group committed PROGRESS more records of the input topic."""
        before = self.committed()
        wait_until(lambda: self.committed() >= before + PROGRESS, 180, worker, what, **kw)

    def wait_for_everything(self, worker: WorkerProcess) -> None:
        topics = [self.topic, self.rekeyed]
        wait_until(
            lambda: committed_everything(self.bootstrap, self.app_id, topics),
            240,
            worker,
            "the whole topic",
            lambda: progress(self.bootstrap, self.app_id, topics),
        )

    def judge(self, name: str, sent: data.Stream, peak_rss_mb: float, note: str = "") -> None:
        creator, campaign, dead = read_clickhouse(self.clickhouse_url)
        verdict = judge(
            sent,
            creator,
            campaign,
            dead,
            topics=(self.topic, self.rekeyed),
            grace_s=GRACE_S,
            partitions=PARTITIONS,
            now_ms=self.now_ms,
        )
        record(name, len(sent.events), verdict, self.started, peak_rss_mb, note)
        if verdict.mismatches:
            # What a post-mortem needs once the broker is gone.
            topics = [self.topic, self.rekeyed, f"{self.app_id}-state-changelog"]
            dump_topics(self.bootstrap, topics, self.tmp_path / "topics.jsonl")
        assert verdict.mismatches == 0, verdict.explain()
        assert sent.planted["bad_json"] > 0, "the stream had what it needs"
        assert sent.rekeyed_ids, "the stream had what it needs"


@pytest.fixture
def drill(
    kafka_broker: Any, clickhouse_url: str, unique_name: Any, tmp_path: Path, spawn: Any
) -> Drill:
    return Drill(kafka_broker, clickhouse_url, unique_name, tmp_path, spawn)


def test_three_kill9s_of_the_worker_during_a_live_stream(drill: Drill) -> None:
    worker = drill.process()
    publisher = LivePublisher(drill.bootstrap, drill.topic, live_source(21), RATE).start()
    worker.start()
    with RssSampler(lambda: worker.pid if worker.alive() else None) as rss:
        for kill in range(3):
            drill.wait_for_progress(worker, f"progress before kill {kill + 1}")
            worker.kill9()
            worker.start()
        drill.wait_for_progress(worker, "progress after the last restart")
        sent = publisher.stop()
        drill.wait_for_everything(worker)
        assert worker.terminate() == 0, worker.log_tail()
    assert worker.exit_codes == [-9, -9, -9, 0]
    drill.judge("kill -9 of the worker x3 (live)", sent, rss.peak_mb)


def test_a_broker_stop_and_start_while_the_worker_runs(drill: Drill, kafka_broker: Any) -> None:
    worker = drill.process()
    publisher = LivePublisher(drill.bootstrap, drill.topic, live_source(22), RATE).start()
    worker.start()
    with RssSampler(lambda: worker.pid if worker.alive() else None) as rss:
        drill.wait_for_progress(worker, "progress before the broker restart")
        bounced = time.monotonic()
        kafka_broker.restart()
        down_s = time.monotonic() - bounced
        drill.wait_for_progress(worker, "progress after the broker restart")
        sent = publisher.stop()
        drill.wait_for_everything(worker)
        assert worker.terminate() == 0, worker.log_tail()
    assert worker.exit_codes == [0], "the worker must ride out the broker's restart"
    note = f"broker down and back in {down_s:.1f} s"
    drill.judge("broker stop and start (live)", sent, rss.peak_mb, note)


def test_the_sink_process_through_an_outage_and_a_kill9(drill: Drill) -> None:
    """``--sink topic``: the sink is stopped while the worker goes on, started again,
    then killed with -9 while it catches up; the worker is never disturbed."""
    worker = drill.process(sink="topic")
    sink = drill.process("sink")
    rows_topic, sink_group = f"{drill.app_id}-window-rows", f"{drill.app_id}-sink"

    def sink_committed() -> int:
        return committed_total(drill.bootstrap, sink_group, rows_topic)

    def wait_for_sink(what: str) -> None:
        before = sink_committed()
        wait_until(lambda: sink_committed() > before, 180, sink, what, also_alive=[worker])

    publisher = LivePublisher(drill.bootstrap, drill.topic, live_source(23), RATE).start()
    worker.start()
    sink.start()
    with RssSampler(lambda: worker.pid if worker.alive() else None) as rss:
        wait_for_sink("the sink's first commit")
        assert sink.terminate() == 0, sink.log_tail()  # the outage starts
        drill.wait_for_progress(worker, "the worker's progress while the sink is down")
        drill.wait_for_progress(worker, "more progress while the sink is down")
        sink.start()
        wait_for_sink("the sink's catch-up")
        sink.kill9()
        sink.start()
        wait_for_sink("the sink's progress after its kill -9")
        sent = publisher.stop()
        drill.wait_for_everything(worker)
        assert worker.terminate() == 0, worker.log_tail()
    # The dead-letter topic is shared by every worker on the broker (contract name): the
    # sink reads all of it, and only this drill's dead letters are judged.
    wait_until(
        lambda: committed_everything(
            drill.bootstrap, sink_group, [rows_topic, "post-stats-dead-letters"]
        ),
        180,
        sink,
        "the sink's final catch-up",
    )
    assert sink.terminate() == 0, sink.log_tail()
    assert worker.exit_codes == [0]
    assert sink.exit_codes == [0, -9, 0]
    drill.judge("sink process: outage + kill -9", sent, rss.peak_mb)
