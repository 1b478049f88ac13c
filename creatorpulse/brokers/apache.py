"""Real Apache Kafka (KRaft, single node) from Maven Central jars, without Docker.

Why this exists: the project's tests must run against real Apache Kafka (docs/design.md
§2), but CI and the developer machines have no Docker engine. They do have Java 17 and
Maven, so this module

1. ``fetch``: resolves ``org.apache.kafka:kafka_2.13`` (and a log4j binding) with
   ``mvn dependency:copy-dependencies`` of the pom shipped next to this file into a cache
   directory (see :func:`default_cache_dir`); a marker file makes repeated fetches a no-op;
2. ``ApacheKafka``: formats a throw-away KRaft log directory and runs
   ``java -cp '<jars>/*' kafka.Kafka server.properties`` as a child process bound to
   127.0.0.1 only, waits until the broker answers metadata requests, and tears it all down.

The tests' broker fixture, ``creatorpulse bench`` and ``deploy/kafka/kafka_launcher.py``
all use it. Only the standard library is imported at module level (kafka-python is imported
by the readiness probe), so the launcher script runs from a checkout with a bare
interpreter. As a command::

    python -m creatorpulse.brokers.apache fetch        (or deploy/kafka/kafka_launcher.py)
    python -m creatorpulse.brokers.apache run [--port 9092]

Environment:
    CREATORPULSE_KAFKA_CACHE    cache directory (default: see :func:`default_cache_dir`)
    CREATORPULSE_KAFKA_VERSION  Kafka version to fetch/run (default: 3.9.1, the pom's)
    JAVA_HOME                   preferred over ``java`` on PATH when set
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType

from creatorpulse.brokers.process import (
    LOCALHOST,
    BrokerProcess,
    die_with_parent,
    free_port,
    stop_group,
    tail,
)

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "POM",
    "ApacheKafka",
    "KafkaLauncherError",
    "default_cache_dir",
    "fetch",
    "main",
]

DEFAULT_KAFKA_VERSION = "3.9.1"
HERE = Path(__file__).resolve().parent
#: The one copy of the Maven pom: package data, so an installed creatorpulse can fetch too
#: (``deploy/kafka/pom.xml`` is a link to it, for reading and running Maven by hand).
POM = HERE / "pom.xml"
MARKER_NAME = ".creatorpulse-fetch-complete"
DATA_DIR_PREFIX = "creatorpulse-kafka-"
OWNER_FILE = "owner.pid"

log = logging.getLogger("creatorpulse.brokers.apache")


class KafkaLauncherError(RuntimeError):
    """Anything that prevents a broker from being fetched, started or reached."""


# --------------------------------------------------------------------------------------------
# helpers


def default_cache_dir(environ: Mapping[str, str] = os.environ, package_dir: Path = HERE) -> Path:
    """Where the jars go: ``$CREATORPULSE_KAFKA_CACHE``, else a place that fits the install.

    In a source checkout (``deploy/kafka`` next to the package) it is ``deploy/kafka/.cache``,
    one cache per checkout. An installed package must not write into site-packages, so there
    it is ``$XDG_CACHE_HOME/creatorpulse/kafka`` (``~/.cache/creatorpulse/kafka``).
    """
    env = environ.get("CREATORPULSE_KAFKA_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    checkout_deploy = package_dir.parent.parent / "deploy" / "kafka"
    if checkout_deploy.is_dir():
        return checkout_deploy / ".cache"
    user_cache = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(user_cache).expanduser() / "creatorpulse" / "kafka"


def kafka_version() -> str:
    return os.environ.get("CREATORPULSE_KAFKA_VERSION") or DEFAULT_KAFKA_VERSION


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if not found:
        raise KafkaLauncherError(
            "`java` was not found (JAVA_HOME unset or invalid, nothing on PATH). The Apache "
            "Kafka broker needs a Java runtime; this project uses 17, e.g. "
            "`apt-get install openjdk-17-jre-headless`."
        )
    return found


def _fetch_fingerprint(version: str) -> str:
    # The marker must go stale when the pom (dependency list) or the version changes,
    # otherwise an edited pom would silently keep running the old jar set.
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    return json.dumps({"kafka_version": version, "pom_sha256": digest}, sort_keys=True)


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Serialise concurrent fetches (e.g. pytest-xdist workers) on the same cache."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX: best effort without a lock
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fetch(cache_dir: Path | None = None, version: str | None = None, quiet: bool = True) -> Path:
    """Make sure the broker jars are in ``<cache>/jars`` and return that directory.

    Idempotent: when the marker file matches the pom and version, no Maven process runs.
    """
    cache = (cache_dir or default_cache_dir()).resolve()
    version = version or kafka_version()
    jars = cache / "jars"
    marker = jars / MARKER_NAME
    fingerprint = _fetch_fingerprint(version)
    if marker.is_file() and marker.read_text() == fingerprint:
        return jars

    with _exclusive_lock(cache / ".fetch.lock"):
        # Another process may have finished the fetch while we waited for the lock.
        if marker.is_file() and marker.read_text() == fingerprint:
            return jars
        mvn = shutil.which("mvn")
        if not mvn:
            raise KafkaLauncherError(
                "`mvn` was not found on PATH; it is needed once to fetch the Apache Kafka "
                f"{version} jars from Maven Central into {jars}. Install Maven "
                "(`apt-get install maven`) or point CREATORPULSE_KAFKA_CACHE at a cache "
                "that already holds them."
            )
        # Download into a sibling directory and swap it in, so an interrupted fetch never
        # leaves a half-filled jars/ that a later run would put on the classpath.
        staging = cache / "jars.partial"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            mvn,
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            f"-Dkafka.version={version}",
        ]
        if quiet:
            cmd.insert(1, "-q")
        started = time.monotonic()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            shutil.rmtree(staging, ignore_errors=True)
            raise KafkaLauncherError(
                f"fetching Apache Kafka {version} with Maven failed (exit {proc.returncode}):\n"
                f"$ {' '.join(cmd)}\n{proc.stdout[-4000:]}"
            )
        shutil.rmtree(jars, ignore_errors=True)
        staging.rename(jars)
        marker.write_text(fingerprint)
        log.info(
            "fetched Kafka %s jars in %.1fs into %s", version, time.monotonic() - started, jars
        )
    return jars


def _random_cluster_id() -> str:
    # Same shape as Kafka's Uuid.randomUuid().toString(): 16 random bytes, URL-safe base64
    # without padding. Kafka avoids ids starting with '-' because CLIs read them as flags.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _remove_orphaned_data_dirs() -> None:
    """Delete data dirs left behind by launchers that were killed (their broker died with them).

    A killed parent cannot clean up, and each leftover holds a formatted KRaft log; only dirs
    whose recorded owner process no longer exists are removed.
    """
    for candidate in Path(tempfile.gettempdir()).glob(f"{DATA_DIR_PREFIX}*"):
        try:
            owner = int((candidate / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(candidate, ignore_errors=True)
        except PermissionError:
            continue  # alive, owned by another user


# --------------------------------------------------------------------------------------------
# the broker


class ApacheKafka(BrokerProcess):
    """A single-node Apache Kafka (KRaft combined broker+controller) child process.

    Usage::

        with ApacheKafka() as kafka:
            produce_to(kafka.bootstrap)   # "127.0.0.1:<port>"
            kafka.restart()               # same ports, same data

    Only 127.0.0.1 is listened on. The data directory is a fresh temporary directory that
    ``stop()`` removes (unless ``keep_data_dir``); broker logs (WARN and up) go to
    ``<data_dir>/broker.log``, JVM stdout/stderr to ``<data_dir>/stdout.log``.
    """

    error = KafkaLauncherError
    label = "Kafka"
    probe_timeout_s = 5.0
    probe_interval_s = 0.2
    probe_client_id = "creatorpulse-kafka-launcher-probe"

    def __init__(
        self,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        cache_dir: Path | None = None,
        version: str | None = None,
        heap: str = "512m",
        startup_timeout: float = 90.0,
        stop_timeout: float = 30.0,
        extra_config: Mapping[str, str] | None = None,
        keep_data_dir: bool = False,
    ) -> None:
        # ready_seconds counts from launching the JVM (the last start or restart).
        super().__init__(startup_timeout, stop_timeout)
        self._requested_port = port
        self._requested_controller_port = controller_port
        self.cache_dir = cache_dir
        self.version = version or kafka_version()
        self.heap = heap
        self.extra_config = dict(extra_config or {})
        self.keep_data_dir = keep_data_dir

        self.controller_port: int | None = None
        self.data_dir: Path | None = None
        self.jars_dir: Path | None = None
        self.cluster_id: str | None = None
        self._java = ""

    # -- public API --------------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        if self.data_dir is None:
            raise KafkaLauncherError("broker not started")
        return self.data_dir / "broker.log"

    def start(self) -> ApacheKafka:
        """Fetch jars if needed, format storage, launch the JVM and wait until it answers."""
        if self._proc is not None:
            raise KafkaLauncherError("broker already started")
        self._java = find_java()
        self.jars_dir = fetch(self.cache_dir, self.version)
        self.port = self._requested_port or free_port()
        self.controller_port = self._requested_controller_port or free_port(frozenset({self.port}))
        if self.port == self.controller_port:
            raise KafkaLauncherError("broker and controller ports must differ")
        _remove_orphaned_data_dirs()
        self.data_dir = Path(tempfile.mkdtemp(prefix=DATA_DIR_PREFIX))
        (self.data_dir / OWNER_FILE).write_text(str(os.getpid()))
        try:
            self._write_config()
            self._format_storage()
            self._launch_and_wait()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL) and remove its data directory."""
        self._terminate(graceful=True)
        if self.data_dir is not None and not self.keep_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir = None
        self.port = None
        self.controller_port = None

    def restart(self, *, hard: bool = False) -> None:
        """Stop the JVM and start it again on the same ports with the same data.

        ``hard=True`` SIGKILLs instead of a controlled shutdown, to simulate a crash (the
        broker then recovers its logs on start-up, which is slower).
        """
        if self.data_dir is None or self.port is None:
            raise KafkaLauncherError("broker not started")
        self._terminate(graceful=not hard)
        try:
            self._launch_and_wait()
        except BaseException:
            self.stop()
            raise

    def tail_log(self, max_bytes: int = 6000) -> str:
        if self.data_dir is None:
            return ""
        parts = []
        for name in ("stdout.log", "broker.log"):
            text = tail(self.data_dir / name, max_bytes)
            if text.strip():
                parts.append(f"--- {name} (tail) ---\n{text}")
        return "\n".join(parts)

    def __repr__(self) -> str:
        state = self.bootstrap if self.port else "stopped"
        return f"<ApacheKafka {self.version} {state}>"

    # -- internals ---------------------------------------------------------------------------

    def _classpath(self) -> str:
        assert self.jars_dir is not None
        # A JVM classpath wildcard: every jar in the directory, no shell expansion needed.
        return str(self.jars_dir / "*")

    def _jvm_common(self) -> list[str]:
        assert self.data_dir is not None
        return [
            self._java,
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp",
            self._classpath(),
        ]

    def _write_config(self) -> None:
        assert self.data_dir is not None
        props: dict[str, str] = {
            "node.id": "1",
            "process.roles": "broker,controller",
            # Static quorum: works on 3.8 and 3.9 and survives restart() on the same ports.
            "controller.quorum.voters": f"1@{LOCALHOST}:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://{LOCALHOST}:{self.port},CONTROLLER://{LOCALHOST}:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://{LOCALHOST}:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir / "kraft-logs"),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "min.insync.replicas": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Fewer internal partitions make the first group join / first transaction much
            # faster on a 2-core box; it changes no client-visible semantics.
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.num.partitions": "4",
            # The cleaner (needed for compacted changelog topics) preallocates 128 MiB by
            # default, a quarter of our heap; tests do not need that much.
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
            # After a hard kill the restarted controller still holds the old broker session and
            # refuses the new registration until it expires (default 9 s); restart(hard=True)
            # is a test tool, so make that wait short.
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "1000",
            "num.network.threads": "2",
            "num.io.threads": "4",
        }
        props.update(self.extra_config)
        (self.data_dir / "server.properties").write_text(
            "".join(f"{key}={value}\n" for key, value in props.items())
        )
        log_file = self.data_dir / "broker.log"
        (self.data_dir / "log4j.properties").write_text(
            "log4j.rootLogger=WARN, file\n"
            "log4j.appender.file=org.apache.log4j.FileAppender\n"
            f"log4j.appender.file.File={log_file}\n"
            "log4j.appender.file.Append=true\n"
            "log4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            # One INFO line per (re)start ("Kafka Server started") helps reading the log.
            "log4j.logger.kafka.server.KafkaRaftServer=INFO\n"
        )

    def _format_storage(self) -> None:
        assert self.data_dir is not None
        self.cluster_id = _random_cluster_id()
        cmd = [
            *self._jvm_common(),
            # Short-lived tool: C1-only JIT and serial GC start noticeably faster.
            "-Xmx256m",
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            self.cluster_id,
            "-c",
            str(self.data_dir / "server.properties"),
        ]
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120
        )
        if proc.returncode != 0:
            raise KafkaLauncherError(
                f"formatting KRaft storage failed (exit {proc.returncode}):\n"
                f"$ {' '.join(cmd)}\n{proc.stdout[-4000:]}\n{self.tail_log()}"
            )

    def _launch_and_wait(self) -> None:
        assert self.data_dir is not None
        cmd = [
            *self._jvm_common(),
            f"-Xmx{self.heap}",
            "-XX:+ExitOnOutOfMemoryError",
            "kafka.Kafka",
            str(self.data_dir / "server.properties"),
        ]
        started = time.monotonic()
        with open(self.data_dir / "stdout.log", "ab") as out:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                # Own process group: Ctrl-C in a terminal goes to us, and we decide how the
                # broker stops (controlled shutdown) instead of racing it.
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        self._wait_ready(started)
        self.ready_seconds = time.monotonic() - started

    def _terminate(self, *, graceful: bool) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_group(proc, self.stop_timeout, graceful=graceful)


