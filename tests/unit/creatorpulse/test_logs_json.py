"""`--log-format json`: one JSON object per line, with the line's own fields."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from creatorpulse.logs import JsonFormatter, formatter
from creatorpulse.runtime import configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_record_is_one_json_line_with_its_extra_fields() -> None:
    record = logging.LogRecord(
        "creatorpulse.web", logging.WARNING, __file__, 1, "store read failed:\n%s", ("x",), None
    )
    record.partition = 3  # as logging's extra= sets it
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "WARNING"
    assert data["logger"] == "creatorpulse.web"
    assert data["message"] == "store read failed:\nx"
    assert data["partition"] == 3
    assert data["ts"].endswith("+00:00")
    assert "args" not in data
    assert "msg" not in data


def test_an_exception_is_its_type_text_and_traceback() -> None:
    try:
        raise TimeoutError("ClickHouse did not answer")
    except TimeoutError:
        import sys

        record = logging.LogRecord("sinks", logging.ERROR, __file__, 1, "write", (), sys.exc_info())
    data = json.loads(JsonFormatter().format(record))
    assert data["error"] == "TimeoutError: ClickHouse did not answer"
    assert "Traceback" in data["traceback"]


def test_the_setting_picks_the_formatter() -> None:
    assert isinstance(formatter("json"), JsonFormatter)
    assert not isinstance(formatter("text"), JsonFormatter)
    with pytest.raises(ValueError, match="text or json"):
        formatter("xml")


def test_configured_json_logs_every_line_parses_and_repeats_are_still_limited(
    restore_logging: None,
) -> None:
    out = io.StringIO()
    configure_logging(stream=out, log_format="json")
    own = logging.getLogger("creatorpulse.test")
    own.info("worker %s started", "w1", extra={"partitions": 4})
    library = logging.getLogger("aiokafka.conn")
    for _ in range(5):
        library.warning("connection to node 1 failed")
    lines = out.getvalue().splitlines()
    parsed = [json.loads(line) for line in lines]
    assert parsed[0]["message"] == "worker w1 started"
    assert parsed[0]["partitions"] == 4
    assert [p["logger"] for p in parsed].count("aiokafka.conn") == 1
