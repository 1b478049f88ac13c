"""The benchmark's subprocesses: the creatorpulse worker and sink, the textbook baseline.

Each runs in its own process group and dies with the benchmark (:mod:`creatorpulse.brokers.
process`); :func:`wait_until_written` polls a worker's ``/stats`` until every window it
read is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Generic, Self, TypeVar

from creatorpulse.bench.figures import DoneTracker, rate
from creatorpulse.bench.machine import parse_vm_hwm_mb, read_proc, rss_mb
from creatorpulse.bench.options import (
    FLUSH_INTERVAL_S,
    GRACE_S,
    PARTITIONS,
    POLL_RUNNING_S,
    POLL_STARTUP_S,
    WINDOWS,
    BenchError,
)
from creatorpulse.brokers.process import die_with_parent, free_port, kill_group, tail

#: The directory that holds the ``creatorpulse`` package (a checkout's root, or
#: site-packages): workers start there, so ``python -m creatorpulse`` runs this same code.
PACKAGE_ROOT: Final = Path(__file__).resolve().parents[2]
#: How much of a child's log an error message quotes.
LOG_TAIL_BYTES: Final = 3000


def log_tail(path: Path) -> str:
    """The end of a child's log, for an error message."""
    return tail(path, LOG_TAIL_BYTES)


