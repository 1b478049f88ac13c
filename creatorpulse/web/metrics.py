"""Prometheus metrics of the worker and of the sink process (``/metrics``).

A custom collector reads the counters the worker keeps anyway (``WorkerStats``, the
sink writer's stats, the partition states) when Prometheus scrapes, so nothing on the
per-record path touches a Prometheus object. Names follow Prometheus practice: a
``creatorpulse_`` prefix, base units (seconds, records), ``_total`` counters, and no
label with unbounded values (no creator or campaign ids; partitions and topics are
bounded by configuration). README, "Metrics", describes each one.
"""

from __future__ import annotations

import hmac
import platform
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib import metadata
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from streams.observability import AlertStats, Histogram

PREFIX = "creatorpulse"

#: (topic, partition) -> the partition's high watermark, or None while unknown.
Highwater = Callable[[str, int], "int | None"]

__all__ = [
    "CONTENT_TYPE_LATEST",
    "AlertStats",
    "BuildInfoCollector",
    "SinkCollector",
    "WorkerCollector",
    "render",
    "serve_metrics",
    "sink_registry",
    "worker_registry",
]


def _name(suffix: str) -> str:
    return f"{PREFIX}_{suffix}"


def _counter(suffix: str, doc: str, value: float) -> CounterMetricFamily:
    # CounterMetricFamily appends _total itself: the suffix is the name without it.
    return CounterMetricFamily(_name(suffix), doc, value=value)


