"""The Kafka Streams baseline of ``creatorpulse bench``: the JVM peer on the same topics.

The Java project next to this file (``kafka_streams/``, one class) computes what the worker
computes: every event of a record parsed and checked, summed per campaign and 60 s
bucket within the record (as the worker sums them), per (campaign, creator) the 11
counters summed in 60 s and 3600 s tumbling event-time windows with 600 s grace, one
stream thread, at-least-once, a 1 s commit interval, in-memory window stores with their
changelog topics, and the changed windows written to an output topic at each commit
(docs/performance.md, "The Kafka Streams baseline", says why that compares).

:func:`build_jar` builds it with Maven once (offline first, then online) into the
project's ``target/``; :func:`run_kstreams` runs it over a pre-loaded topic until its
consumer group has committed the topic's end offsets, and reads its CPU from
``/proc/<pid>/stat``: at the first record and at the first commit after the last event
(the app reads its own ``/proc/self/stat`` at those two moments and prints them).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from creatorpulse.bench.figures import median_of_passes, rate, ratio
from creatorpulse.bench.machine import parse_vm_hwm_mb, read_proc
from creatorpulse.bench.options import GRACE_S, POLL_RUNNING_S, WINDOWS, BenchError
from creatorpulse.bench.processes import (
    group_lag,
    log_tail,
    parse_json_line,
    terminate,
    worker_timeout,
)
from creatorpulse.bench.report import fmt_number, fmt_ratio, fmt_us
from creatorpulse.brokers.process import die_with_parent

if TYPE_CHECKING:
    from creatorpulse.bench.sections import Runner
    from creatorpulse.bench.workload import Dataset

PROJECT: Final = Path(__file__).resolve().parent / "kafka_streams"
JAR_NAME: Final = "creatorpulse-kstreams.jar"
#: How the figures are measured (the results' "method").
KSTREAMS_METHOD: Final = (
    "creatorpulse/bench/kafka_streams (Kafka Streams 4.3, Java 17, java -jar with default "
    "JVM flags): the same topic as the worker, every event parsed (Jackson) and checked; "
    "as in the worker, a record's events summed per campaign and 60 s bucket, each sum "
    "stamped with its newest event ts; per (campaign, creator) the 11 counters summed in 60 s and "
    "3600 s tumbling event-time windows, 600 s grace; 1 stream thread, at-least-once, "
    "commit.interval.ms 1000, in-memory window stores with changelog topics, the changed "
    "windows written as JSON rows to an output topic at each commit; events/s from the "
    "first record to the end of the first commit after the last event, the group's "
    "committed offsets then checked at the end offsets; CPU from the JVM's /proc/<pid>/stat "
    "at those two points (start-up excluded); median of --passes runs, each a fresh application id"
)
#: Maven's first build downloads Kafka Streams and the shade plugin; later ones take seconds.
BUILD_TIMEOUT_S: Final = 600.0


def sources(project: Path = PROJECT) -> list[Path]:
    return [project / "pom.xml", *sorted((project / "src").rglob("*.java"))]


def jar_is_current(jar: Path, project: Path = PROJECT) -> bool:
    """Whether ``jar`` exists and is newer than every source of the project."""
    if not jar.is_file():
        return False
    built = jar.stat().st_mtime
    return all(path.stat().st_mtime <= built for path in sources(project))


def build_jar(log_path: Path, project: Path = PROJECT) -> Path:
    """The shaded jar, built with Maven if it is missing or older than its sources.

    Builds in the project's ``target/``, or in a copy of the project under the system's
    temporary directory where the package is read-only (an installed copy).
    """
    if not os.access(project, os.W_OK):
        copy = Path(tempfile.gettempdir()) / "creatorpulse-kstreams"
        if not (copy / "pom.xml").is_file() or not jar_is_current(
            copy / "target" / JAR_NAME, project
        ):
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(project, copy, ignore=shutil.ignore_patterns("target"))
        project = copy
    jar = project / "target" / JAR_NAME
    if jar_is_current(jar, project):
        return jar
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BenchError(
            "`mvn` was not found on PATH: the Kafka Streams baseline is built with Maven "
            "(apt-get install maven)"
        )
    if shutil.which("java") is None:
        raise BenchError("`java` (17) is not installed: the Kafka Streams baseline needs it")
    deadline = time.monotonic() + BUILD_TIMEOUT_S
    with open(log_path, "wb") as log:
        # Offline first: with the dependencies in ~/.m2 that needs no network at all.
        for offline in (["-o"], []):
            left = deadline - time.monotonic()
            try:
                done = subprocess.run(
                    [mvn, "-q", "-B", *offline, "-f", str(project / "pom.xml"), "package"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=max(1.0, left),
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise BenchError(
                    f"the Kafka Streams build took over {BUILD_TIMEOUT_S:.0f}s (log {log_path})"
                ) from None
            if done.returncode == 0 and jar.is_file():
                return jar
    raise BenchError(f"the Kafka Streams build failed (mvn package):\n{log_tail(log_path)}")


def clock_ticks_per_s() -> int:
    return int(os.sysconf("SC_CLK_TCK"))


def parse_proc_cpu_ticks(stat: str) -> int | None:
    """User + system CPU ticks from the text of ``/proc/<pid>/stat`` (None if unreadable)."""
    close = stat.rfind(")")
    if close < 0:
        return None
    # After "pid (comm) ": state is field 3, utime field 14 and stime field 15.
    fields = stat[close + 2 :].split()
    try:
        return int(fields[11]) + int(fields[12])
    except (IndexError, ValueError):
        return None


def kstreams_figures(result: dict[str, Any], ticks_per_s: int) -> dict[str, Any]:
    """Rates from the app's result line: events/s from the first record to the commit
    that covered the last event, CPU from its two ``/proc/self/stat`` readings."""
    out = dict(result)
    events = int(result["events"])
    first, done = result.get("cpu_ticks_first"), result.get("cpu_ticks_done")
    cpu = (done - first) / ticks_per_s if first is not None and done is not None else None
    if first is not None and first < 0:
        cpu = None  # not Linux: no /proc
    out.update(
        events_per_s=rate(events, result.get("seconds")),
        cpu_s=cpu,
        cpu_s_per_event=cpu / events if cpu is not None and events else None,
    )
    return out


class KStreamsProcess:
    """``java -jar`` on the baseline, with its own application id, state directory and
    logs under ``root/name``."""

    def __init__(
        self, jar: Path, bootstrap: str, topic: str, output: str, root: Path, name: str
    ) -> None:
        self.jar = jar
        self.bootstrap = bootstrap
        self.topic = topic
        self.output = output
        self.dir = root / name
        self.app_id = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None
        self.started_at = 0.0

    @property
    def log_path(self) -> Path:
        return self.dir / "kstreams.log"

    @property
    def out_path(self) -> Path:
        return self.dir / "kstreams.out"

    def start(self, expect: int) -> KStreamsProcess:
        self.dir.mkdir(parents=True, exist_ok=True)
        java = shutil.which("java")
        if java is None:
            raise BenchError("`java` (17) is not installed: the Kafka Streams baseline needs it")
        cmd = [
            java,
            # Kafka Streams logs every config at INFO: warnings and errors are what a
            # failed run needs.
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-jar",
            str(self.jar),
            *("--bootstrap", self.bootstrap, "--input", self.topic, "--output", self.output),
            *("--app-id", self.app_id, "--state-dir", str(self.dir / "state")),
            *("--expect", str(expect), "--windows", WINDOWS, "--grace-s", str(GRACE_S)),
        ]
        self.started_at = time.time()
        with open(self.out_path, "wb") as out, open(self.log_path, "wb") as log:
            try:
                self.proc = subprocess.Popen(
                    cmd,
                    stdout=out,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    preexec_fn=die_with_parent(),
                )
            except OSError as exc:
                raise BenchError(f"Kafka Streams did not start: {exc}") from None
        return self

    def result(self) -> dict[str, Any] | None:
        """The app's result line, once it printed one; raises if it exited."""
        found = parse_json_line(read_proc(str(self.out_path)))
        if found is None and self.proc is not None and self.proc.poll() is not None:
            raise BenchError(
                f"Kafka Streams exited with code {self.proc.returncode} before it read every "
                f"event:\n{log_tail(self.log_path)}"
            )
        return found

    def proc_status(self) -> dict[str, Any]:
        """Whole-process figures from ``/proc/<pid>``: CPU ticks and peak RSS."""
        if self.proc is None:
            return {}
        return {
            "cpu_ticks_total": parse_proc_cpu_ticks(read_proc(f"/proc/{self.proc.pid}/stat")),
            "rss_peak_mb": parse_vm_hwm_mb(read_proc(f"/proc/{self.proc.pid}/status")),
        }

    def stop(self, timeout_s: float = 30.0) -> int | None:
        proc = self.proc
        if proc is None:
            return self.exit_code
        # The app's shutdown hook closes Kafka Streams (leaves the group, closes stores).
        terminate(proc, timeout_s)
        self.exit_code = proc.returncode
        self.proc = None
        return self.exit_code


