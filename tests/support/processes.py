"""`creatorpulse worker` and `creatorpulse sink` as subprocesses, and what tests ask Kafka and
ClickHouse about them.

Shared by tests/e2e and tests/drills: starting, killing (-9) and stopping the commands as a
user runs them, publishing records, waiting on committed offsets (never on sleeps), and
reading back ``creator_metrics``/``campaign_metrics`` FINAL and ``dead_letters``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from sinks.clickhouse import ClickHouseSink
from tests.support.oracle import FIELDS

#: Defaults of the subprocess tests; each test may pass its own.
GRACE_S = 600
PARTITIONS = 3

CreatorTotals = dict[tuple[str, str, int, int], list[int]]
CampaignTotals = dict[tuple[str, int, int], list[int]]


def publish(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    *,
    partition: Callable[[bytes | None], int | None] | None = None,
) -> None:
    """Send ``records`` (key, value) and wait until Kafka acknowledged all of them.

    ``partition``: where a record goes (None: Kafka's default partitioner by key).
    """
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=2_000_000
    )
    try:
        for key, value in records:
            where = partition(key) if partition is not None else None
            producer.send(topic, key=key, value=value, partition=where)
        producer.flush(60)
    finally:
        producer.close()


@contextmanager
def publishing_in_background(
    bootstrap: str,
    topic: str,
    records: list[tuple[bytes | None, bytes]],
    *,
    chunk: int = 200,
    pause_s: float = 0.1,
) -> Iterator[threading.Event]:
    """Publish ``records`` in paced chunks from a thread while the caller acts on the worker.

    A worker that is fast enough can take a whole pre-published burst between two polls
    of its commits, so a kill "mid-stream" cannot be timed against it. Publishing at a
    pace keeps input ahead of the worker for as long as the burst lasts. The event is
    set once every record is acknowledged; on exit the thread is joined (and its error,
    if any, raised).
    """
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            for start in range(0, len(records), chunk):
                publish(bootstrap, topic, records[start : start + chunk])
                time.sleep(pause_s)
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=run, name="paced-publisher", daemon=True)
    thread.start()
    try:
        yield done
    finally:
        thread.join(timeout=300)
        if failure:
            raise failure[0]


def committed_everything(bootstrap: str, group: str, topics: list[str]) -> bool:
    """Has ``group`` committed the end offset of every partition of ``topics``?"""
    try:
        return all(
            end == 0 or done >= end for done, end in progress(bootstrap, group, topics).values()
        )
    except KafkaError:  # e.g. the group coordinator is still being elected
        return False


def progress(bootstrap: str, group: str, topics: list[str]) -> dict[str, tuple[int, int]]:
    """Committed and end offset of every partition of ``topics`` (-1: nothing committed)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        committed = admin.list_group_offsets(group).get(group, {})
        tps = [
            TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())
        ]
        ends = consumer.end_offsets(tps)
        return {
            f"{tp.topic}[{tp.partition}]": (
                committed[tp].offset if tp in committed else -1,
                ends[tp],
            )
            for tp in tps
        }
    finally:
        consumer.close()
        admin.close()