# --------------------------------------------------------------------------------------------
# CLI


def _cmd_fetch(args: argparse.Namespace) -> int:
    started = time.monotonic()
    jars = fetch(args.cache, args.kafka_version, quiet=not args.verbose)
    count = sum(1 for _ in jars.glob("*.jar"))
    print(f"{count} jars for Apache Kafka {args.kafka_version} in {jars} ", end="")
    print(f"({time.monotonic() - started:.1f}s)")
    return 0


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _cmd_run(args: argparse.Namespace) -> int:
    # SIGTERM (e.g. from a supervisor) gets the same clean stop as Ctrl-C; the JVM sits in its
    # own process group, so the terminal's SIGINT reaches only us and we stop it in order.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    broker = ApacheKafka(
        port=args.port,
        controller_port=args.controller_port,
        cache_dir=args.cache,
        version=args.kafka_version,
        heap=args.heap,
        keep_data_dir=args.keep_data,
    )
    started = time.monotonic()
    try:
        broker.start()  # cleans up after itself if interrupted or failing
    except KeyboardInterrupt:
        return 130
    try:
        print(f"Apache Kafka {broker.version} ready in {time.monotonic() - started:.1f}s")
        print(f"bootstrap: {broker.bootstrap}")
        print(f"data dir:  {broker.data_dir} (log: {broker.log_path})")
        print("Ctrl-C to stop.", flush=True)
        while broker.is_running():
            time.sleep(0.5)
        print(f"broker exited unexpectedly:\n{broker.tail_log()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping...", flush=True)
        return 0
    finally:
        broker.stop()


