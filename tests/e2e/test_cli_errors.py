"""The CLI's errors as a user meets them: exit codes and one message that says what
to do, no third-party exception text, no client log flood.

`top` is run beside a live `creatorpulse run` that holds the chDB store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from creatorpulse.brokers.process import free_port
from tests.e2e.test_run_board import PipedRun

pytestmark = [pytest.mark.e2e, pytest.mark.clickhouse]

CLI = [sys.executable, "-m", "creatorpulse"]
RAW = ("DB::Exception", "Code: 76", "Traceback", "Cannot lock file")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_top_beside_a_running_worker(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    running = PipedRun(data_dir)
    try:
        running.wait_for(lambda ln: "creators=" in ln)
        env = {**os.environ, "CREATORPULSE_DATA_DIR": str(data_dir)}
        env["CREATORPULSE_WEB_PORT"] = running.web_port

        table = cli("top", "--sort", "views", env=env)
        as_list = cli("top", "--json", "--limit", "2", env=env)
        whole = cli("top", "--board-json", env=env)
        nope = cli("top", "--campaign", "nope", env=env)
        no_port = cli("top", env={**env, "CREATORPULSE_WEB_PORT": "0"})
        wrong_port = cli("top", "--web-port", str(free_port()), env=env)
        bad_sort = cli("top", "--sort", "likes", env=env)
    finally:
        code, _ = running.stop()
    assert code == 0

    for result in (table, as_list, whole, nope, no_port, wrong_port, bad_sort):
        for raw in RAW:
            assert raw not in result.stderr, result.stderr
    assert table.returncode == 0, table.stderr
    assert "sorted by views" in table.stdout
    assert table.stderr == ""

    assert as_list.returncode == 0, as_list.stderr
    items = json.loads(as_list.stdout)
    assert isinstance(items, list)
    assert len(items) == 2
    assert {"campaign_id", "creator_id", "views", "rank", "cpa", "roas", "currency"} <= set(
        items[0]
    )
    board = json.loads(whole.stdout)
    assert board["campaigns"]
    assert board["campaigns"][0]["currency"] == "USD"

    assert nope.returncode == 1
    assert "no such campaign: 'nope'" in nope.stderr
    assert "waiting" not in nope.stdout + nope.stderr

    assert no_port.returncode == 2
    assert no_port.stderr.count("\n") == 1, no_port.stderr
    assert "in use by another process" in no_port.stderr
    assert "--web-port" in no_port.stderr

    assert wrong_port.returncode == 2
    assert "does not answer" in wrong_port.stderr
    assert "--web-port" in wrong_port.stderr

    assert bad_sort.returncode == 2
    assert "er|ctr|cvr|cpa|roas|views|revenue" in bad_sort.stderr


@pytest.mark.parametrize("command", ["worker", "sink", "produce"])
def test_an_unreachable_broker_fails_fast_with_one_message(command: str, tmp_path: Path) -> None:
    env = {**os.environ, "CREATORPULSE_DATA_DIR": str(tmp_path)}
    env.pop("CREATORPULSE_KAFKA_BOOTSTRAP", None)
    started = time.monotonic()
    result = cli(command, "--kafka-bootstrap", "127.0.0.1:1", env=env)
    elapsed = time.monotonic() - started
    assert result.returncode == 2
    assert elapsed < 12, elapsed  # about 10 s: the wait for a broker still starting, and no more
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot reach Kafka at 127.0.0.1:1" in lines[0]
    assert "--kafka-bootstrap" in lines[0]
