"""Starting the pieces for a command: broker checks, the sink, the Faust worker.

Thin adapters around I/O; the CLI composes them. Each failure that a user can fix
becomes a :class:`~creatorpulse.settings.SettingsError` naming the fix.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from creatorpulse.logs import RepeatLimiter, formatter, native_stderr_silenced, silenced

# In a light module, so the CLI runs it before importing Faust (a wrong address is
# then reported sooner); re-exported here.
from creatorpulse.reach import BOOTSTRAP_FIX as _BOOTSTRAP_FIX
from creatorpulse.reach import KAFKA_CONNECT_TIMEOUT_S, wait_for_listener
from creatorpulse.settings import (
    Settings,
    SettingsError,
    StoreHeld,
)
from creatorpulse.web.pages import add_query_pages
from schemas.rows import WindowKey
from sinks.clickhouse import ClickHouseSink, migrate
from streams.alerts.stage import PendingView
from streams.app import Worker, build_worker
from streams.config import WorkerConfig

if TYPE_CHECKING:
    from kafka import KafkaAdminClient

    from streams.observability import AlertStats

log = logging.getLogger("creatorpulse")

QUIET_LOGGERS = ("faust", "aiokafka", "mode", "kafka", "chdb", "clickhouse_connect")


def configure_logging(
    level: str = "INFO",
    stream: IO[str] | None = None,
    path: Path | None = None,
    log_format: str = "text",
) -> None:
    """Our logs at ``level``; the libraries' chatter only from WARNING up, and each of
    their repeated lines once per interval (:class:`~creatorpulse.logs.RepeatLimiter`).
    ``log_format`` ``json``: one JSON object per line
    (:class:`~creatorpulse.logs.JsonFormatter`)."""
    handler: logging.Handler
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RepeatLimiter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def open_sink(settings: Settings, *, migrate_schema: bool = True) -> ClickHouseSink:
    """A started (and migrated) sink, or a SettingsError that says what to fix."""
    url = settings.resolved_clickhouse_url()
    if url.startswith("chdb://"):
        Path(url.removeprefix("chdb://")).parent.mkdir(parents=True, exist_ok=True)
    try:
        sink = ClickHouseSink(
            url,
            connect_timeout_s=settings.clickhouse_connect_timeout_s,
            timeout_s=settings.clickhouse_timeout_s,
        )
    except ValueError as exc:
        raise SettingsError(f"--clickhouse-url / CREATORPULSE_CLICKHOUSE_URL: {exc}") from None
    try:
        if url.startswith("chdb://"):
            with native_stderr_silenced():  # the error is reported below, as one line
                sink.start()
        else:
            sink.start()
        if migrate_schema:
            applied = migrate(sink)
            if applied:
                log.info("ClickHouse migrations applied: %s", ", ".join(applied))
    except TimeoutError:
        sink.close()
        raise SettingsError(
            f"ClickHouse at {sink.target.display_url()} did not answer within "
            f"{settings.clickhouse_connect_timeout_s:g} s: check the URL and that the server "
            "is up, or allow more time with --clickhouse-connect-timeout-s / "
            "CREATORPULSE_CLICKHOUSE_CONNECT_TIMEOUT_S"
        ) from None
    except Exception as exc:
        sink.close()
        if url.startswith("chdb://") and (
            "lock" in str(exc).lower() or "EmbeddedServer" in str(exc)
        ):
            raise StoreHeld(
                f"the chDB store {url} is in use by another process (a running `creatorpulse "
                "run` or `worker`: chDB allows one process per store); stop it, or let "
                "`creatorpulse top` read through it (its --web-port)"
            ) from None
        raise SettingsError(
            f"cannot use ClickHouse at {sink.target.display_url()}: {exc}"
        ) from None
    return sink


def connect_admin(bootstrap: str, timeout_s: float = KAFKA_CONNECT_TIMEOUT_S) -> KafkaAdminClient:
    """A connected kafka-python admin client, or one SettingsError within ``timeout_s``.

    The client's own loggers stay silent while it connects: the error says what failed.
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    wait_for_listener(bootstrap, timeout_s)
    options: dict[str, Any] = {}
    if "bootstrap_timeout_ms" in KafkaAdminClient.DEFAULT_CONFIG:  # kafka-python 3
        options["bootstrap_timeout_ms"] = max(int((deadline - time.monotonic()) * 1000), 1000)
    with silenced("kafka"):
        try:
            return KafkaAdminClient(
                bootstrap_servers=bootstrap.split(","), client_id="creatorpulse-admin", **options
            )
        except (KafkaError, OSError) as exc:
            raise SettingsError(
                f"cannot reach Kafka at {bootstrap}: it accepts connections but does not "
                f"answer as Kafka ({exc}); {_BOOTSTRAP_FIX}"
            ) from None


