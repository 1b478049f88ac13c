"""The libraries' repeated log lines are rate-limited; ours never are."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from creatorpulse import logs
from creatorpulse.logs import RepeatLimiter, silenced


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def output(clock: Clock) -> Iterator[io.StringIO]:
    """What a handler with the limiter writes, for loggers under ``test_logs_*``."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    handler.addFilter(RepeatLimiter(30.0, clock=clock))
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_a_repeated_library_line_is_logged_once_per_interval_with_the_count(
    clock: Clock, output: io.StringIO
) -> None:
    client = logging.getLogger("aiokafka")
    for _ in range(300):  # 30 s of retries, one every 100 ms
        client.error("Unable connect to node with id %s", 1)
        clock.now += 0.1
    assert lines(output) == ["aiokafka ERROR Unable connect to node with id 1"]

    clock.now += 5.0
    client.error("Unable connect to node with id %s", 1)
    client.error("Unable connect to node with id %s", 1)
    assert lines(output)[1:] == [
        "aiokafka ERROR Unable connect to node with id 1 [299 more like this in the 35s "
        "before, not logged]"
    ]


def test_a_line_after_a_quiet_interval_carries_no_count(clock: Clock, output: io.StringIO) -> None:
    client = logging.getLogger("kafka.net.manager")
    client.warning("Bootstrap bootstrap-0 not ready; waiting %.2f secs", 0.11)
    clock.now += 31
    client.warning("Bootstrap bootstrap-0 not ready; waiting %.2f secs", 0.35)
    assert lines(output) == [
        "kafka.net.manager WARNING Bootstrap bootstrap-0 not ready; waiting 0.11 secs",
        "kafka.net.manager WARNING Bootstrap bootstrap-0 not ready; waiting 0.35 secs",
    ]


def test_kinds_are_told_apart_by_logger_level_and_template_not_by_numbers(
    output: io.StringIO,
) -> None:
    logging.getLogger("aiokafka").error("Unable connect to node with id 1")
    logging.getLogger("aiokafka").error("Unable connect to node with id 2")  # same kind
    logging.getLogger("aiokafka").warning("Unable connect to node with id 1")
    logging.getLogger("aiokafka.consumer").error("Unable connect to node with id 1")
    logging.getLogger("aiokafka").error("Unable to update metadata from [1]")
    assert lines(output) == [
        "aiokafka ERROR Unable connect to node with id 1",
        "aiokafka WARNING Unable connect to node with id 1",
        "aiokafka.consumer ERROR Unable connect to node with id 1",
        "aiokafka ERROR Unable to update metadata from [1]",
    ]


@pytest.mark.parametrize("name", ["creatorpulse", "creatorpulse.worker", "sinks.clickhouse"])
def test_our_own_lines_are_never_left_out(name: str, output: io.StringIO) -> None:
    for _ in range(5):
        logging.getLogger(name).warning("ClickHouse write failed, retrying")
    assert len(lines(output)) == 5


def test_the_table_of_kinds_stays_bounded(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "MAX_KINDS", 10)
    limiter = RepeatLimiter(30.0, clock=clock)
    for i in range(25):
        record = logging.LogRecord(
            "faust", logging.ERROR, __file__, 1, f"kind {chr(65 + i)}", (), None
        )
        assert limiter.filter(record)
        clock.now += 31  # each kind's interval is over by the next one
    assert limiter.kinds <= 10


def test_silenced_drops_a_library_logger_and_its_children_then_restores_it(
    output: io.StringIO,
) -> None:
    logging.getLogger("kafka").setLevel(logging.WARNING)
    with silenced("kafka"):
        logging.getLogger("kafka.net.manager").error("Connection failed")
        logging.getLogger("creatorpulse").info("still here")
    logging.getLogger("kafka.net.manager").error("Connection failed again")
    assert lines(output) == [
        "creatorpulse INFO still here",
        "kafka.net.manager ERROR Connection failed again",
    ]
    assert logging.getLogger("kafka").level == logging.WARNING
