"""The start-up check of a given Kafka: quick, silent, and one message naming the setting."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from creatorpulse import runtime
from creatorpulse.brokers.process import free_port
from creatorpulse.settings import SettingsError

FIX = "--kafka-bootstrap / CREATORPULSE_KAFKA_BOOTSTRAP"


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (not Kafka)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:  # closed at teardown
                return

    threading.Thread(target=accept, daemon=True).start()
    yield int(server.getsockname()[1])
    server.close()
    for conn in accepted:
        conn.close()


def test_a_running_kafka_passes_also_behind_a_dead_bootstrap_host(kafka_bootstrap: str) -> None:
    runtime.check_kafka(kafka_bootstrap)
    runtime.check_kafka(f"127.0.0.1:{free_port()},{kafka_bootstrap}")


def test_nothing_listening_fails_after_the_timeout_with_one_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(SettingsError) as raised:
        runtime.check_kafka(bootstrap, timeout_s=1.0)
    assert 1.0 <= time.monotonic() - started < 3.0
    assert str(raised.value).startswith(f"cannot reach Kafka at {bootstrap} within 1s (")
    assert "Connection refused" in str(raised.value)
    assert FIX in str(raised.value)
    assert [r for r in caplog.records if r.name.startswith("kafka")] == []


def test_a_listener_that_is_not_kafka_fails_within_the_timeout_without_client_logs(
    silent_listener: int, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap = f"127.0.0.1:{silent_listener}"
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(SettingsError) as raised:
        runtime.check_kafka(bootstrap, timeout_s=2.0)
    assert time.monotonic() - started < 5.0
    assert "accepts connections but does not answer as Kafka" in str(raised.value)
    assert FIX in str(raised.value)
    assert [r for r in caplog.records if r.name.startswith("kafka")] == []