def _labelled_counter(
    suffix: str, doc: str, label: str, values: Mapping[str, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(_name(suffix), doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def _histogram(suffix: str, doc: str, histogram: Histogram) -> HistogramMetricFamily:
    buckets = [
        ("+Inf" if bound == float("inf") else repr(float(bound)), count)
        for bound, count in histogram.cumulative()
    ]
    return HistogramMetricFamily(_name(suffix), doc, buckets=buckets, sum_value=histogram.total)


def alert_metrics(alerts: AlertStats, deliveries: AlertStats | None = None) -> Iterator[Metric]:
    """The alerting stage's and webhook delivery's metrics (zero until they report).

    ``deliveries``: where the notification and delivery counters come from when they are
    kept apart from the firing counters (a worker whose process also runs the alert
    sink); by default both come from ``alerts``."""
    sent = alerts if deliveries is None else deliveries
    firing = GaugeMetricFamily(
        _name("alerts_firing"), "Alerts firing now, by rule", labels=["rule"]
    )
    for rule, n in sorted(alerts.firing_by_rule.items()):
        firing.add_metric([rule], n)
    yield firing
    yield _labelled_counter(
        "alerts_fired", "Alerts that fired, by rule", "rule", alerts.fired_by_rule
    )
    yield _counter(
        "alert_evaluations",
        "Minutes of a campaign's event-time clock the alert stage evaluated",
        alerts.evaluations,
    )
    yield _labelled_counter(
        "notifications",
        "Notifications decided by the notification policy, by outcome",
        "outcome",
        sent.notifications_by_outcome,
    )
    yield _labelled_counter(
        "webhook_deliveries",
        "Webhook delivery attempts, by outcome (delivered, retry, failed, ...)",
        "outcome",
        sent.webhook_deliveries_by_outcome,
    )
    yield GaugeMetricFamily(
        _name("webhook_outbox_pending"),
        "Notifications waiting in the webhook outbox",
        value=sent.outbox_pending,
    )


class WorkerCollector(Collector):
    """The worker's metrics, read from its processor at each scrape.

    ``processor`` is a ``streams.processor.StreamProcessor``; ``highwater`` gives a
    partition's end offset (from the Faust consumer) for the lag, ``alerts`` the
    alerting stage's counters when it runs in this process, ``deliveries`` the alert
    sink's (notifications, webhook deliveries, outbox) when it runs here too.
    """

    def __init__(
        self,
        processor: Any,
        *,
        highwater: Highwater | None = None,
        alerts: AlertStats | None = None,
        deliveries: AlertStats | None = None,
    ) -> None:
        self.processor = processor
        self.highwater = highwater
        self.alerts = alerts or AlertStats()
        self.deliveries = deliveries

    def collect(self) -> Iterable[Metric]:
        processor = self.processor
        stats = processor.stats
        consumed = CounterMetricFamily(
            _name("events_consumed"),
            "Elements read from Kafka (events and refused elements), by source topic",
            labels=["topic"],
        )
        for topic, n in sorted(stats.events_by_topic.items()):
            consumed.add_metric([topic], n)
        yield consumed
        yield _counter(
            "records_consumed", "Kafka records read from the input and rekey topics", stats.records
        )
        yield _counter("events_counted", "Events counted into windows", stats.events_counted)
        yield _counter("events_duplicate", "Events dropped as duplicates", stats.duplicates)
        yield _counter("events_late", "Events refused as late (dead-lettered)", stats.late)
        yield _counter(
            "events_invalid", "Elements refused as invalid (dead-lettered)", stats.invalid
        )
        yield _counter(
            "events_rekeyed", "Events forwarded to their creator's partition", stats.rekeyed
        )
        yield _labelled_counter(
            "dead_letters",
            "Dead letters, by reason class (the reason's text before its first colon)",
            "reason",
            stats.dead_letters_by_reason,
        )
        yield _histogram(
            "event_lateness_seconds",
            "Processing time minus event time, of the first counted event of each record",
            stats.lateness,
        )
        yield _histogram(
            "flush_duration_seconds",
            "Duration of one flush cycle (changelog, rows and offsets to Kafka)",
            stats.flush_durations,
        )
        yield _counter("flushes", "Flushes that made state durable", stats.flushes)
        yield _counter(
            "kafka_send_failures",
            "Records Kafka refused at a flush (sent again)",
            stats.send_failures,
        )
        yield _counter(
            "window_rows_published",
            "Window rows Kafka took on the window-rows topic",
            stats.rows_published,
        )
        yield _counter(
            "windows_closed", "Windows that closed and left memory", stats.windows_closed
        )
        watermark = GaugeMetricFamily(
            _name("watermark_timestamp_seconds"),
            "Highest event time seen on the partition (Unix seconds)",
            labels=["partition"],
        )
        open_windows = GaugeMetricFamily(
            _name("windows_open"), "Windows held in memory", labels=["partition"]
        )
        dedup_ids = GaugeMetricFamily(
            _name("dedup_ids"),
            "Event ids held for deduplication (those within the grace period)",
            labels=["partition"],
        )
        lag = GaugeMetricFamily(
            _name("consumer_lag_records"),
            "Records in the partition not yet applied (high watermark minus next offset)",
            labels=["topic", "partition"],
        )
        topics = (processor.config.input_topic, processor.topics.rekey)
        for partition, state in sorted(processor.states.items()):
            label = str(partition)
            if state.watermark.value_ms is not None:
                watermark.add_metric([label], state.watermark.value_ms / 1000)
            open_windows.add_metric([label], len(state.windows))
            dedup_ids.add_metric([label], len(state.seen))
            if self.highwater is None:
                continue
            for topic in topics:
                end = self.highwater(topic, partition)
                if end is not None:
                    lag.add_metric([topic, label], max(end - (state.offsets.get(topic, -1) + 1), 0))
        yield watermark
        yield open_windows
        yield dedup_ids
        yield lag
        if stats.last_record_unix is not None:
            yield GaugeMetricFamily(
                _name("last_record_timestamp_seconds"),
                "When the worker last applied a batch (Unix seconds)",
                value=stats.last_record_unix,
            )
        yield from self._sink()
        yield from alert_metrics(self.alerts, self.deliveries)

    def _sink(self) -> Iterator[Metric]:
        writer = self.processor.writer
        if writer is None:
            return  # rows go to the window-rows topic; the sink process reports the rest
        yield from sink_metrics(writer.stats)


def sink_metrics(stats: Any) -> Iterator[Metric]:
    """Metrics of a ClickHouse writer: the worker's ``WriterStats`` or the sink
    process's ``SinkStats`` (the same names, so one dashboard reads either)."""
    yield _counter("sink_rows_written", "Window rows written to ClickHouse", stats.rows_written)
    yield _counter(
        "sink_rows_refused",
        "Rows ClickHouse refused (recorded as dead letters)",
        stats.rows_refused,
    )
    yield _counter(
        "sink_dead_letters_written",
        "Dead letters written to ClickHouse",
        stats.dead_letters_written,
    )
    yield _counter("sink_failures", "Failed ClickHouse writes (each retried)", stats.failures)
    yield SummaryMetricFamily(
        _name("sink_batch_duration_seconds"),
        "Duration of one ClickHouse batch write, retries included",
        count_value=stats.inserts,
        sum_value=stats.write_s,
    )
    pending = getattr(stats, "rows_pending", None)
    if pending is not None:
        yield GaugeMetricFamily(
            _name("sink_rows_pending"), "Rows waiting for the ClickHouse writer", value=pending
        )
    if stats.last_write_unix is not None:
        yield GaugeMetricFamily(
            _name("sink_last_write_timestamp_seconds"),
            "When the last ClickHouse write finished (Unix seconds)",
            value=stats.last_write_unix,
        )


class SinkCollector(Collector):
    """The ``creatorpulse sink`` process's metrics (``sinks.service.SinkStats``)."""

    def __init__(self, stats: Any) -> None:
        self.stats = stats

    def collect(self) -> Iterable[Metric]:
        stats = self.stats
        yield _counter("sink_polls", "Polls that returned records", stats.polls)
        yield _counter(
            "sink_invalid", "Records on the sink topics that did not decode", stats.invalid
        )
        yield _counter(
            "sink_reference_rows_written",
            "Creator profiles and campaign contracts written",
            stats.reference_rows_written,
        )
        yield from sink_metrics(stats)


class BuildInfoCollector(Collector):
    """``creatorpulse_build_info``: 1, labelled with the versions that run."""

    def __init__(self, role: str) -> None:
        self.role = role

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            _name("build_info"),
            "Versions of creatorpulse and its stream library; always 1",
            labels=["version", "faust", "python", "role"],
        )
        info.add_metric(
            [
                _version("creatorpulse"),
                _version("faust-streaming"),
                platform.python_version(),
                self.role,
            ],
            1,
        )
        yield info


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def worker_registry(
    processor: Any,
    *,
    highwater: Highwater | None = None,
    alerts: AlertStats | None = None,
    deliveries: AlertStats | None = None,
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        WorkerCollector(processor, highwater=highwater, alerts=alerts, deliveries=deliveries)
    )
    registry.register(BuildInfoCollector("worker"))
    return registry


def sink_registry(stats: Any, alerts: AlertStats | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SinkCollector(stats))
    registry.register(BuildInfoCollector("sink"))
    if alerts is not None:
        shown = alerts

        class _Alerts(Collector):
            def collect(self) -> Iterable[Metric]:
                return alert_metrics(shown)

        registry.register(_Alerts())
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format of everything in ``registry``."""
    return generate_latest(registry)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every few seconds is not an event of note


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def metrics_app(registry: CollectorRegistry, token: str | None = None) -> Any:
    """A WSGI app serving ``registry`` on ``/metrics``; 401 without ``token`` if set."""
    exposition = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if token is not None:
            scheme, _, presented = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
            ok = scheme.lower() == "bearer" and hmac.compare_digest(
                presented.strip().encode(), token.encode()
            )
            if not ok:
                start_response(
                    "401 Unauthorized",
                    [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")],
                )
                return [b"missing or wrong bearer token\n"]
        if environ.get("PATH_INFO") not in ("/metrics", "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"see /metrics\n"]
        return exposition(environ, start_response)

    return app


def serve_metrics(
    registry: CollectorRegistry, host: str, port: int, *, token: str | None = None
) -> tuple[int, Callable[[], None]]:
    """Serve ``registry`` on ``http://host:port/metrics`` in a daemon thread.

    Returns the port (useful with 0) and a function that stops the server.
    """
    server = make_server(
        host, port, metrics_app(registry, token), _ThreadingServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return int(server.server_port), stop