def check_kafka(bootstrap: str, timeout_s: float = KAFKA_CONNECT_TIMEOUT_S) -> None:
    """Stop with one message naming the setting unless Kafka answers at ``bootstrap``."""
    admin = connect_admin(bootstrap, timeout_s)
    with silenced("kafka"):
        admin.close()


def ensure_topics(
    settings: Settings,
    bootstrap: str,
    *,
    timeout_s: float = KAFKA_CONNECT_TIMEOUT_S,
) -> None:
    """Create the worker's topics if missing; refuse partition counts that do not match.

    Created here rather than left to broker auto-creation: state is partitioned like
    the input topic, so the input and rekey topics must have exactly ``partitions``,
    and the reference topics are compacted (latest value per key). The window-rows
    topic is not compacted: a reader that lags must still see a window's last row.
    """
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    config = worker_config(settings, bootstrap)
    topics = config.topics
    compacted = {"cleanup.policy": "compact"}
    wanted: dict[str, tuple[int, dict[str, str], bool]] = {
        config.input_topic: (config.partitions, {}, True),
        topics.rekey: (config.partitions, {}, True),
        topics.dead_letters: (config.partitions, {}, False),
        topics.profiles: (1, compacted, False),
        topics.contracts: (1, compacted, False),
    }
    wanted[topics.window_rows] = (config.partitions, {}, False)
    wanted[topics.alerts] = (config.partitions, {}, False)  # keyed by campaign, like rows
    admin = connect_admin(bootstrap, timeout_s)
    try:
        described = admin.describe_topics(list(wanted))
        existing = {
            t.get("name", t.get("topic")): len(t["partitions"])
            for t in described
            if not t["error_code"] and t["partitions"]
        }
        for topic, (partitions, topic_config, must_match) in wanted.items():
            have = existing.get(topic)
            if have is None:
                try:
                    admin.create_topics(
                        [NewTopic(topic, partitions, 1, topic_configs=topic_config)],
                        timeout_ms=10_000,
                    )
                    log.info("created topic %s with %d partitions", topic, partitions)
                except TopicAlreadyExistsError:
                    pass
            elif must_match and have != partitions:
                raise SettingsError(
                    f"topic {topic!r} has {have} partitions but the worker is set to "
                    f"{partitions}; set --partitions / CREATORPULSE_PARTITIONS={have} "
                    "(state is partitioned like the input topic)"
                )
    finally:
        admin.close()


