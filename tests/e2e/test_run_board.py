"""The `creatorpulse run` board as a user meets it: on a terminal and in a pipe.

- On a pseudo-terminal of 80 and of 200 columns (the real tty path: rich measures the
  pty, the keys go through the pty in cbreak mode): every line fits, ids stay whole,
  a key re-sorts the board, ``q`` stops it cleanly.
- With stdout piped: periodic progress lines (JSON lines with ``--json``), and a
  second run continues the same demo campaign while ``--new-campaign`` starts another.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from creatorpulse.brokers.process import free_port
from sinks.clickhouse import ClickHouseSink

pytestmark = [pytest.mark.e2e, pytest.mark.clickhouse]

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][0-9A-B]")
CAMPAIGN = re.compile(r"\[(demo\d+)-c\d\d-[a-z]+\] creators=(\d+) views=(\d+)")


def run_env(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "CREATORPULSE_DATA_DIR": str(data_dir)}
    env["CREATORPULSE_WEB_PORT"] = str(free_port())
    for name in ("CREATORPULSE_KAFKA_BOOTSTRAP", "CREATORPULSE_CLICKHOUSE_URL", "COLUMNS"):
        env.pop(name, None)
    env["TERM"] = "xterm-256color"
    return env


RUN = [sys.executable, "-m", "creatorpulse", "run", "--campaigns", "2", "--creators", "6"]


def screen_text(raw: bytes) -> list[str]:
    """The lines a terminal would have shown, escapes removed."""
    text = ANSI.sub("", raw.decode(errors="replace"))
    return [line for chunk in text.split("\n") for line in chunk.split("\r")]


class PtyRun:
    """`creatorpulse run` on a pseudo-terminal of ``cols`` x ``rows``."""

    def __init__(self, data_dir: Path, cols: int, rows: int = 50) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.master = master
        self.output = b""
        self.proc = subprocess.Popen(
            RUN,
            env=run_env(data_dir),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)

    def read_until(self, found: Callable[[str], bool], timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the child closed the pty
                    break
                if not chunk:
                    break
                self.output += chunk
                if found(self.text()):
                    return self.text()
            if self.proc.poll() is not None:
                break
        raise AssertionError(f"not seen within {timeout_s} s:\n{self.text()[-4000:]}")

    def text(self) -> str:
        return "\n".join(screen_text(self.output))

    def send(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self, timeout_s: float = 60) -> int:
        """Wait for the exit, reading on: a child blocked on a full pty never exits."""
        deadline = time.monotonic() + timeout_s
        try:
            while self.proc.poll() is None and time.monotonic() < deadline:
                ready, _, _ = select.select([self.master], [], [], 0.2)
                if ready:
                    with contextlib.suppress(OSError):
                        self.output += os.read(self.master, 65536)
            if self.proc.poll() is None:
                raise AssertionError(f"still running after {timeout_s} s:\n{self.text()[-3000:]}")
            return self.proc.returncode
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            os.close(self.master)


@pytest.mark.parametrize(("cols", "rows"), [(80, 24), (200, 50)])
def test_live_board_on_a_terminal_fits_and_sorts_by_key(
    tmp_path: Path, cols: int, rows: int
) -> None:
    run = PtyRun(tmp_path / "state", cols, rows)
    try:
        # A board with ranked creators and the campaign lines: enough views have come in.
        run.read_until(lambda t: re.search(r"^\s+1\s+@", t, re.M) is not None, 120)
        run.read_until(lambda t: "sort by ER; keys:" in t, 10)
        run.send(b"w")
        run.read_until(lambda t: "sort by views; keys:" in t, 15)
        run.send(b"q")
    except BaseException:
        run.proc.send_signal(signal.SIGINT)
        run.close()
        raise
    code = run.close()
    lines = screen_text(run.output)
    text = "\n".join(lines)
    assert code == 0, text[-3000:]
    assert "stopped (exit 0)" in text
    too_wide = [line for line in lines if len(line.rstrip()) > cols]
    assert not too_wide, too_wide[:3]
    assert "…" not in text  # no id cut to an ellipsis, no screen cut off at the bottom
    shown = [int(n) for n in re.findall(r"\((\d+) of \d+ creators", text)]
    assert shown
    # As many creators as the height leaves room for: all 12 in 50 lines, fewer in 24.
    if rows == 24:
        assert 5 <= max(shown) < 12, shown
    else:
        assert max(shown) == 12, shown
    # Whole handles (@name.niche<n>) on the board, each on one line with its rank.
    ranked = re.findall(r"^\s+(\d+)\s+(@[a-z]+\.[a-z]+\d+)\s", text, re.M)
    assert ranked, text[-3000:]
    # The campaign's summary line: its id whole, then (creators at 200) views and ER.
    campaign_line = re.search(
        r"^ demo\d+-c01-[a-z]+\s+(\d+/\d+\s+)?[\d,.kM]+\s+[\d.]+%", text, re.M
    )
    assert campaign_line, text[-3000:]
    headers = [line for line in lines if line.lstrip().startswith("#")]
    assert headers
    if cols == 200:
        assert any("watch" in h and "tier" in h for h in headers)
    else:
        assert not any("watch" in h for h in headers)  # dropped first at 80 columns
        assert all("ER" in h for h in headers if "creator" in h)


class PipedRun:
    """`creatorpulse run` with stdout piped, its lines collected as they come."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        env = run_env(data_dir)
        self.web_port = env["CREATORPULSE_WEB_PORT"]
        self.proc = subprocess.Popen(
            [*RUN, "--progress-s", "2", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.err_lines: list[str] = []
        self._new = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(
                target=self._read, args=(self.proc.stderr, self.err_lines), daemon=True
            ),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str] | None, into: list[str]) -> None:
        assert stream is not None
        for line in stream:
            with self._new:
                into.append(line.rstrip("\n"))
                self._new.notify_all()

    def wait_for(
        self, found: Callable[[str], bool], timeout_s: float = 120, *, stderr: bool = False
    ) -> str:
        deadline = time.monotonic() + timeout_s
        with self._new:
            while True:
                for line in self.err_lines if stderr else self.lines:
                    if found(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    # Say why: the run exited (with its code) or the time ran out, and
                    # what both streams said last, so a rare failure can be read.
                    why = (
                        f"run exited with {self.proc.returncode}"
                        if self.proc.returncode is not None
                        else f"not within {timeout_s:.0f}s"
                    )
                    raise AssertionError(
                        f"not seen ({why}); stdout:\n"
                        + "\n".join(self.lines[-10:])
                        + "\nstderr:\n"
                        + "\n".join(self.err_lines[-30:])
                    )
                self._new.wait(min(left, 1.0))

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(60)
        for reader in self._readers:
            reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return self.proc.returncode, "\n".join(self.err_lines)


def stored_views(data_dir: Path) -> dict[str, int]:
    """All-time views per campaign, from the minute windows of the run's (closed) store."""
    sink = ClickHouseSink(f"chdb://{(data_dir / 'chdb').resolve()}")
    sink.start()
    try:
        rows = sink.query_rows(
            "SELECT campaign_id, sum(views) FROM {database}.creator_metrics FINAL "
            "WHERE window_size_s = 60 GROUP BY campaign_id"
        )
    finally:
        sink.close()
    return {str(r[0]): int(r[1]) for r in rows}


def campaign_views(line: str) -> dict[str, int]:
    return {m.group(0).split("]")[0][1:]: int(m.group(3)) for m in CAMPAIGN.finditer(line)}


def test_piped_run_prints_progress_and_continues_the_same_campaign(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"

    first = PipedRun(data_dir)
    line = first.wait_for(lambda ln: "top by ER:" in ln)
    code, err = first.stop()
    assert code == 0, err[-3000:]
    assert "starting the embedded broker" in err
    assert "creating the schema" in err
    assert "session 1, new" in err
    # Periodic lines, each one line with the counters and the campaigns.
    assert len(first.lines) >= 2
    # (A blank line is not counted: something below the CLI rarely writes one.)
    odd = [ln for ln in first.lines if ln and not re.match(r"\d\d:\d\d:\d\d records=\d+ ", ln)]
    assert not odd, odd[:5]
    assert not any("\x1b" in ln for ln in first.lines)
    views_first = campaign_views(first.lines[-1])
    assert len(views_first) == 2, first.lines[-1]
    run_ids = {c.split("-")[0] for c in views_first}
    assert len(run_ids) == 1
    assert "spend=" in line
    assert " USD " in line

    stored_first = stored_views(data_dir)
    assert set(stored_first) == set(views_first)

    second = PipedRun(data_dir, "--json")
    # Once this session has counted some events of its own, its board and the store show them.
    record = second.wait_for(lambda ln: json.loads(ln)["stats"]["events counted"] >= 20)
    code, err = second.stop()
    assert code == 0, err[-3000:]
    assert "session 2, continued" in err
    board = json.loads(record)
    assert {"time", "stats", "campaigns", "creators", "sort"} <= set(board)
    # The same campaigns, not a second copy of the creators.
    assert {c["campaign_id"] for c in board["campaigns"]} == set(views_first)
    handles = [(c["campaign_id"], c["creator_id"]) for c in board["creators"]]
    assert len(handles) == len(set(handles))
    # Their totals go on growing. Compared in the store over all time: the board shows the
    # trailing hour, and the first session's hour of history leaves it minute by minute,
    # at times faster than the live events come in.
    stored_second = stored_views(data_dir)
    assert set(stored_second) == set(stored_first)
    assert all(stored_second[c] >= stored_first[c] for c in stored_first), stored_second
    assert sum(stored_second.values()) > sum(stored_first.values())

    third = PipedRun(data_dir, "--new-campaign")
    line = third.wait_for(lambda ln: bool(campaign_views(ln)))
    code, err = third.stop()
    assert code == 0, err[-3000:]
    assert "session 1, new" in err
    fresh = set(campaign_views(third.lines[-1]))
    assert fresh
    assert not fresh & set(views_first)  # only the new campaign is on its board


SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def test_quick_start_with_the_sample_data(tmp_path: Path) -> None:
    """The README's quick start: a run without the simulator, then profiles and fees,
    then the sample events; the board ranks them with handles, CPA and ROAS in EUR."""
    running = PipedRun(tmp_path / "state", "--no-simulate")
    try:
        started = running.wait_for(lambda ln: "(embedded)" in ln, stderr=True)
        bootstrap = re.search(r"broker (\S+) \(embedded\)", started)
        assert bootstrap, started
        cli = [sys.executable, "-m", "creatorpulse"]
        flags = ["--kafka-bootstrap", bootstrap.group(1)]
        loaded = subprocess.run(
            [*cli, "load", *flags, str(SAMPLES / "reference.jsonl")],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert loaded.returncode == 0, loaded.stderr
        assert "published 3 profiles" in loaded.stderr
        assert "3 contracts" in loaded.stderr
        replayed = subprocess.run(
            [*cli, "replay", *flags, str(SAMPLES / "events.jsonl")],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert replayed.returncode == 0, replayed.stderr
        line = running.wait_for(
            lambda ln: "[spring-launch] creators=3" in ln and "@ben.lifts" in ln, 90
        )
    finally:
        code, err = running.stop()
    assert code == 0, err[-3000:]
    assert " EUR " in line  # fees with their currency
    assert re.search(r"cpa=\d", line), line
    assert "top by ER: @ben.lifts" in line  # the sample's strongest engagement
