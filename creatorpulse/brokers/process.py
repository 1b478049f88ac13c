"""Child-process plumbing shared by the brokers and the benchmark's worker processes.

A broker (tansu or a JVM) or a benchmark worker runs as a child on 127.0.0.1 in its own
process group, dies with its parent, is stopped group-wide, and is ready once a metadata
request lists a broker. This is the one copy of those steps.

Only the standard library is imported at module level (kafka-python is imported by the
readiness probe when it runs), so ``deploy/kafka/kafka_launcher.py`` works from a checkout
with a bare interpreter.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

__all__ = [
    "LOCALHOST",
    "BrokerProcess",
    "ChildExited",
    "NotReady",
    "die_with_parent",
    "free_port",
    "kill_group",
    "metadata_lists_a_broker",
    "stop_group",
    "tail",
    "wait_metadata",
]

LOCALHOST = "127.0.0.1"
#: How long to reap a child after SIGKILL before giving up with TimeoutExpired.
KILL_WAIT_S = 30.0


class ChildExited(RuntimeError):
    """The child exited before it answered; ``returncode`` is its exit status."""

    def __init__(self, returncode: int) -> None:
        super().__init__(f"exited with code {returncode}")
        self.returncode = returncode


class NotReady(TimeoutError):
    """The deadline passed without a metadata answer; ``last_probe`` says what was seen."""

    def __init__(self, last_probe: str) -> None:
        super().__init__(last_probe)
        self.last_probe = last_probe


def free_port(exclude: frozenset[int] = frozenset()) -> int:
    """Return a TCP port that is free on 127.0.0.1 right now (and not in ``exclude``).

    The port is released before the caller binds it, so another process could grab it in
    between; that window is tiny and a clash shows up as a clear bind error in the child's log.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOCALHOST, 0))
            port = int(sock.getsockname()[1])
        if port not in exclude:
            return port


def die_with_parent() -> Callable[[], None] | None:
    """``preexec_fn`` giving the child SIGKILL when the forking thread dies (Linux only).

    A child orphaned by a crashed CLI, test run or benchmark would keep its ports and memory
    (a JVM: half a gigabyte of heap). PR_SET_PDEATHSIG is tied to the forking *thread*, so
    start children from a long-lived thread (the main thread in pytest and the CLI).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent_pid = os.getpid()

    def preexec() -> None:
        prctl(1, signal.SIGKILL)  # 1 == PR_SET_PDEATHSIG
        if os.getppid() != parent_pid:  # parent already gone before prctl took effect
            os._exit(1)

    return preexec


def _signal_group(proc: subprocess.Popen[Any], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def stop_group(proc: subprocess.Popen[Any], timeout: float, *, graceful: bool = True) -> None:
    """Stop a child started with ``start_new_session=True``, with everything it spawned.

    SIGTERM to the group (SIGKILL when not ``graceful``, to simulate a crash), then SIGKILL
    once ``timeout`` seconds pass without an exit.
    """
    if proc.poll() is not None:
        return
    _signal_group(proc, signal.SIGTERM if graceful else signal.SIGKILL)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait(timeout=KILL_WAIT_S)


def kill_group(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGKILL a child's process group and reap it, waiting at most ``timeout`` seconds."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)


def tail(path: Path, max_bytes: int) -> str:
    """The last ``max_bytes`` of a log file as text ('' when it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def metadata_lists_a_broker(bootstrap: str, timeout_s: float, client_id: str) -> bool:
    """True when a metadata request through kafka-python lists at least one broker."""
    from kafka.admin import KafkaAdminClient

    timeout_ms = int(timeout_s * 1000)
    # Refused connects and bootstrap errors while a broker starts are expected; keep them out
    # of user and test logs.
    kafka_logger = logging.getLogger("kafka")
    previous = kafka_logger.level
    kafka_logger.setLevel(logging.CRITICAL)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
        )
        try:
            return bool(admin.describe_cluster().get("brokers"))
        finally:
            admin.close()
    finally:
        kafka_logger.setLevel(previous)


def wait_metadata(
    proc: subprocess.Popen[Any],
    port: int,
    *,
    deadline: float,
    probe_timeout_s: float,
    interval_s: float,
    client_id: str,
) -> None:
    """Return once the broker ``proc`` on 127.0.0.1:``port`` answers metadata.

    Raises :class:`ChildExited` when the child exits first and :class:`NotReady` when the
    ``time.monotonic()`` ``deadline`` passes. A cheap TCP connect comes before each metadata
    request: kafka-python's clients are slow and noisy against a port nobody listens on yet.
    """
    last_probe = "no attempt yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ChildExited(proc.returncode)
        try:
            with socket.create_connection((LOCALHOST, port), timeout=1.0):
                pass
        except OSError as exc:
            last_probe = f"connect: {exc}"
            time.sleep(interval_s)
            continue
        try:
            if metadata_lists_a_broker(f"{LOCALHOST}:{port}", probe_timeout_s, client_id):
                return
            last_probe = "metadata listed no broker yet"
        except Exception as exc:
            last_probe = f"{type(exc).__name__}: {exc}"
        time.sleep(interval_s)
    raise NotReady(last_probe)


class BrokerProcess(abc.ABC):
    """One broker child on 127.0.0.1: what the embedded broker and Apache Kafka share.

    A subclass spawns the child in :meth:`start` (setting ``port`` and ``_proc``, then
    calling :meth:`_wait_ready`), stops it in :meth:`stop`, and says where its log is.
    """

    #: What every failure to start or reach this broker raises.
    error: ClassVar[type[RuntimeError]] = RuntimeError
    #: The broker's name in messages.
    label: ClassVar[str] = "broker"
    probe_timeout_s: ClassVar[float] = 5.0
    probe_interval_s: ClassVar[float] = 0.2
    probe_client_id: ClassVar[str] = "creatorpulse-broker-probe"

    def __init__(self, startup_timeout: float, stop_timeout: float) -> None:
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.port: int | None = None
        #: seconds from spawning the child to metadata answering (the last start)
        self.ready_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise self.error(f"{self.label} not started")
        return f"{LOCALHOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    @abc.abstractmethod
    def log_path(self) -> Path:
        """The broker's own log file."""

    @abc.abstractmethod
    def start(self) -> Self:
        """Spawn the broker and return once it answers metadata (cleaning up if it does not)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop the broker; a no-op when it is not running."""

    @abc.abstractmethod
    def tail_log(self, max_bytes: int = 4000) -> str:
        """The end of the broker's logs, for an error message."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_ready(self, started: float) -> None:
        """Wait until the child spawned at ``started`` (monotonic) answers, within the timeout."""
        assert self._proc is not None
        assert self.port is not None
        try:
            wait_metadata(
                self._proc,
                self.port,
                deadline=started + self.startup_timeout,
                probe_timeout_s=self.probe_timeout_s,
                interval_s=self.probe_interval_s,
                client_id=self.probe_client_id,
            )
        except ChildExited as exc:
            raise self.error(
                f"{self.label} exited with code {exc.returncode} during start-up "
                f"(log {self.log_path}):\n{self.tail_log()}"
            ) from None
        except NotReady as exc:
            raise self.error(
                f"{self.label} at {self.bootstrap} did not answer metadata within "
                f"{self.startup_timeout:.0f}s (last probe: {exc.last_probe}); log "
                f"{self.log_path}:\n{self.tail_log()}"
            ) from None
