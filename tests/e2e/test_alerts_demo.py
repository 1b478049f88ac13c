"""The demo as `make run` starts it, alerts on (the default): within three minutes the log
hook shows an alert for a planted breakout creator, never one for a creator hot on a tiny
sample, and `creatorpulse alerts` (list and silence) reaches the running process's
store through its web port."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from creatorpulse.brokers.process import free_port
from producers.simulator import CampaignSimulator, SimulationConfig

pytestmark = [pytest.mark.e2e, pytest.mark.clickhouse]

FIRING = re.compile(r"alert type=creator\.outperforming kind=firing .*")


def suffixes(ids: frozenset[str]) -> set[str]:
    return {i.rsplit("-", 1)[1] for i in ids}


def test_make_run_fires_a_planted_alert_and_the_cli_reaches_it(tmp_path: Path) -> None:
    # The cast `run` simulates by default (seed 7, 3 campaigns of 12): ids differ per run
    # only in their prefix.
    cast = CampaignSimulator(
        SimulationConfig(seed=7, campaigns=3, creators_per_campaign=12, tiny_hot_per_campaign=1)
    )
    planted, tiny = suffixes(cast.outperformers()), suffixes(cast.tiny_hot())
    port = free_port()
    env = {
        **os.environ,
        "CREATORPULSE_DATA_DIR": str(tmp_path / "state"),
        "CREATORPULSE_WEB_PORT": str(port),
    }
    for name in ("KAFKA_BOOTSTRAP", "CLICKHOUSE_URL", "ALERTS", "HOOKS", "ALERT_RULES"):
        env.pop(f"CREATORPULSE_{name}", None)
    run_log = tmp_path / "state" / "run.log"
    with open(tmp_path / "run.out", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "creatorpulse", "run"], env=env, stdout=out, stderr=out
        )
    try:
        started = time.monotonic()
        lines: list[str] = []
        while time.monotonic() - started < 180 and proc.poll() is None and not lines:
            if run_log.exists():
                lines = FIRING.findall(run_log.read_text(errors="replace"))
            time.sleep(1)
        assert lines, (tmp_path / "run.out").read_text(errors="replace")[-3000:]
        fired = {c.rsplit("-", 1)[1] for line in lines for c in re.findall(r"creator=(\S+)", line)}
        assert fired & planted, (fired, planted)
        assert not fired & tiny

        cli = [sys.executable, "-m", "creatorpulse", "alerts"]
        listed = subprocess.run([*cli, "--json"], env=env, capture_output=True, timeout=60)
        assert listed.returncode == 0, listed.stderr.decode()
        alerts = json.loads(listed.stdout)
        creators = {a["creator_id"].rsplit("-", 1)[1] for a in alerts}
        assert creators & planted
        assert not creators & tiny
        silenced = subprocess.run(
            [*cli, "silence", "--creator", alerts[0]["creator_id"], "--for", "1h"],
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert silenced.returncode == 0, silenced.stderr.decode()
        assert b"until" in silenced.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    assert code == 0, (tmp_path / "run.out").read_text(errors="replace")[-3000:]