def run_kstreams(
    jar: Path,
    bootstrap: str,
    topic: str,
    output: str,
    expect: int,
    root: Path,
    name: str,
    timeout_s: float,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One run over ``topic`` (``expect`` events): the app's figures once its group has
    committed the topic's end offsets, checked against the broker."""
    app = KStreamsProcess(jar, bootstrap, topic, output, root, name)
    deadline = time.monotonic() + timeout_s
    try:
        app.start(expect)
        while (result := app.result()) is None:
            if time.monotonic() > deadline:
                raise BenchError(
                    f"Kafka Streams did not read {expect:,} events in {timeout_s:.0f}s "
                    f"(log {app.log_path})"
                )
            if on_progress is not None:
                on_progress("reading")
            time.sleep(POLL_RUNNING_S)
        # The app says a commit covered every event; the broker's committed offsets say so too.
        while (lag := group_lag(bootstrap, app.app_id, [topic])) != 0:
            if time.monotonic() > deadline:
                raise BenchError(
                    f"Kafka Streams' group {app.app_id} still lags {lag} records on {topic}"
                )
            if on_progress is not None:
                on_progress(f"committing, lag {lag if lag is not None else '?'}")
            time.sleep(POLL_RUNNING_S)
        status = app.proc_status()
    finally:
        app.stop()
    try:
        figures = kstreams_figures(result, clock_ticks_per_s())
    except (KeyError, TypeError, ValueError) as exc:
        raise BenchError(f"Kafka Streams printed an unreadable result {result!r}: {exc}") from None
    total = status.get("cpu_ticks_total")
    figures.update(
        app_id=app.app_id,
        rss_peak_mb=status.get("rss_peak_mb"),
        # Start-up (JVM, JIT, group join) included: what the run cost the machine in all.
        cpu_s_total=total / clock_ticks_per_s() if total is not None else None,
        startup_s=figures["first_record_unix"] - app.started_at
        if figures.get("first_record_unix")
        else None,
        exit_code=app.exit_code,
    )
    if figures["events"] < expect:
        raise BenchError(f"Kafka Streams counted {figures['events']:,} of {expect:,} events")
    return figures


def comparison(
    kstreams: Mapping[str, Any], ceiling: Mapping[str, Any], worker: Mapping[str, Any]
) -> dict[str, float | None]:
    """Kafka Streams against the same run's ceiling, and creatorpulse against it.

    ``*_vs_*`` of events/s: above 1 is faster than the reference; of CPU per event
    (``cpu_*``): above 1 is costlier.
    """
    speed, cpu = kstreams.get("events_per_s"), kstreams.get("cpu_s_per_event")
    return {
        "vs_ceiling": ratio(speed, ceiling.get("events_per_s")),
        "cpu_vs_ceiling": ratio(cpu, ceiling.get("cpu_s_per_event")),
        "worker_vs_kstreams": ratio(worker.get("events_per_s"), speed),
        "worker_cpu_vs_kstreams": ratio(worker.get("cpu_s_per_event"), cpu),
    }


class KStreamsSection:
    """The ``kstreams`` section of a run: built once, then run on each shape's topic."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self._jar: Path | None = None
        self._build_error: str | None = None

    def jar(self) -> Path:
        """The built jar; a failed build is not tried again for the next shape."""
        if self._build_error is not None:
            raise BenchError(self._build_error)
        if self._jar is None:
            self.runner.say("Kafka Streams: building the baseline with Maven")
            try:
                with self.runner.timed("kstreams/build"):
                    self._jar = build_jar(self.runner.work_dir / "kstreams-build.log")
            except BenchError as exc:
                self._build_error = str(exc)
                raise
        return self._jar

    def run(self, dataset: Dataset) -> None:
        r = self.runner
        result = r.section("kstreams", dataset.shape, functools.partial(self.measure, dataset))
        if result:
            r.done(
                f"{dataset.shape}: Kafka Streams {fmt_number(result['events_per_s'], 'ev/s')}, "
                f"CPU {fmt_us(result['cpu_s_per_event'])}/event; creatorpulse "
                f"{fmt_ratio(result['worker_vs_kstreams'])} its events/s"
            )

    def measure(self, dataset: Dataset) -> dict[str, Any]:
        r = self.runner
        jar = self.jar()
        runs = []
        for i in range(r.options.passes):
            name = f"kstreams-{dataset.shape}-{i}"

            def progress(text: str, name: str = name) -> None:
                r.say(f"{name}: {text}")

            runs.append(
                run_kstreams(
                    jar,
                    r.bootstrap(),
                    dataset.topic,
                    r.topic(f"{dataset.shape}-ks-rows-{i}"),
                    dataset.events,
                    r.work_dir,
                    name,
                    worker_timeout(dataset.events),
                    on_progress=progress,
                )
            )
        result = median_of_passes(runs)
        sections = r.sections
        result.update(
            comparison(
                result,
                sections.get("ceiling", {}).get(dataset.shape) or {},
                sections.get("worker", {}).get(dataset.shape) or {},
            )
        )
        return result
