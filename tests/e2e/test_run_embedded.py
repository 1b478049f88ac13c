"""`creatorpulse run` as `make run` starts it: embedded broker, chDB store, simulator.

Run it, stop it with Ctrl-C (SIGINT), run it again on the same store: both runs exit
0, the second keeps what the first wrote, and hourly totals always equal the sum of
their minutes (a restart must not reset an open window).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from creatorpulse.brokers.process import free_port
from sinks.clickhouse import ClickHouseSink

pytestmark = [pytest.mark.e2e, pytest.mark.clickhouse]


def stats(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=2) as response:
            return dict(json.loads(response.read()))
    except OSError:
        return {}


def run_once(data_dir: Path, log: Path, *, min_rows: int, timeout_s: float = 90) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ, "CREATORPULSE_DATA_DIR": str(data_dir), "CREATORPULSE_WEB_PORT": str(port)}
    env.pop("CREATORPULSE_KAFKA_BOOTSTRAP", None)
    env.pop("CREATORPULSE_CLICKHOUSE_URL", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "creatorpulse", "run", "--campaigns", "2", "--creators", "4"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        seen: dict[str, Any] = {}
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                seen = stats(port) or seen
                if seen.get("rows_written", 0) >= min_rows:
                    break
                time.sleep(1)
        finally:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(60)
    output = log.read_text(errors="replace")
    assert code == 0, output[-3000:]
    assert seen.get("rows_written", 0) >= min_rows, output[-3000:]
    assert "stopped (exit 0)" in output
    return seen


def read_windows(data_dir: Path) -> dict[tuple[str, str, int, int], int]:
    sink = ClickHouseSink(f"chdb://{(data_dir / 'chdb').resolve()}")
    sink.start()
    try:
        rows = sink.query_rows(
            "SELECT campaign_id, creator_id, window_size_s, toUnixTimestamp(window_start), views "
            "FROM {database}.creator_metrics FINAL"
        )
    finally:
        sink.close()
    return {(r[0], r[1], int(r[2]), int(r[3])): int(r[4]) for r in rows}


def assert_hours_sum_their_minutes(windows: dict[tuple[str, str, int, int], int]) -> None:
    hours: dict[tuple[str, str, int], int] = {}
    for (campaign, creator, size, start), views in windows.items():
        if size == 60:
            key = (campaign, creator, start - start % 3600)
            hours[key] = hours.get(key, 0) + views
    for (campaign, creator, size, start), views in windows.items():
        if size == 3600:
            assert views == hours.get((campaign, creator, start), 0), (campaign, creator, start)


def test_run_twice_on_the_same_store(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    first = run_once(data_dir, tmp_path / "run1.log", min_rows=20)
    assert first["events_counted"] > 0
    after_first = read_windows(data_dir)
    assert after_first
    assert sum(after_first.values()) > 0
    assert_hours_sum_their_minutes(after_first)

    run_once(data_dir, tmp_path / "run2.log", min_rows=20)
    after_second = read_windows(data_dir)
    assert set(after_first) <= set(after_second)
    # The second run continues the same demo campaign: its events may land in windows the
    # first run opened (both runs can fall in the same minutes), so the proof that it
    # counted is more views, on top of every window the first run left.
    assert {k[0] for k in after_second} == {k[0] for k in after_first}
    assert sum(after_second.values()) > sum(after_first.values())
    for key, views in after_first.items():
        assert after_second[key] >= views, key
    assert_hours_sum_their_minutes(after_second)