def build_parser(prog: str = "python -m creatorpulse.brokers.apache") -> argparse.ArgumentParser:
    # Shared options live on each sub-command (not the top-level parser) so that both
    # `fetch --cache X` and `run --kafka-version Y` read naturally.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--cache",
        type=Path,
        default=None,
        help=f"jar cache dir (default: $CREATORPULSE_KAFKA_CACHE, else {default_cache_dir()})",
    )
    common.add_argument(
        "--kafka-version",
        default=kafka_version(),
        help="Apache Kafka version (default: $CREATORPULSE_KAFKA_VERSION or %(default)s)",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="show Maven/debug output")

    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Fetch (via Maven) and run a single-node Apache Kafka broker in KRaft mode on "
            "127.0.0.1 with the local Java 17, for creatorpulse tests and local development."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "fetch",
        parents=[common],
        help="download the broker jars (no-op when already cached)",
        description="Download the broker jars with Maven (no-op when already cached).",
    )
    run = sub.add_parser(
        "run",
        parents=[common],
        help="run a broker in the foreground until Ctrl-C",
        description="Run a broker in the foreground; prints the bootstrap; Ctrl-C stops it.",
    )
    run.add_argument("--port", type=int, default=None, help="client port (default: a free one)")
    run.add_argument(
        "--controller-port", type=int, default=None, help="KRaft controller port (default: free)"
    )
    run.add_argument("--heap", default="512m", help="JVM max heap (default: %(default)s)")
    run.add_argument("--keep-data", action="store_true", help="do not delete the data dir on exit")
    return parser


def main(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    """The ``fetch`` and ``run`` commands; 0 on success, 2 when a broker cannot be had."""
    args = (build_parser(prog) if prog else build_parser()).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        if args.command == "fetch":
            return _cmd_fetch(args)
        return _cmd_run(args)
    except KafkaLauncherError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
