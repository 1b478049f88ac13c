"""Kafka trouble as a user sees it: what the CLI prints when the broker is away.

Two cases: a bootstrap nobody listens on at start must stop every Kafka command quickly
with one message naming the setting; a broker that goes away while `creatorpulse worker`
runs must not flood the log with the clients' retry lines (each repeated failure is
logged once per interval, with a count).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError

from creatorpulse.brokers.process import free_port
from creatorpulse.logs import OWN_PACKAGES, REPEAT_INTERVAL_S
from tests.support.fixtures.kafka import APACHE_KAFKA, BrokerHandle, create_topic

pytestmark = pytest.mark.e2e

# A log line as creatorpulse.runtime.configure_logging formats it.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\w+) +([\w.]+): (.*)$")
T0 = 1_795_338_000_000  # 2026-11-22T09:00:00Z


def cli(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "creatorpulse", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREATORPULSE_")}
    env["CREATORPULSE_DATA_DIR"] = str(tmp_path / "data")
    env["CREATORPULSE_WEB_PORT"] = "0"
    return env


KAFKA_COMMANDS = [
    ["worker"],
    ["--sink", "topic", "worker"],
    ["sink"],
    ["run", "--no-simulate"],
    ["produce", "--duration-s", "1"],
    ["replay", "EVENTS"],
]


def test_an_unreachable_bootstrap_stops_every_kafka_command_quickly_with_one_message(
    tmp_path: Path,
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(orjson.dumps({"event_id": "e1", "ts": T0}) + b"\n")
    closed_port = free_port()  # free right now: nothing accepts connections on it
    # One after the other: started together on two cores, their imports alone took
    # seconds more than the check, and the bound measured the machine, not the check.
    results = {}
    for n, command in enumerate(KAFKA_COMMANDS):
        argv = [str(events) if arg == "EVENTS" else arg for arg in command]
        env = base_env(tmp_path / str(n))
        started = time.monotonic()
        proc = cli("--kafka-bootstrap", f"127.0.0.1:{closed_port}", *argv, env=env)
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        name = " ".join(command)
        results[name] = (proc.returncode, time.monotonic() - started, err.decode(errors="replace"))

    for name, (code, elapsed, stderr) in results.items():
        assert code == 2, (name, stderr)
        # A bound on a failure path (the check gives up after 8 s), not a timing claim.
        assert elapsed < 15, f"{name} took {elapsed:.1f}s:\n{stderr}"
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1, (name, stderr)
        assert lines[0].startswith("error: cannot reach Kafka at 127.0.0.1:"), (name, stderr)
        assert "--kafka-bootstrap / CREATORPULSE_KAFKA_BOOTSTRAP" in lines[0], (name, stderr)


def committed_total(bootstrap: str, group: str, topic: str) -> int:
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    except KafkaError:
        return -1
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
        return sum(o.offset for tp, o in offsets.items() if tp.topic == topic)
    except KafkaError:  # the coordinator may still be moving after a restart
        return -1
    finally:
        admin.close()


def publish(bootstrap: str, topic: str, first: int, count: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for i in range(first, first + count):
            creator = f"creator-{i % 4}"
            value = {
                "event_id": f"e{i}",
                "ts": T0 + i,
                "campaign_id": "c",
                "creator_id": creator,
                "post_id": f"{creator}-p",
                "views": 1,
            }
            producer.send(topic, key=creator.encode(), value=orjson.dumps(value))
        producer.flush(30)
    finally:
        producer.close()


def wait_for(
    condition: Callable[[], bool], timeout_s: float, proc: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert proc.poll() is None, "the worker exited"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def library_lines(log: str) -> list[tuple[str, str]]:
    """(logger, message with digits blanked) of each line a third-party logger wrote."""
    found = []
    for line in log.splitlines():
        match = LOG_LINE.match(line)
        if match is None:
            continue
        name = match.group(2)
        if name.split(".")[0] in OWN_PACKAGES:
            continue
        found.append((name, re.sub(r"\d+", "#", match.group(3))))
    return found


def test_a_broker_outage_logs_each_repeated_client_failure_once(
    kafka_broker: BrokerHandle, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    if kafka_broker.flavor != APACHE_KAFKA:
        pytest.skip("needs a broker that can be stopped and started (the Apache Kafka launcher)")
    bootstrap = kafka_broker.bootstrap
    topic, app_id = unique_name("outage"), unique_name("outage-app")
    create_topic(bootstrap, topic, 2)
    env = {
        **base_env(tmp_path),
        "CREATORPULSE_KAFKA_BOOTSTRAP": bootstrap,
        "CREATORPULSE_CLICKHOUSE_URL": f"chdb://{tmp_path / 'store'}",
        "CREATORPULSE_INPUT_TOPIC": topic,
        "CREATORPULSE_APP_ID": app_id,
        "CREATORPULSE_PARTITIONS": "2",
        "CREATORPULSE_FLUSH_INTERVAL_S": "0.5",
    }
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "creatorpulse", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        publish(bootstrap, topic, 0, 100)
        wait_for(lambda: committed_total(bootstrap, app_id, topic) == 100, 120, worker)
        before = log_path.stat().st_size
        outage_started = time.monotonic()
        kafka_broker.restart()  # stop, start on the same port, wait until it answers
        outage_s = time.monotonic() - outage_started
        publish(bootstrap, topic, 100, 100)
        wait_for(lambda: committed_total(bootstrap, app_id, topic) == 200, 120, worker)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(30)
    text = log_path.read_bytes()[before:].decode(errors="replace")
    lines = library_lines(text)
    per_pattern = Counter(lines)
    assert outage_s < REPEAT_INTERVAL_S, f"the outage ({outage_s:.0f}s) outlasted one interval"
    # Each repeated failure is logged once; a second line only when it recurs after the
    # interval (while the worker recovers), and then with the count of those left out.
    repeated = {pattern: n for pattern, n in per_pattern.items() if n > 2}
    assert not repeated, f"{len(lines)} client lines in a {outage_s:.0f}s outage:\n{text[-4000:]}"
    print(f"{len(lines)} client lines, {len(per_pattern)} patterns, outage {outage_s:.1f}s")


def test_a_lost_produce_answer_fails_the_send_in_time_and_the_retry_loses_nothing(
    kafka_broker: BrokerHandle, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    # The worker reaches its own broker through a proxy that can lose the answers to
    # Produce requests; the test's clients use a direct listener. Unbounded (Faust's 20
    # minutes), one lost answer held a flush, and the partition's commits, that long.
    if kafka_broker.flavor != APACHE_KAFKA:
        pytest.skip("needs its own Apache Kafka broker with a second listener")
    from creatorpulse.brokers.apache import ApacheKafka
    from sinks.clickhouse import ClickHouseSink
    from tests.support.kafka_proxy import KafkaProxy
    from tests.support.processes import WorkerProcess

    direct, proxied, controller = free_port(), free_port(), free_port()
    proxy = KafkaProxy(proxied).start()
    broker = ApacheKafka(
        port=direct,
        controller_port=controller,
        extra_config={
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{direct},PROXIED://127.0.0.1:{proxied},"
                f"CONTROLLER://127.0.0.1:{controller}"
            ),
            "advertised.listeners": (
                f"PLAINTEXT://127.0.0.1:{direct},PROXIED://127.0.0.1:{proxy.port}"
            ),
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,PROXIED:PLAINTEXT,CONTROLLER:PLAINTEXT"
            ),
        },
    )
    bootstrap = f"127.0.0.1:{direct}"
    topic, app_id = unique_name("lost-answer"), unique_name("lost-answer-app")
    store = tmp_path / "store"
    worker = WorkerProcess(
        f"127.0.0.1:{proxy.port}",
        f"chdb://{store}",
        topic,
        app_id,
        tmp_path / "worker",
        partitions="2",
        kafka_send_timeout_s="3",
        alerts="0",
    )
    try:
        broker.start()
        create_topic(bootstrap, topic, 2)
        worker.start()
        assert worker.proc is not None
        publish(bootstrap, topic, 0, 50)
        wait_for(lambda: committed_total(bootstrap, app_id, topic) == 50, 120, worker.proc)

        proxy.lose_produce_answers.set()
        before = len(worker.log_path.read_bytes())  # a refusal is looked for from here on
        publish(bootstrap, topic, 50, 50)
        wait_for(lambda: b"Kafka refused" in worker.log_path.read_bytes()[before:], 30, worker.proc)
        assert proxy.lost > 0
        assert committed_total(bootstrap, app_id, topic) == 50  # nothing past the lost send

        proxy.lose_produce_answers.clear()
        wait_for(lambda: committed_total(bootstrap, app_id, topic) == 100, 60, worker.proc)
        assert worker.terminate() == 0
    finally:
        worker.stop_quietly()
        proxy.close()
        broker.stop()
    sink = ClickHouseSink(f"chdb://{store}")
    sink.start()
    try:
        rows = sink.query_rows(
            "SELECT sum(views) FROM {database}.creator_metrics FINAL "
            "WHERE campaign_id = 'c' AND window_size_s = 60"
        )
    finally:
        sink.close()
    # Records sent twice (the broker wrote what the worker never heard back about) are
    # changelog pieces and rows keyed by window: every event counts once.
    assert int(rows[0][0]) == 100, worker.log_tail()
