"""The run's broker and its topics, over :mod:`creatorpulse.brokers`.

One broker serves a whole run: real Apache Kafka (:class:`~creatorpulse.brokers.apache.
ApacheKafka`, jars fetched with Maven) or the embedded tansu broker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from creatorpulse.bench.options import EMBEDDED, PARTITIONS, BenchError
from creatorpulse.brokers.apache import ApacheKafka, KafkaLauncherError
from creatorpulse.brokers.embedded import EmbeddedBroker, EmbeddedBrokerError, resolve_binary


@dataclass
class BrokerInfo:
    """The run's broker, as the results record it."""

    bootstrap: str
    flavour: str
    version: str
    ready_s: float | None


@contextlib.contextmanager
def open_broker(flavour: str, work_dir: Path) -> Iterator[BrokerInfo]:
    """Start the run's broker; stop it on the way out, whatever happens."""
    if flavour == EMBEDDED:
        try:
            binary = resolve_binary()
            embedded = EmbeddedBroker(log_dir=work_dir, binary=binary)
            embedded.start()
        except EmbeddedBrokerError as exc:
            raise BenchError(f"the embedded broker did not start: {exc}") from None
        try:
            yield BrokerInfo(
                embedded.bootstrap,
                "tansu (embedded)",
                tansu_version(binary),
                embedded.ready_seconds,
            )
        finally:
            embedded.stop()
        return
    hint = "; or run `creatorpulse bench --broker embedded` (tansu, no Java needed)"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise BenchError("`java` (17) is not installed: real Apache Kafka needs it" + hint)
    kafka = ApacheKafka()
    try:
        kafka.start()
    except KafkaLauncherError as exc:
        raise BenchError(f"Apache Kafka did not start: {exc}{hint}") from None
    try:
        yield BrokerInfo(kafka.bootstrap, "apache-kafka", kafka.version, kafka.ready_seconds)
    finally:
        kafka.stop()


def tansu_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip().removeprefix("tansu").strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def create_topic(
    bootstrap: str, name: str, partitions: int = PARTITIONS, timeout_s: float = 30.0
) -> None:
    """Create ``name`` and wait until every partition has a leader."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="creatorpulse-bench")
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics([NewTopic(name, partitions, 1)], timeout_ms=int(timeout_s * 1000))
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                described = admin.describe_topics([name])
                parts = (described[0].get("partitions") or []) if described else []
                leaders = [p for p in parts if p.get("leader_id", -1) >= 0]
                if len(parts) == partitions and len(leaders) == partitions:
                    return
            except Exception:  # metadata lags right after CreateTopics
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"topic {name} has no leaders after {timeout_s:.0f}s")
            time.sleep(0.1)
    finally:
        admin.close()
