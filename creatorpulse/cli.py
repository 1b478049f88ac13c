"""The ``creatorpulse`` command.

Shared settings are options of the command itself (each also an environment
variable); each subcommand adds only what is its own::

    creatorpulse run                                   # everything, embedded
    creatorpulse --kafka-bootstrap k:9092 --clickhouse-url http://ch:8123/db worker
    creatorpulse --kafka-bootstrap k:9092 replay stats.jsonl
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.live import Live

from creatorpulse.board import DEFAULT_SORT, SORT_KEYS, NoSuchCampaign, SortKey, parse_sort
from creatorpulse.settings import (
    LEADERBOARD_MAX_LAST_S,
    LEADERBOARD_MAX_LIMIT,
    Settings,
    SettingsError,
    StoreHeld,
    load_settings,
)

if TYPE_CHECKING:  # the CLI imports heavy modules only in the commands that need them
    from creatorpulse.board import Board
    from creatorpulse.demo import DemoCampaign
    from sinks.clickhouse import ClickHouseSink
    from streams.app import Worker

app = typer.Typer(
    name="creatorpulse",
    help=(
        "Streaming metrics for influencer campaigns: post-stat events from Kafka, "
        "exact event-time windows per creator and campaign, totals in ClickHouse.\n\n"
        "Start with `creatorpulse run`: it needs no Kafka and no ClickHouse."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def _default(name: str) -> str:
    field = Settings.model_fields[name]
    default = "unset" if field.default is None else field.default
    return f"{field.description} \\[default: {default}]"  # escaped: rich markup


def _env(name: str) -> str:
    return f"CREATORPULSE_{name.upper()}"


def _setting(name: str, *flags: str) -> Any:
    return typer.Option(
        "--" + name.replace("_", "-"),
        *flags,
        envvar=_env(name),
        show_envvar=True,
        help=_default(name),
    )


class _State:
    overrides: dict[str, Any] = {}

    @classmethod
    def settings(cls) -> Settings:
        return load_settings(**cls.overrides)


@app.callback()
def main_options(
    kafka_bootstrap: Annotated[str | None, _setting("kafka_bootstrap")] = None,
    clickhouse_url: Annotated[str | None, _setting("clickhouse_url")] = None,
    clickhouse_connect_timeout_s: Annotated[
        float | None, _setting("clickhouse_connect_timeout_s")
    ] = None,
    clickhouse_timeout_s: Annotated[float | None, _setting("clickhouse_timeout_s")] = None,
    shutdown_timeout_s: Annotated[float | None, _setting("shutdown_timeout_s")] = None,
    input_topic: Annotated[str | None, _setting("input_topic")] = None,
    grace_s: Annotated[int | None, _setting("grace_s")] = None,
    future_skew_s: Annotated[int | None, _setting("future_skew_s")] = None,
    windows: Annotated[str | None, _setting("windows")] = None,
    partitions: Annotated[int | None, _setting("partitions")] = None,
    data_dir: Annotated[Path | None, _setting("data_dir")] = None,
    app_id: Annotated[str | None, _setting("app_id")] = None,
    flush_interval_s: Annotated[float | None, _setting("flush_interval_s")] = None,
    flush_max_age_s: Annotated[float | None, _setting("flush_max_age_s")] = None,
    kafka_send_timeout_s: Annotated[float | None, _setting("kafka_send_timeout_s")] = None,
    sink: Annotated[str | None, _setting("sink")] = None,
    web_port: Annotated[int | None, _setting("web_port")] = None,
    web_host: Annotated[str | None, _setting("web_host")] = None,
    web_token_file: Annotated[Path | None, _setting("web_token_file")] = None,
    sink_metrics_port: Annotated[int | None, _setting("sink_metrics_port")] = None,
    log_format: Annotated[str | None, _setting("log_format")] = None,
) -> None:
    """Settings shared by every command (flags win over environment variables)."""
    _State.overrides = {k: v for k, v in locals().items() if v is not None}


def _check_sort(value: str) -> str:
    try:
        return parse_sort(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _sort_option(
    help: str = "Rank creators by this (CPA: lowest first; the rest: highest first).",
) -> Any:
    return typer.Option(
        "--sort",
        metavar="|".join(SORT_KEYS),
        callback=_check_sort,
        help=help,
        show_default=True,
    )


# -- run and worker ----------------------------------------------------------------------


@app.command()
def run(
    mode: Annotated[
        str, typer.Option(help="Simulator: 'poller' (snapshots) or 'clickstream' (deltas).")
    ] = "poller",
    seed: Annotated[int, typer.Option(help="Simulator seed (same seed, same creators).")] = 7,
    campaigns: Annotated[int, typer.Option(help="Simulated campaigns.")] = 3,
    creators: Annotated[int, typer.Option(help="Simulated creators per campaign.")] = 12,
    simulate: Annotated[bool, typer.Option(help="Run the built-in campaign simulator.")] = True,
    new_campaign: Annotated[
        bool,
        typer.Option(
            "--new-campaign",
            help="Start a fresh demo campaign instead of continuing the one on this store.",
        ),
    ] = False,
    sort: Annotated[str, _sort_option("Rank the board by this at start (keys change it).")] = (
        DEFAULT_SORT
    ),
    limit: Annotated[
        int | None,
        typer.Option(
            help="Creators on the board (default: as many as the terminal's height fits; "
            "15 in a pipe).",
            min=1,
            max=LEADERBOARD_MAX_LIMIT,
        ),
    ] = None,
    refresh_s: Annotated[float, typer.Option(help="Board refresh interval (terminal).")] = 1.0,
    progress_s: Annotated[
        float, typer.Option(help="Seconds between progress lines when stdout is not a terminal.")
    ] = 10.0,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Progress as JSON lines (when stdout is not a terminal)."),
    ] = False,
) -> None:
    """Run everything in one process: broker, worker, simulator, live board.

    Without --kafka-bootstrap an embedded broker starts on 127.0.0.1; without
    --clickhouse-url the totals go to a chDB store in --data-dir, which survives
    restarts. Run it again to continue the same demo campaign (--new-campaign for a
    fresh one). On a terminal, keys re-sort the board; in a pipe it prints a progress
    line every --progress-s. Ctrl-C (or q) stops cleanly.
    """
    from creatorpulse import runtime
    from creatorpulse.board import read_live_board
    from creatorpulse.demo import next_campaign
    from creatorpulse.liveboard import BoardLoop

    settings = _State.settings()
    if settings.sink != "clickhouse":
        raise SettingsError(
            "`run` writes ClickHouse itself: unset --sink / CREATORPULSE_SINK, or run "
            "`creatorpulse worker` and `creatorpulse sink` for a separate sink process"
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / "run.log"
    runtime.configure_logging(path=log_path, log_format=settings.log_format)
    with ExitStack() as stack:
        bootstrap, sink, worker = _start_pipeline(settings, stack, progress=_step)
        assert sink is not None  # sink=clickhouse, checked above
        stop = threading.Event()
        stack.callback(stop.set)
        demo: DemoCampaign | None = None
        if simulate:
            # A new campaign's flight starts with the history published first.
            started_ms = int((time.time() - DEMO_HISTORY_S) * 1000)
            demo = next_campaign(settings.data_dir, new=new_campaign, now_ms=started_ms)
            how = "new" if demo.session == 1 else "continued; --new-campaign starts a fresh one"
            _step(f"simulating campaign {demo.run_id} (session {demo.session}, {how})")
            sim_thread = threading.Thread(
                target=_simulate_forever,
                args=(settings, bootstrap, stop, mode, seed, campaigns, creators, demo),
                name="simulator",
                daemon=True,
            )
            sim_thread.start()
        console.print(
            f"[bold]creatorpulse[/] broker {bootstrap}"
            f"{' (embedded)' if settings.embedded_broker else ''}"
            f", store {sink.target.display_url()}, logs {log_path}",
            highlight=False,
            soft_wrap=not console.is_terminal,  # a log line stays one line; a terminal wraps
        )
        url = runtime.dashboard_url(settings)
        if url is not None:
            token = "" if runtime.is_loopback(settings.web_host) else " (once with ?token=...)"
            console.print(f"[bold]dashboard[/] {url}{token}", highlight=False, soft_wrap=True)
        only = demo.owns if demo is not None else None

        def stats() -> dict[str, int]:
            counters = worker.processor.stats
            return {
                "records": counters.records,
                "events counted": counters.events_counted,
                "duplicates": counters.duplicates,
                "late": counters.late,
                "invalid": counters.invalid,
                "rows written": int(worker.processor.snapshot()["rows_written"]),
            }

        loop = BoardLoop(
            fetch=lambda key, rows: read_live_board(sink, sort=key, limit=rows, only=only),
            limit=limit,
            stats=stats,
            stop=stop,
            title="creatorpulse: last hour of event time",
            sort=parse_sort(sort),
            notes=(_SIMULATOR_NOTE,) if simulate else (),
            refresh_s=refresh_s,
            progress_s=progress_s,
            as_json=as_json,
            on_error=lambda exc: runtime.log.warning("board query failed: %s", exc),
        )
        board = threading.Thread(target=loop.run, name="board", daemon=True)
        board.start()
        code = runtime.run_faust(worker)
        stop.set()
        board.join(timeout=5)
    console.print(
        f"stopped (exit {code}); totals are in {settings.resolved_clickhouse_url()}",
        highlight=False,
    )
    raise typer.Exit(code)


#: What the demo's numbers are, so nobody takes a planted outperformer for a finding.
_SIMULATOR_NOTE = (
    "Simulated data: each campaign has 2 planted outperformers (engagement well above "
    "their tier's), the creators the alerts flag, and 1 creator hot on a tiny sample "
    "(shown, not ranked); each fee is charged pro rata over a 3-day flight."
)


def _step(message: str) -> None:
    """One first-run progress step, on stderr (stdout carries the board)."""
    console.print(f"[dim]creatorpulse:[/] {message}", highlight=False)


@app.command()
def worker() -> None:
    """Run the stream processors and the ClickHouse sink until SIGINT/SIGTERM.

    Flushes everything on stop and exits 0. Logs go to stderr.
    """
    settings = _State.settings()
    _check_listener(settings)
    from creatorpulse import runtime

    runtime.configure_logging(log_format=settings.log_format)
    with ExitStack() as stack:
        bootstrap, sink, built = _start_pipeline(settings, stack)
        runtime.log.info(
            "worker %s: kafka %s, topic %s (%d partitions), windows %s s, grace %d s, rows to %s",
            settings.app_id,
            bootstrap,
            settings.input_topic,
            settings.partitions,
            ",".join(map(str, settings.window_sizes_s)),
            settings.grace_s,
            sink.target.display_url() if sink is not None else f"topic {_rows_topic(settings)}",
        )
        url = runtime.dashboard_url(settings)
        if url is not None:
            runtime.log.info("dashboard on %s", url)
        code = runtime.run_faust(built)
    raise typer.Exit(code)


def _start_pipeline(
    settings: Settings, stack: ExitStack, *, progress: Callable[[str], None] = lambda _: None
) -> tuple[str, ClickHouseSink | None, Worker]:
    """Broker (embedded unless given), migrated sink, topics, and the built worker.

    Everything started is stopped by ``stack``. Returns (bootstrap, sink, worker); with
    ``sink=topic`` the worker opens no ClickHouse (sink None) and publishes its rows.
    ``progress`` hears each step as it starts (`run` shows them: a first run takes a while).
    """
    _check_listener(settings)
    from creatorpulse import runtime

    if settings.sink == "topic":
        if settings.embedded_broker:
            raise SettingsError(
                "--sink / CREATORPULSE_SINK=topic needs --kafka-bootstrap: the embedded "
                "broker keeps nothing, so rows published to it could be lost on a restart"
            )
        bootstrap = settings.kafka_bootstrap or ""
        runtime.ensure_topics(settings, bootstrap)
        return bootstrap, None, runtime.build(settings, None, bootstrap)
    progress(
        "starting the embedded broker"
        if settings.embedded_broker
        else f"connecting to Kafka at {settings.kafka_bootstrap}"
    )
    bootstrap = _bootstrap(settings, stack)
    # Kafka first: an unreachable broker is then the one message, before the store opens.
    progress("creating topics")
    runtime.ensure_topics(settings, bootstrap)
    progress(f"opening the store and creating the schema ({settings.resolved_clickhouse_url()})")
    sink = runtime.open_sink(settings)
    stack.callback(sink.close)
    # The embedded broker kept nothing from an earlier run: open windows start from
    # the totals already in the store instead of from zero.
    baseline = runtime.load_baseline(sink, settings) if settings.embedded_broker else None
    alert_sink = runtime.start_alert_sink(settings, sink, bootstrap)
    if alert_sink is not None:
        stack.callback(alert_sink[0])
    progress("starting the worker")
    built = runtime.build(
        settings,
        sink,
        bootstrap,
        baseline=baseline,
        delivery_stats=alert_sink[1] if alert_sink is not None else None,
    )
    return bootstrap, sink, built


def _rows_topic(settings: Settings) -> str:
    from schemas.topics import Topics

    return Topics(app_id=settings.app_id, input=settings.input_topic).window_rows


@app.command("sink")
def sink_command() -> None:
    """Write the window rows that workers with --sink topic publish to ClickHouse.

    Reads <app-id>-window-rows, the dead-letter topic and the reference topics as
    consumer group <app-id>-sink, writes each poll to ClickHouse and commits only then,
    so a crash or restart writes again rather than loses (rows are whole, versioned
    totals). Run one per ClickHouse store: with chDB it must be the only process that
    opens the store. Needs --kafka-bootstrap. Stops cleanly on SIGINT/SIGTERM.
    """
    settings = _State.settings()
    if settings.embedded_broker:
        raise SettingsError(
            "`creatorpulse sink` reads what workers publish to Kafka: set --kafka-bootstrap "
            "/ CREATORPULSE_KAFKA_BOOTSTRAP"
        )
    _check_listener(settings)
    from creatorpulse import runtime
    from sinks.consumer import GroupReader
    from sinks.service import RowSinkService, SinkTopics

    runtime.configure_logging(log_format=settings.log_format)
    bootstrap = settings.kafka_bootstrap or ""
    config = runtime.worker_config(settings, bootstrap)
    with ExitStack() as stack:
        runtime.ensure_topics(settings, bootstrap)
        sink = runtime.open_sink(settings)
        stack.callback(sink.close)
        topics = SinkTopics(
            window_rows=_rows_topic(settings),
            dead_letters=config.topics.dead_letters,
            profiles=config.topics.profiles,
            contracts=config.topics.contracts,
        )
        service = RowSinkService(sink, topics, GroupReader(bootstrap, f"{settings.app_id}-sink"))
        alert_sink = runtime.start_alert_sink(settings, sink, bootstrap)
        if alert_sink is not None:
            stack.callback(alert_sink[0])
        if settings.sink_metrics_port:
            from dataclasses import asdict

            from creatorpulse.web.dashboard import Dashboard
            from creatorpulse.web.metrics import CONTENT_TYPE_LATEST, render, sink_registry
            from creatorpulse.web.routes import serve_in_thread

            registry = sink_registry(service.stats, alerts=alert_sink[1] if alert_sink else None)
            # The sink owns the store here (with chDB, no other process can open it), so
            # the dashboard is served here too, beside the sink's own metrics.
            port, stop_web = serve_in_thread(
                Dashboard(sink, sink_stats=lambda: asdict(service.stats)),
                settings.web_host,
                settings.sink_metrics_port,
                token=runtime.web_token(settings),
                metrics=lambda: render(registry),
                metrics_content_type=CONTENT_TYPE_LATEST,
            )
            stack.callback(stop_web)
            runtime.log.info(
                "sink metrics on http://%s:%d/metrics, dashboard on /dashboard",
                settings.web_host,
                port,
            )
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        runtime.log.info("sink %s: store %s", settings.app_id, sink.target.display_url())
        service.run(stop)
    raise typer.Exit(0)


def _bootstrap(settings: Settings, stack: ExitStack) -> str:
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    from creatorpulse.brokers.embedded import EmbeddedBroker

    broker = EmbeddedBroker(log_dir=settings.data_dir)
    broker.start()
    stack.callback(broker.stop)
    return broker.bootstrap


#: The demo's campaigns started this long ago: their history is published first, so the
#: board has an hour of data and the alerts a full trailing window within seconds.
DEMO_HISTORY_S = 3600.0


def _simulate_forever(
    settings: Settings,
    bootstrap: str,
    stop: threading.Event,
    mode: str,
    seed: int,
    campaigns: int,
    creators: int,
    demo: DemoCampaign,
) -> None:
    from creatorpulse import runtime
    from producers.loops import simulate as simulate_loop
    from producers.publisher import Publisher
    from producers.simulator import CampaignSimulator, SimulationConfig

    config = SimulationConfig(
        seed=seed,
        campaigns=campaigns,
        creators_per_campaign=creators,
        mode=mode,  # type: ignore[arg-type]
        poll_interval_s=5.0,
        duplicate_rate=0.01,
        late_rate=0.005,
        bad_rate=0.005,
        stale_rate=0.02,
        grace_s=float(settings.grace_s),
        run_id=demo.run_id,
        session=demo.session,
        flight_start_ms=demo.flight_start_ms,
        tiny_hot_per_campaign=1,  # the alerts must stay quiet on it
    )
    try:
        with Publisher(bootstrap, settings.input_topic) as publisher:
            simulate_loop(
                publisher,
                CampaignSimulator(config),
                duration_s=None,
                realtime=True,
                progress=False,
                stop=stop,
                # A continued campaign has its history already: its earlier sessions.
                history_s=DEMO_HISTORY_S if demo.session == 1 else 0.0,
            )
    except Exception:
        runtime.log.exception("simulator stopped")


# -- producers -----------------------------------------------------------------------


def _check_listener(settings: Settings) -> None:
    """A given broker that nobody listens on is reported now, before the heavy imports."""
    if settings.kafka_bootstrap:
        from creatorpulse.reach import wait_for_listener

        wait_for_listener(settings.kafka_bootstrap)


def _require_broker(settings: Settings) -> str:
    """The bootstrap of a Kafka that answers, or a SettingsError within seconds."""
    if not settings.kafka_bootstrap:
        raise SettingsError(
            "this command publishes to a running Kafka: set --kafka-bootstrap / "
            "CREATORPULSE_KAFKA_BOOTSTRAP (with `creatorpulse run`, the embedded broker "
            "lives inside that process)"
        )
    _check_listener(settings)
    from creatorpulse import runtime

    runtime.check_kafka(settings.kafka_bootstrap)
    return settings.kafka_bootstrap


@app.command()
def produce(
    mode: Annotated[
        str, typer.Option(help="'poller' (lifetime snapshots) or 'clickstream' (deltas).")
    ] = "poller",
    duration_s: Annotated[float, typer.Option(help="Seconds of event time to simulate.")] = 3600.0,
    realtime: Annotated[
        bool, typer.Option(help="Pace by the wall clock instead of as fast as possible.")
    ] = False,
    events_per_record: Annotated[
        int, typer.Option(help="Events per Kafka record (>1: batch records).")
    ] = 1,
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 7,
    campaigns: Annotated[int, typer.Option(help="Campaigns.")] = 3,
    creators: Annotated[int, typer.Option(help="Creators per campaign.")] = 12,
    duplicate_rate: Annotated[float, typer.Option(help="Share of events sent twice.")] = 0.01,
    late_rate: Annotated[
        float, typer.Option(help="Share of events older than the grace period.")
    ] = 0.005,
    bad_rate: Annotated[
        float, typer.Option(help="Share of invalid records (dead letters).")
    ] = 0.005,
    rate_scale: Annotated[float, typer.Option(help="Multiply how often posts report.")] = 1.0,
) -> None:
    """Publish a simulated campaign (profiles, contracts, post stats) to Kafka."""
    from producers.loops import simulate as simulate_loop
    from producers.publisher import Publisher
    from producers.simulator import CampaignSimulator, SimulationConfig

    settings = _State.settings()
    bootstrap = _require_broker(settings)
    config = SimulationConfig(
        seed=seed,
        campaigns=campaigns,
        creators_per_campaign=creators,
        mode=mode,  # type: ignore[arg-type]
        duplicate_rate=duplicate_rate,
        late_rate=late_rate,
        bad_rate=bad_rate,
        grace_s=float(settings.grace_s),
    )
    with Publisher(
        bootstrap, settings.input_topic, events_per_record=events_per_record
    ) as publisher:
        stats = simulate_loop(
            publisher,
            CampaignSimulator(config),
            duration_s=duration_s,
            realtime=realtime,
            rate_scale=rate_scale,
        )
    console.print(
        f"published {stats.records:,} records ({stats.publisher.events_sent:,} events) "
        f"in {stats.elapsed_s:.1f}s; {dict(stats.labels)}"
    )


@app.command()
def replay(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help="A .jsonl or .csv file of post-stat events."
        ),
    ],
    speed: Annotated[
        float | None,
        typer.Option(
            help="Pace by event time (1 = original pace, 60 = a minute per second); "
            "default as fast as possible."
        ),
    ] = None,
    events_per_record: Annotated[
        int, typer.Option(help="Events per Kafka record (>1: batch records).")
    ] = 1,
) -> None:
    """Publish a JSONL or CSV file of events to the input topic, with a progress bar.

    Lines that are not valid events are published too: the pipeline turns them into
    dead letters with a reason, so nothing in the file goes missing silently.
    """
    from producers.loops import replay_file
    from producers.publisher import Publisher

    settings = _State.settings()
    bootstrap = _require_broker(settings)
    with Publisher(
        bootstrap, settings.input_topic, events_per_record=events_per_record
    ) as publisher:
        stats = replay_file(publisher, file, speed=speed)
    console.print(
        f"replayed {stats.records:,} records ({stats.valid_events:,} valid events, "
        f"{stats.rejected:,} that will be dead letters) in {stats.elapsed_s:.1f}s"
    )


@app.command()
def load(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            help="A JSON-lines file of creator profiles and campaign contracts (fees).",
        ),
    ],
) -> None:
    """Publish creator profiles and campaign contracts (fees) to the reference topics.

    One JSON object a line: a contract has campaign_id (campaign_id, creator_id, fee,
    currency, optional flight_start/flight_end), anything else is a profile
    (creator_id, handle, follower_count, niche). The whole file is checked first;
    nothing is published while a line is wrong. The worker writes them to ClickHouse:
    the board then shows handles, tiers, CPA and ROAS.
    """
    from producers.reference_file import read_reference_file
    from schemas.topics import CAMPAIGN_CONTRACTS, CREATOR_PROFILES

    parsed = read_reference_file(file)
    if parsed.errors:
        shown = "; ".join(f"line {n}: {why}" for n, why in parsed.errors[:3])
        more = f" (and {len(parsed.errors) - 3} more)" if len(parsed.errors) > 3 else ""
        raise SettingsError(f"{file}: nothing published: {shown}{more}")
    settings = _State.settings()
    bootstrap = _require_broker(settings)
    from producers.publisher import Publisher

    with Publisher(bootstrap, settings.input_topic) as publisher:
        for profile in parsed.profiles:
            publisher.publish_raw(
                profile.model_dump_json().encode(),
                key=profile.creator_id.encode(),
                topic=CREATOR_PROFILES,
            )
        for contract in parsed.contracts:
            publisher.publish_raw(
                contract.model_dump_json().encode(), key=contract.key(), topic=CAMPAIGN_CONTRACTS
            )
        publisher.flush()
    console.print(
        f"published {len(parsed.profiles)} profiles to {CREATOR_PROFILES} and "
        f"{len(parsed.contracts)} contracts to {CAMPAIGN_CONTRACTS}",
        highlight=False,
    )


# -- ClickHouse ----------------------------------------------------------------------


@app.command("migrate")
def migrate_command() -> None:
    """Create the ClickHouse database, tables and BI views (idempotent)."""
    from creatorpulse import runtime
    from sinks.clickhouse import migrate

    settings = _State.settings()
    sink = runtime.open_sink(settings, migrate_schema=False)
    try:
        applied = migrate(sink)
    finally:
        sink.close()
    target = sink.target.display_url()
    console.print(
        f"applied {', '.join(applied)} to {target}" if applied else f"{target} is up to date"
    )


@app.command()
def top(
    campaign: Annotated[str | None, typer.Option(help="Only this campaign.")] = None,
    last_s: Annotated[
        int,
        typer.Option(
            help="Seconds of event time, back from the newest window.",
            min=1,
            max=LEADERBOARD_MAX_LAST_S,
        ),
    ] = 3600,
    limit: Annotated[
        int, typer.Option(help="Creators to show.", min=1, max=LEADERBOARD_MAX_LIMIT)
    ] = 20,
    sort: Annotated[str, _sort_option()] = DEFAULT_SORT,
    watch: Annotated[bool, typer.Option(help="Refresh every second until Ctrl-C.")] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the ranked creators as a JSON list, not a table."),
    ] = False,
    board_json: Annotated[
        bool,
        typer.Option(
            "--board-json",
            help="Print the whole board as one JSON object: range, sort, campaign summaries, "
            "creators.",
        ),
    ] = False,
) -> None:
    """Show the creator board from ClickHouse: ranked creators and campaign totals.

    With an embedded chDB store held by a running worker, reads through that worker's
    HTTP port (--web-port), since only one process may open the store.
    """
    from creatorpulse.terminal import screen

    settings = _State.settings()
    key = parse_sort(sort)
    fetch = _board_source(settings)
    scope = f" in {campaign}" if campaign else ""
    title = f"top creators{scope}, last {_span(last_s)} of event time"
    if as_json or board_json:
        board = fetch(campaign, last_s, key, limit)
        print(json.dumps(board.to_json() if board_json else board.rows_json(), indent=2))
        return
    if not watch:
        Console().print(screen(fetch(campaign, last_s, key, limit), title=title))
        return
    with Live(console=Console(), refresh_per_second=2) as live:
        while True:
            live.update(screen(fetch(campaign, last_s, key, limit), title=title))
            time.sleep(1.0)


def _span(seconds: int) -> str:
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return "hour" if hours == 1 else f"{hours} h"
    return f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"


BoardFetch = Callable[[str | None, int, SortKey, int], "Board"]


def _board_source(settings: Settings) -> BoardFetch:
    """Direct ClickHouse access if the store is free, else through the running worker."""
    from creatorpulse import runtime
    from creatorpulse.board import NoSuchCampaign, board_from_json, read_live_board

    try:
        sink = runtime.open_sink(settings, migrate_schema=False)
    except StoreHeld:
        if not settings.web_port:
            raise
        host = "127.0.0.1" if settings.web_host in ("0.0.0.0", "::") else settings.web_host
        host = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL
        base = f"http://{host}:{settings.web_port}/board"

        def through_worker(campaign: str | None, last_s: int, sort: SortKey, limit: int) -> Board:
            query: dict[str, str | int] = {"last_s": last_s, "limit": limit, "sort": sort}
            if campaign:
                query["campaign"] = campaign
            try:
                url = f"{base}?{urllib.parse.urlencode(query)}"
                with urllib.request.urlopen(url, timeout=10) as response:
                    return board_from_json(json.loads(response.read()))
            except urllib.error.HTTPError as err:
                if err.code == 404 and campaign:
                    raise NoSuchCampaign(campaign) from None
                raise SettingsError(
                    f"the running worker answered {err.code} on {base}: {err.read()[:200]!r}"
                ) from None
            except OSError as err:
                raise SettingsError(
                    f"the store is held by a process that does not answer on {base} ({err}); "
                    "stop that process, or set --web-port to its port"
                ) from None

        return through_worker

    def direct(campaign: str | None, last_s: int, sort: SortKey, limit: int) -> Board:
        return read_live_board(sink, campaign=campaign, last_s=last_s, sort=sort, limit=limit)

    return direct


# -- benchmark -----------------------------------------------------------------------


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def bench(ctx: typer.Context) -> None:
    """Measure throughput, latency and memory against the raw ceiling and a textbook
    Faust baseline, in one run (`creatorpulse bench --help` for its options)."""
    from creatorpulse.bench.command import main as bench_main

    code = bench_main(ctx.args)
    if code:
        raise typer.Exit(code)


# -- alerts (a group of its own: creatorpulse/alerts/commands.py) --------------------------

from creatorpulse.alerts.commands import alerts_app  # noqa: E402 - after `app`, kept in one block

app.add_typer(alerts_app, name="alerts")


# -- settings on every subcommand ------------------------------------------------------

_CLICKHOUSE = ("clickhouse_url", "clickhouse_connect_timeout_s", "clickhouse_timeout_s", "data_dir")
_WEB = ("web_port", "web_host", "web_token_file")
#: The settings each subcommand reads (all of them: run, worker). Each is also an option
#: of the command itself, so `creatorpulse worker --kafka-bootstrap ...` works and
#: `worker --help` lists them; the form before the subcommand still works.
SUBCOMMAND_SETTINGS: dict[str, tuple[str, ...] | None] = {
    "run": None,
    "worker": None,
    "sink": None,
    "produce": ("kafka_bootstrap", "input_topic", "grace_s", "app_id", "log_format"),
    "replay": ("kafka_bootstrap", "input_topic", "log_format"),
    "load": ("kafka_bootstrap",),
    "migrate": _CLICKHOUSE,
    "top": (*_CLICKHOUSE, *_WEB),
    "alerts": (*_CLICKHOUSE, *_WEB),
    "alerts silence": (*_CLICKHOUSE, *_WEB),
    "alerts redeliver": _CLICKHOUSE,
}
SETTINGS_PANEL = "Settings (here, or before the subcommand, or CREATORPULSE_*)"


def build_command() -> Any:
    """The command of ``app`` (typer's click group), each subcommand given the settings
    it reads."""
    import copy

    group = typer.main.get_command(app)
    shared = {p.name: p for p in group.params if p.param_type_name == "option" and p.name}
    for name, wanted in SUBCOMMAND_SETTINGS.items():
        command: Any = group
        for part in name.split():  # "alerts silence": a command of a group
            command = getattr(command, "commands", {}).get(part)
            if command is None:
                break
        if command is None or command.callback is None:
            continue
        names = tuple(shared) if wanted is None else wanted
        for setting in names:
            option: Any = copy.copy(shared[setting])
            # The environment is read by load_settings, after the flags: with an envvar
            # here too, the variable would override the flag given before the subcommand.
            option.envvar = None
            option.help = f"{option.help} \\[env: {_env(setting)}]"  # escaped: rich markup
            option.rich_help_panel = SETTINGS_PANEL
            command.params.append(option)
        command.callback = _taking_settings(command.callback, names)
    return group


def _taking_settings(callback: Callable[..., Any], names: tuple[str, ...]) -> Callable[..., Any]:
    def with_settings(**kwargs: Any) -> Any:
        given = {n: kwargs.pop(n) for n in names if n in kwargs}
        _State.overrides = {**_State.overrides, **{k: v for k, v in given.items() if v is not None}}
        return callback(**kwargs)

    return with_settings


# -- entry points --------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI in-process; returns the exit code (tests call this)."""
    command = build_command()
    try:
        result = command.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except SettingsError as exc:
        console.print(f"[red]error:[/] {exc}", soft_wrap=True, markup=True, highlight=False)
        return 2
    except NoSuchCampaign as exc:
        console.print(
            f"[red]error:[/] {exc}; `creatorpulse top` without --campaign lists the campaigns",
            soft_wrap=True,
            highlight=False,
        )
        return 1
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        return 130
    except typer.TyperException as exc:  # usage errors and bad parameters (typer's click)
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        return 130
    return int(result) if isinstance(result, int) else 0


def run_cli() -> None:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `creatorpulse top --json | head` is fine
    sys.exit(main())
