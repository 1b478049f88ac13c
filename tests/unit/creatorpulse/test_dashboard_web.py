"""The dashboard's pure parts: parameters, the events/s rate, the stream bound and its
event format, freshness from the worker's watermark, and the sink process's server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from types import SimpleNamespace
from typing import Any

import pytest

from creatorpulse.web.dashboard import BadParameter, Dashboard, _Rate
from creatorpulse.web.routes import (
    StreamClients,
    board_params,
    overview_params,
    serve_in_thread,
    sse_event,
)


def test_board_parameters_defaults_and_bounds() -> None:
    assert board_params({}) == {
        "campaign": None,
        "tier": None,
        "last_s": 3600,
        "sort": "er",
        "limit": 100,
    }
    got = board_params({"campaign": " c1 ", "tier": "micro", "sort": "roas", "limit": "5"})
    assert (got["campaign"], got["tier"], got["sort"], got["limit"]) == ("c1", "micro", "roas", 5)
    with pytest.raises(BadParameter) as raised:
        board_params({"last_s": "0"})
    assert raised.value.name == "last_s"
    with pytest.raises(BadParameter) as raised:
        overview_params({"hours": "25"})
    assert raised.value.name == "hours"
    with pytest.raises(BadParameter) as raised:
        board_params({"campaign": "x" * 257})
    assert raised.value.name == "campaign"


def test_events_rate_over_the_recent_samples() -> None:
    rate = _Rate(span_s=10)
    assert rate.add(0.0, 0) is None  # one sample: no rate yet
    assert rate.add(1.0, 50) == 50.0
    assert rate.add(2.0, 150) == 75.0
    for t in range(3, 30):
        rate.add(float(t), 150 + (t - 2) * 10)
    # Old samples fall out: only the last ten seconds, at 10 events/s, count.
    assert rate.add(30.0, 150 + 28 * 10) == pytest.approx(10.0)


def test_stream_clients_are_bounded() -> None:
    clients = StreamClients(limit=2)
    assert clients.try_enter()
    assert clients.try_enter()
    assert not clients.try_enter()
    clients.leave()
    assert clients.try_enter()
    assert clients.open == 2


def test_an_event_is_id_type_and_one_line_of_json() -> None:
    raw = sse_event(7, {"a": "two\nlines"}).decode()
    assert raw.endswith("\n\n")
    lines = raw.rstrip("\n").split("\n")
    assert lines[:3] == ["id: 7", "event: snapshot", "retry: 2000"]
    assert json.loads(lines[3].removeprefix("data: ")) == {"a": "two\nlines"}


def _processor(marks: dict[int, int | None], last_write: float | None) -> Any:
    writer = SimpleNamespace(
        stats=SimpleNamespace(
            last_write_unix=last_write,
            rows_written=0,
            rows_pending=0,
            rows_refused=0,
            failures=0,
            last_error="",
        )
    )
    states = {
        p: SimpleNamespace(watermark=SimpleNamespace(value_ms=m), offsets={}, windows={})
        for p, m in marks.items()
    }
    return SimpleNamespace(
        writer=writer,
        states=states,
        stats=SimpleNamespace(
            events_counted=0,
            records=0,
            duplicates=0,
            late=0,
            invalid=0,
            dead_letters_by_reason={},
            send_failures=0,
        ),
        config=SimpleNamespace(input_topic="in"),
        topics=SimpleNamespace(rekey="in-rekeyed"),
    )


def test_freshness_is_sampled_at_each_finished_write() -> None:
    now = [1000.0]
    processor = _processor({0: 990_000, 1: 995_000}, last_write=None)
    dashboard = Dashboard(None, processor, clock=lambda: now[0])
    assert dashboard.health()["freshness_s"] is None  # nothing written yet
    processor.writer.stats.last_write_unix = 999.0
    assert dashboard.health()["freshness_s"] == pytest.approx(5.0)  # the newest watermark
    # Events applied since, but no new write: what is queryable has not moved.
    processor.states[1].watermark.value_ms = 999_500
    now[0] = 1002.0
    assert dashboard.health()["freshness_s"] == pytest.approx(7.0)
    processor.writer.stats.last_write_unix = 1001.5
    assert dashboard.health()["freshness_s"] == pytest.approx(2.5)


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_sink_process_serves_metrics_and_the_dashboard_behind_its_token() -> None:
    dashboard = Dashboard(None, sink_stats=lambda: {"rows_written": 3})
    port, stop = serve_in_thread(
        dashboard, "127.0.0.1", 0, token="t0ken", metrics=lambda: b"creatorpulse_up 1\n"
    )
    try:
        base = f"http://127.0.0.1:{port}"
        assert _get(f"{base}/api/health")[0] == 401
        assert _get(f"{base}/metrics")[0] == 401
        status, body = _get(f"{base}/api/health", "t0ken")
        assert status == 200
        assert json.loads(body)["sink"] == {"rows_written": 3}
        assert _get(f"{base}/metrics", "t0ken") == (200, b"creatorpulse_up 1\n")
        status, page = _get(f"{base}/dashboard", "t0ken")
        assert status == 200
        assert b"/static/dashboard/vendor/uPlot.iife.min.js" in page
        status, script = _get(f"{base}/static/dashboard/vendor/uPlot.iife.min.js", "t0ken")
        assert status == 200
        assert b"uPlot" in script
    finally:
        stop()