def run_baseline(
    bootstrap: str, topic: str, expect: int, log_path: Path, timeout_s: float, bare: bool = False
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "creatorpulse.bench.baseline",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--expect",
        str(expect),
        "--partitions",
        str(PARTITIONS),
        *(["--bare"] if bare else []),
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            # Faust puts its data directory ("<app id>-data") in the working directory.
            cwd=log_path.parent,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            raise BenchError(
                f"the textbook baseline did not process {expect:,} events in {timeout_s:.0f}s "
                f"(log {log_path})"
            ) from None
        except BaseException:
            kill_group(proc)
            raise
    result = parse_json_line(out.decode("utf-8", "replace"))
    if result is None:
        raise BenchError(
            f"the textbook baseline exited {proc.returncode} without a result:\n"
            f"{log_tail(log_path)}"
        )
    result["events_per_s"] = rate(result["events"], result["seconds"])
    result["cpu_s_per_event"] = result["cpu_s"] / result["events"]
    result["exit_code"] = proc.returncode
    return dict(result)


def parse_json_line(text: str) -> dict[str, Any] | None:
    """The last JSON object on a line of ``text`` (terminal escapes before it are ignored)."""
    for line in reversed(text.splitlines()):
        start = line.find("{")
        if start < 0:
            continue
        try:
            value = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def parse_sample(text: str, name: str) -> float | None:
    """The value of the unlabelled sample ``name`` in Prometheus's text format."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == name:
            try:
                return float(parts[1])
            except ValueError:
                return None
    return None


def group_lag(bootstrap: str, group: str, topics: Sequence[str]) -> int | None:
    """Records of ``topics`` that consumer ``group`` has not committed (None: unknown yet)."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        try:
            committed = admin.list_group_offsets(group).get(group, {})
            partitions = [
                TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
            ]
            ends = consumer.end_offsets(partitions)
        finally:
            consumer.close()
            admin.close()
    except KafkaError:
        return None
    return sum(
        max(0, int(end) - (committed[tp].offset if tp in committed else 0))
        for tp, end in ends.items()
    )


def terminate(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM a process that still runs (it shuts down cleanly), its group SIGKILLed
    after ``timeout_s``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_group(proc)


class WorkerProcess:
    """``python -m creatorpulse worker`` on its own chDB store, group and HTTP port.

    ``command="sink"`` runs ``creatorpulse sink`` instead; ``sink="topic"`` makes the
    worker publish its rows for one (give both the same ``app_id``). ``env`` adds
    ``CREATORPULSE_*`` settings after the fixed ones (``CREATORPULSE_ALERTS=0``).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        root: Path,
        name: str,
        *,
        command: str = "worker",
        sink: str = "clickhouse",
        app_id: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.dir = root / name
        self.command = command
        self.sink = sink
        self.app_id = app_id or f"bench-{name}-{uuid.uuid4().hex[:6]}"
        self.env = dict(env or {})
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.exit_code: int | None = None
        self.stop_s: float | None = None

    @property
    def log_path(self) -> Path:
        return self.dir / f"{self.command}.log"

    def environment(self) -> dict[str, str]:
        """The process's environment: this machine's, with every setting fixed here."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CREATORPULSE_")}
        env.update(
            CREATORPULSE_KAFKA_BOOTSTRAP=self.bootstrap,
            CREATORPULSE_CLICKHOUSE_URL=f"chdb://{self.dir / 'store'}",
            CREATORPULSE_INPUT_TOPIC=self.topic,
            CREATORPULSE_APP_ID=self.app_id,
            CREATORPULSE_PARTITIONS=str(PARTITIONS),
            CREATORPULSE_DATA_DIR=str(self.dir),
            CREATORPULSE_WEB_PORT=str(self.port),
            CREATORPULSE_WINDOWS=WINDOWS,
            CREATORPULSE_GRACE_S=str(GRACE_S),
            CREATORPULSE_FLUSH_INTERVAL_S=str(FLUSH_INTERVAL_S),
            CREATORPULSE_SINK=self.sink,
            # Its own alerts topic, as its own window-rows topic: with the shared default,
            # each run's alert sink read every earlier run's alerts from the start.
            CREATORPULSE_ALERTS_TOPIC=f"{self.app_id}-alerts",
        )
        env.update(self.env)
        return env

    def start(self) -> WorkerProcess:
        self.dir.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        self.started_at = time.time()
        with open(self.log_path, "wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "creatorpulse", self.command],
                env=env,
                cwd=PACKAGE_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Ctrl-C in the terminal reaches only the benchmark, which stops us cleanly.
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        return self

    def stats(self) -> dict[str, Any] | None:
        """The worker's ``/stats``, or None while it does not answer."""
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(
                f"the worker exited with code {self.proc.returncode}:\n{log_tail(self.log_path)}"
            )
        url = f"http://127.0.0.1:{self.port}/stats"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                data = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise BenchError(
                    "the worker has no /stats page (creatorpulse bench needs it: "
                    "streams.app StreamProcessor.snapshot served by creatorpulse.runtime)"
                ) from None
            return None
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def metric(self, name: str) -> float | None:
        """One unlabelled sample of the worker's ``/metrics``, or None if it has none."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return None
        return parse_sample(text, name)

    def vm_hwm_mb(self) -> float | None:
        if self.proc is None:
            return None
        return parse_vm_hwm_mb(read_proc(f"/proc/{self.proc.pid}/status"))

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM (the worker flushes and exits 0), SIGKILL after ``timeout_s``."""
        proc = self.proc
        if proc is None:
            return self.exit_code
        started = time.monotonic()
        terminate(proc, timeout_s)
        self.exit_code = proc.returncode
        self.stop_s = time.monotonic() - started
        self.proc = None
        return self.exit_code

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


T = TypeVar("T")


class Sampler(Generic[T]):
    """Calls ``read()`` every ``interval_s`` in a thread and keeps what it returns.

    ``samples`` holds (``time.monotonic()``, value) pairs; a ``read()`` of None (nothing
    to read now) skips a sample, and so does one that raises: it is counted in
    ``errors`` (the last kept in ``last_error``) instead of ending the thread, so a
    sampler that lost its samples says so.
    """

    def __init__(
        self, read: Callable[[], T | None], interval_s: float, name: str = "sampler"
    ) -> None:
        self.read = read
        self.interval_s = interval_s
        self.samples: list[tuple[float, T]] = []
        self.errors = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                value = self.read()
            except Exception as exc:  # counted and shown, never fatal to the sampler
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                continue
            if value is not None:
                self.samples.append((time.monotonic(), value))


class RssSampler(Sampler[float]):
    """Samples VmRSS (MB) of ``pid()``, the process playing the part now; a ``pid()`` of
    None (no process now, e.g. between a ``kill -9`` and the restart) skips a sample.
    The bench's soak and the drills (tests/drills) use it."""

    def __init__(self, pid: Callable[[], int | None], interval_s: float = 0.5) -> None:
        def rss() -> float | None:
            now = pid()
            return None if now is None else rss_mb(now)

        super().__init__(rss, interval_s, name="rss-sampler")

    @property
    def peak_mb(self) -> float:
        return max((mb for _, mb in self.samples), default=0.0)


@dataclass
class Waited:
    before: dict[str, Any]
    final: dict[str, Any]
    startup_s: float | None


def wait_until_written(
    worker: WorkerProcess,
    expected: int,
    timeout_s: float,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    before: dict[str, Any] | None = None,
) -> Waited:
    """Poll ``/stats`` until ``expected`` events are counted and every window is written."""
    tracker = DoneTracker(expected)
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] | None = None
    while True:
        stats = worker.stats()
        if stats is not None:
            last = stats
            if not stats.get("records") and stats.get("first_record_unix") is None:
                before = {**stats, "vm_hwm_mb": worker.vm_hwm_mb()}
            if on_progress is not None:
                on_progress(stats)
            if tracker.update(stats, time.monotonic()) and tracker.final is not None:
                final = {**tracker.final, "vm_hwm_mb": worker.vm_hwm_mb()}
                first = final.get("first_record_unix")
                startup = first - worker.started_at if first is not None else None
                return Waited(before or {}, final, startup)
        if time.monotonic() > deadline:
            seen = last.get("events_counted") if last else None
            raise BenchError(
                f"the worker counted {seen} of {expected:,} events in {timeout_s:.0f}s "
                f"(log {worker.log_path})"
            )
        polled = last is not None and last.get("records")
        time.sleep(POLL_RUNNING_S if polled else POLL_STARTUP_S)


def worker_timeout(events: int) -> float:
    """Generous: start-up, then at least 500 events/s."""
    return 120.0 + events / 500.0
