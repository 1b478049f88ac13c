"""`creatorpulse worker` against a ClickHouse that accepts connections and never answers.

Before the connect and read timeouts, the worker sat silent for the client's 300 s read
timeout. Now it must fail at start within seconds, exit 2, say once what to fix, and
never show the password.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e]

PASSWORD = "s3cret-pw-x7"


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts every connection and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    closing = threading.Event()

    def accept() -> None:
        while not closing.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)  # kept open, unread: the client waits for an answer

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        closing.set()
        server.close()
        for conn in held:
            conn.close()


def test_a_silent_clickhouse_fails_the_worker_start_within_seconds(
    silent_server: int, kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "CREATORPULSE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CREATORPULSE_CLICKHOUSE_URL": f"http://writer:{PASSWORD}@127.0.0.1:{silent_server}/db",
        "CREATORPULSE_DATA_DIR": str(tmp_path),
        "CREATORPULSE_WEB_PORT": "0",
    }
    env.pop("CREATORPULSE_CLICKHOUSE_CONNECT_TIMEOUT_S", None)  # the default is under test
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "creatorpulse", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=15,  # before the fix: silent for 300 s, so this raised
    )
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert elapsed < 15
    assert PASSWORD not in output
    # One message (wrapped to the terminal's width); before it at most the worker's own
    # progress lines (topics it created), no warnings or tracebacks.
    progress = [line for line in output.splitlines() if " INFO " in line]
    rest = "\n".join(line for line in output.splitlines() if line not in progress)
    assert rest.lstrip().startswith("error: "), output
    assert rest.count("error") == 1, output
    for noise in ("WARNING", "ERROR", "Traceback"):
        assert noise not in output, output
    message = " ".join(rest.split())
    assert f"http://writer:***@127.0.0.1:{silent_server}/db" in message
    assert "did not answer within 5 s" in message
    assert "CREATORPULSE_CLICKHOUSE_CONNECT_TIMEOUT_S" in message
