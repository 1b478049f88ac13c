"""The child-process helpers every broker and benchmark process uses, on real processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from creatorpulse.brokers.embedded import EmbeddedBroker, EmbeddedBrokerError
from creatorpulse.brokers.process import (
    ChildExited,
    NotReady,
    free_port,
    kill_group,
    stop_group,
    tail,
    wait_metadata,
)


def _gone(pid: int, timeout_s: float = 10.0) -> bool:
    """True once ``pid`` no longer runs (absent, or a zombie waiting for its new parent)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


def _stubborn_group() -> tuple[subprocess.Popen[bytes], int]:
    """A shell ignoring SIGTERM in its own group, with a grandchild ``sleep`` that does too."""
    proc = subprocess.Popen(
        ["sh", "-c", 'trap "" TERM; sleep 60 & echo $!; wait'],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None
    grandchild = int(proc.stdout.readline())
    return proc, grandchild


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_stop_group_escalates_to_sigkill_for_the_whole_group() -> None:
    proc, grandchild = _stubborn_group()
    try:
        stop_group(proc, timeout=0.5)
        assert proc.returncode == -signal.SIGKILL
        assert _gone(grandchild)
    finally:
        kill_group(proc)
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_hard_stop_kills_without_waiting() -> None:
    proc, grandchild = _stubborn_group()
    try:
        started = time.monotonic()
        stop_group(proc, timeout=30.0, graceful=False)
        assert proc.returncode == -signal.SIGKILL
        assert time.monotonic() - started < 10.0  # never waited out the 30 s
        assert _gone(grandchild)
    finally:
        kill_group(proc)
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_a_child_dies_with_its_parent(tmp_path: Path) -> None:
    parent = textwrap.dedent(
        """
        import os, subprocess, sys
        from creatorpulse.brokers.process import die_with_parent
        child = subprocess.Popen(["sleep", "60"], preexec_fn=die_with_parent())
        print(child.pid, flush=True)
        os._exit(0)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", parent], capture_output=True, text=True, timeout=30, check=True
    )
    child = int(out.stdout.strip())
    gone = _gone(child)
    if not gone:
        os.kill(child, signal.SIGKILL)
    assert gone


def test_wait_metadata_reports_a_child_that_exited() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    try:
        with pytest.raises(ChildExited) as caught:
            wait_metadata(
                proc,
                free_port(),
                deadline=time.monotonic() + 30,
                probe_timeout_s=1.0,
                interval_s=0.02,
                client_id="test",
            )
        assert caught.value.returncode == 3
    finally:
        kill_group(proc)


def test_wait_metadata_gives_up_at_the_deadline_with_the_last_probe() -> None:
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        with pytest.raises(NotReady) as caught:
            wait_metadata(
                proc,
                free_port(),  # nobody listens there
                deadline=time.monotonic() + 0.3,
                probe_timeout_s=1.0,
                interval_s=0.02,
                client_id="test",
            )
        assert caught.value.last_probe.startswith("connect:")
    finally:
        kill_group(proc)


def test_tail_reads_only_the_end(tmp_path: Path) -> None:
    log = tmp_path / "broker.log"
    log.write_bytes(b"start-up noise\n" * 1000 + b"the error\n")
    assert tail(log, 10) == "the error\n"
    assert tail(tmp_path / "missing.log", 10) == ""


def test_free_port_avoids_the_excluded_ports() -> None:
    first = free_port()
    assert free_port(frozenset({first})) != first


def test_a_broker_that_exits_at_start_up_is_reported_with_its_log(tmp_path: Path) -> None:
    broker = EmbeddedBroker(log_dir=tmp_path, binary=shutil.which("false"))
    with pytest.raises(EmbeddedBrokerError, match="not started"):
        _ = broker.bootstrap
    with pytest.raises(EmbeddedBrokerError, match=r"tansu exited with code 1 during start-up"):
        broker.start()
    assert not broker.is_running()
    assert broker.port is None