def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """The sum of ``group``'s committed offsets on ``topic`` (0 when none or unknown)."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    except KafkaError:
        return 0
    try:
        return sum(
            o.offset
            for tp, o in admin.list_group_offsets(group).get(group, {}).items()
            if tp.topic == topic
        )
    except KafkaError:
        return 0
    finally:
        admin.close()


class WorkerProcess:
    """``creatorpulse <command>`` (``worker`` or ``sink``) as a subprocess.

    ``settings`` become ``CREATORPULSE_<NAME>`` variables; ``extra_env`` is passed as is
    (e.g. a ``PYTHONPATH`` for a test's ``sitecustomize``).
    """

    def __init__(
        self,
        bootstrap: str,
        clickhouse_url: str,
        topic: str,
        app_id: str,
        workdir: Path,
        command: str = "worker",
        *,
        extra_env: dict[str, str] | None = None,
        **settings: str,
    ) -> None:
        self.command = command
        self.env = {
            **os.environ,
            "CREATORPULSE_KAFKA_BOOTSTRAP": bootstrap,
            "CREATORPULSE_CLICKHOUSE_URL": clickhouse_url,
            "CREATORPULSE_INPUT_TOPIC": topic,
            "CREATORPULSE_APP_ID": app_id,
            "CREATORPULSE_GRACE_S": str(GRACE_S),
            "CREATORPULSE_PARTITIONS": str(PARTITIONS),
            "CREATORPULSE_DATA_DIR": str(workdir / "data"),
            "CREATORPULSE_WEB_PORT": "0",
            "CREATORPULSE_SINK_METRICS_PORT": "0",
            "CREATORPULSE_FLUSH_INTERVAL_S": "0.5",
            **{f"CREATORPULSE_{name.upper()}": value for name, value in settings.items()},
            **(extra_env or {}),
        }
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.exit_codes: list[int] = []  # of every run that ended, whatever ended it

    def start(self) -> None:
        self.stop_quietly()
        self.runs += 1
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "creatorpulse", self.command],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop_quietly(self) -> None:
        """Never leave a worker behind, whatever the test's outcome."""
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.exit_codes.append(self.proc.wait(30))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.exit_codes.append(self.proc.wait(30))

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        self.exit_codes.append(code)
        return code

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.command}-{self.runs}.log"

    def logs(self) -> str:
        """Every run's log, oldest first."""
        return "".join(
            (self.workdir / f"{self.command}-{run}.log").read_text(errors="replace")
            for run in range(1, self.runs + 1)
        )

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def wait_until(
    predicate: Callable[[], Any],
    timeout_s: float,
    worker: WorkerProcess,
    what: str,
    detail: Callable[[], Any] | None = None,
    *,
    also_alive: Iterable[WorkerProcess] = (),
) -> None:
    """Poll ``predicate`` until true; fail at ``timeout_s`` or when a process exits."""
    deadline = time.monotonic() + timeout_s
    watched = [worker, *also_alive]
    while time.monotonic() < deadline:
        for proc in watched:
            if not proc.alive():
                pytest.fail(f"{proc.command} exited while waiting for {what}:\n{proc.log_tail()}")
        if predicate():
            return
        time.sleep(0.5)
    extra = f"\n{detail()}" if detail is not None else ""
    pytest.fail(f"timed out waiting for {what}:{extra}\n{worker.log_tail()}")


def read_clickhouse(url: str) -> tuple[CreatorTotals, CampaignTotals, list[tuple[Any, ...]]]:
    """``creator_metrics`` and ``campaign_metrics`` FINAL (rows with a non-zero counter),
    and ``dead_letters`` FINAL as (topic, partition, offset, idx, reason, payload)."""
    sink = ClickHouseSink(url)
    sink.start()
    try:
        cols = ", ".join(FIELDS)
        creator = sink.query_rows(
            f"SELECT campaign_id, creator_id, window_size_s, toUnixTimestamp(window_start), {cols} "
            "FROM {database}.creator_metrics FINAL"
        )
        campaign = sink.query_rows(
            f"SELECT campaign_id, window_size_s, toUnixTimestamp(window_start), {cols} "
            "FROM {database}.campaign_metrics FINAL"
        )
        dead = sink.query_rows(
            "SELECT topic, partition, offset, idx, reason, payload "
            "FROM {database}.dead_letters FINAL"
        )
        per_window = sink.query_rows(
            "SELECT count() FROM {database}.creator_metrics FINAL "
            "GROUP BY campaign_id, creator_id, window_size_s, window_start HAVING count() > 1"
        )
        assert per_window == [], "FINAL must return one row per window"
    finally:
        sink.close()
    return (
        {
            (r[0], r[1], int(r[2]), int(r[3]) * 1000): [int(v) for v in r[4:]]
            for r in creator
            if any(r[4:])
        },
        {
            (r[0], int(r[1]), int(r[2]) * 1000): [int(v) for v in r[3:]]
            for r in campaign
            if any(r[3:])
        },
        dead,
    )


def real_kafka(kafka_broker: Any) -> str:
    """The broker's bootstrap; in CI (CREATORPULSE_REQUIRE_REAL_KAFKA=1) only Apache Kafka."""
    if (
        kafka_broker.flavor != "apache-kafka"
        and os.environ.get("CREATORPULSE_REQUIRE_REAL_KAFKA") == "1"
    ):
        pytest.fail("this test must run on real Apache Kafka in CI")
    return str(kafka_broker.bootstrap)


@pytest.fixture
def spawn() -> Iterator[Callable[..., WorkerProcess]]:
    """Make worker processes; all are killed at teardown, pass or fail."""
    made: list[WorkerProcess] = []

    def make(*args: Any, **kwargs: Any) -> WorkerProcess:
        made.append(WorkerProcess(*args, **kwargs))
        return made[-1]

    yield make
    for worker in made:
        worker.stop_quietly()