def load_baseline(
    sink: ClickHouseSink, settings: Settings, now_ms: int | None = None
) -> dict[WindowKey, tuple[int, ...]]:
    """Totals of windows still open, for a worker whose broker kept nothing (embedded).

    The embedded broker stores nothing across restarts, so a new run would otherwise
    start those windows from zero and its rows would replace the totals in ClickHouse.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return sink.window_totals(ending_after_ms=now_ms - settings.grace_s * 1000)


def worker_config(settings: Settings, bootstrap: str) -> WorkerConfig:
    from creatorpulse.alerts.settings import alert_settings

    alerting = alert_settings()
    return WorkerConfig(
        kafka_bootstrap=bootstrap,
        app_id=settings.app_id,
        input_topic=settings.input_topic,
        partitions=settings.partitions,
        grace_s=settings.grace_s,
        future_skew_s=settings.future_skew_s,
        window_sizes_s=settings.window_sizes_s,
        flush_interval_s=settings.flush_interval_s,
        flush_max_age_s=settings.flush_max_age_s,
        kafka_send_timeout_s=settings.kafka_send_timeout_s,
        data_dir=settings.data_dir / "faust",
        web_port=settings.web_port or None,
        web_host=settings.web_host,
        writes_reference_data=settings.sink == "clickhouse",
        shutdown_timeout_s=settings.shutdown_timeout_s,
        alert_rules=alerting.rules() if alerting.alerts else None,
        alerts_topic=alerting.alerts_topic,
    )


def start_alert_sink(
    settings: Settings, sink: ClickHouseSink, bootstrap: str
) -> tuple[Callable[[], None], AlertStats] | None:
    """With alerts on, the alert sink in a thread of this process (the one that holds the
    store): returns the function that stops it and its counters; ``None`` with alerts off."""
    from creatorpulse.alerts.outbox import AlertOutbox, AlertSinkService
    from creatorpulse.alerts.settings import alert_settings
    from sinks.clickhouse.alerts import ClickHouseAlertStore
    from sinks.consumer import GroupReader

    alerting = alert_settings()
    if not alerting.alerts:
        return None
    outbox = AlertOutbox(alerting.rules(), ClickHouseAlertStore(sink), alerting.hook_configs())
    topics = worker_config(settings, bootstrap).topics
    service = AlertSinkService(
        outbox, topics.alerts, GroupReader(bootstrap, topics.alerts_sink_group)
    )
    log.info(
        "alert sink: %s -> alerts table and hooks %s",
        topics.alerts,
        ", ".join(outbox.hook_names) or "(none)",
    )
    return service.start_thread(), outbox.stats


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps a port to this machine (``localhost`` or 127/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


#: How long a Python thread may hold the GIL before another one waiting may take it.
#: The worker's event loop (decode + apply) and aiokafka's consumer thread are both
#: CPU-bound; at the interpreter's default (5 ms) they hand the GIL back and forth so
#: often that the switching itself costs a fifth of the batch-record throughput
#: (README, performance: 69-78k -> 93-99k events/s). 20 ms keeps the consumer thread
#: ahead of the stream (one fetch is a few ms of work) and is nothing next to the
#: 10 s session timeout the group's heartbeats guard.
GIL_SWITCH_INTERVAL_S = 0.02


def run_faust(worker: Worker) -> int:
    """Run the worker until SIGINT/SIGTERM; returns the exit code (0 after a clean stop).

    Logging stays as :func:`configure_logging` set it (``override_logging=False``).
    """
    import faust

    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    runner = faust.Worker(worker.app, quiet=True, redirect_stdouts=False, override_logging=False)
    # Faust's startup spinner writes cursor escapes to stdout even in a pipe, where the
    # progress lines of `run` go (and on a terminal, into its board).
    runner.spinner = None
    try:
        runner.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def build(
    settings: Settings,
    sink: ClickHouseSink | None,
    bootstrap: str,
    *,
    baseline: dict[WindowKey, tuple[int, ...]] | None = None,
    delivery_stats: AlertStats | None = None,
) -> Worker:
    """The worker, writing ``sink`` (ClickHouse), or with ``None`` only the window-rows
    topic, which a separate ``creatorpulse sink`` writes to ClickHouse.
    ``delivery_stats``: the counters of an alert sink running in this process, for the
    worker's ``/metrics``."""
    config = worker_config(settings, bootstrap)
    token = web_token(settings) if config.web_port is not None else None
    config.data_dir.mkdir(parents=True, exist_ok=True)
    # The alert stage is built after the pages are declared: its view is handed over
    # once it exists, and read on each request.
    views: list[PendingView] = []

    def pending() -> dict[tuple[str, str], str]:
        return views[0].pending() if views else {}

    pages = add_query_pages(
        sink if isinstance(sink, ClickHouseSink) else None,
        token=token,
        pending=pending if config.alert_rules is not None else None,
        alert_stats=lambda: views[0].stats if views else None,
        delivery_stats=delivery_stats,
    )
    if isinstance(sink, ClickHouseSink):
        from creatorpulse.web.alert_pages import add_alert_pages

        query_pages, alert_pages = pages, add_alert_pages(sink)

        def pages(app: Any, processor: Any) -> None:
            query_pages(app, processor)
            alert_pages(app, processor)

    return build_worker(
        config, sink, baseline=baseline, extra_pages=pages, on_alert_view=views.append
    )


def dashboard_url(settings: Settings) -> str | None:
    """Where the dashboard of a process with these settings is (None: no web port)."""
    if not settings.web_port:
        return None
    host = settings.web_host
    if host in ("0.0.0.0", "::", "[::]"):  # every interface: this machine's is one of them
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.web_port}/dashboard"


def web_token(settings: Settings) -> str | None:
    """The bearer token of the HTTP port; a SettingsError when it listens beyond this
    machine without one (its pages show the campaigns and Faust's tables)."""
    token = settings.resolved_web_token()
    if token is None and not is_loopback(settings.web_host):
        raise SettingsError(
            f"--web-host / CREATORPULSE_WEB_HOST={settings.web_host} listens beyond this "
            "machine and needs a bearer token: set CREATORPULSE_WEB_TOKEN or "
            "--web-token-file / CREATORPULSE_WEB_TOKEN_FILE (or bind 127.0.0.1)"
        )
    if token is not None and not is_loopback(settings.web_host):
        log.info("HTTP port on %s:%d requires a bearer token", settings.web_host, settings.web_port)
    return token
