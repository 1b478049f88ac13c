"""The measurements: one :class:`Runner` method per section, each reading prepared data.

:func:`run_benchmark` starts the broker, runs every section not skipped in order and fills
the results dict as it goes (an error in one section is recorded and the run goes on).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

from creatorpulse.bench.brokers import BrokerInfo, create_topic, open_broker
from creatorpulse.bench.figures import (
    alert_cost,
    held_figures,
    kb_per_window,
    median_of_passes,
    percentile,
    rate,
    soak_figures,
    whole_topic_rates,
    worker_figures,
)
from creatorpulse.bench.kafka_streams import KSTREAMS_METHOD, KStreamsSection
from creatorpulse.bench.machine import cpu_s, machine_info
from creatorpulse.bench.options import (
    LATENCY_SLICE_S,
    LIVE_SPAN_S,
    PARTITIONS,
    POLL_RUNNING_S,
    POLL_STARTUP_S,
    SHAPES,
    SOAK_CAMPAIGNS,
    SOAK_CREATORS_PER_CAMPAIGN,
    SOAK_HELD_SAMPLE_S,
    SOAK_MIN_SAMPLES,
    SOAK_MIN_SETTLED_S,
    SOAK_SAMPLE_S,
    SOAK_TOLERANCE_MB_PER_MIN,
    THROUGHPUT_SPAN_S,
    WINDOWS,
    BenchError,
    BenchOptions,
)
from creatorpulse.bench.processes import (
    RssSampler,
    Sampler,
    Waited,
    WorkerProcess,
    group_lag,
    log_tail,
    run_baseline,
    wait_until_written,
    worker_timeout,
)
from creatorpulse.bench.report import (
    SHAPE_LABEL,
    console,
    fmt_number,
    fmt_pct,
    fmt_us,
    jsonable,
)
from creatorpulse.bench.workload import (
    Dataset,
    campaigns_for,
    count_windows,
    coverage_records,
    even_rate,
    publish,
    replay,
    restamped,
    simulator,
    take,
)
from producers.simulator import CampaignSimulator, SimRecord

#: How each figure is measured; written into the JSON so the numbers explain themselves.
METHOD: Final = {
    "data": (
        "CampaignSimulator.events_at_rate (3 campaigns x 100 creators; its 1,024 slots "
        "pick ~260 of them), valid delta events spread over 900 s of event time ending now, "
        "published once per shape to a fresh 4-partition topic; batch records hold up to "
        "100 events of one creator (publisher max_span_ms 120 s)"
    ),
    "ceiling": (
        "aiokafka consumer, partitions assigned by hand (no group join), earliest: getmany + "
        "orjson.loads of every value, first fetch to last event; CPU of this process; the "
        "median of options.passes passes (3 by default), each from the start"
    ),
    "baseline": (
        "creatorpulse.bench.baseline: Faust agent, plain table keyed by "
        "campaign:creator:size:window_start, one write per event and window (60 s, 3600 s), "
        "first N events of the same topic, first event to last incl. changelog flush"
    ),
    "bare_loop": (
        "creatorpulse.bench.baseline --bare: the same Faust app whose agent only iterates "
        "the stream (no decode, no table) over every record: Faust's own cost of reading "
        "the topic, per event; it and the baseline run with every Faust setting of the "
        "worker's app (baseline.worker_faust_settings: commit interval, 8 MiB fetches, "
        "stream buffer, session timeout), its GIL switch interval (20 ms) and fetch wait "
        "(100 ms); the median of options.passes runs"
    ),
    "worker": (
        "python -m creatorpulse worker (chDB store), /stats: events / (last_write_unix - "
        "first_record_unix) once every event is counted and every window written; CPU "
        "from cpu_s deltas (start-up excluded); RSS from /proc/<pid>/status VmHWM; "
        "events/s, CPU per event, seconds and RSS each the median over options.passes runs "
        "(3 by default), each a fresh worker and group (the bare loop likewise); every run "
        "is kept under runs, its events/s under passes; ratios are of medians of this run"
    ),
    "kstreams": KSTREAMS_METHOD,
    "producers": (
        "simulator: generation + kafka-python publish + flush; replay: producers.loops."
        "replay_file of the same events as JSONL into another topic"
    ),
    "latency": (
        "worker started first; events at a steady rate, event ts = wall clock at publish; "
        "batch records: every creator's events of a 250 ms slice in one record (a poller "
        "publishing what one poll returned); single-event records: one record per event, "
        "sent in 50 ms slices; /stats latency_ms (event time -> row written) over the most "
        "recent samples"
    ),
    "memory": (
        "every creator of campaigns x creators gets events within 300 s (under the 600 s "
        "grace, so every window stays open); single-event records; worker VmHWM"
    ),
    "scaling": (
        "as memory, at each creator count with the same event count, and at the smallest "
        "creator count with more events per creator; single-event records"
    ),
    "alerts": (
        "the worker over the batch-record topic (3 campaigns, so the campaign-keyed alert "
        "stage evaluates each campaign's minutes) with the alert stage on (the default) and "
        "off (CREATORPULSE_ALERTS=0), runs interleaved on, off, on, off, each a fresh worker "
        "and group; events/s as for worker; medians of each side's runs; with the stage on, "
        "CPU per event is taken once the stage has committed every window row (its group "
        "lag on the window-rows topic is 0), so the stage's work after the last write counts; "
        "the runs off read their CPU at the same point (after the same quiet period)"
    ),
    "soak": (
        "a worker with --sink topic (chDB's memory is in a `creatorpulse sink` process, "
        "sampled apart) and a grace of options.soak_grace_s (120 s by default, under the "
        "run, so windows close and dedup ids expire inside it), windows 60,3600; batch "
        "records of 10 campaigns x 100 creators' events at options.soak_rate (5,000 "
        "events/s) for options.soak_s (600 s), event time = wall clock at publish, sent in "
        "250 ms slices as for latency; VmRSS of both processes every 2 s; the RSS slope is "
        "the least-squares fit in MB/min over the samples from grace + 60 s (the first "
        "minute windows have closed) to the end of publishing; flat when |slope| <= 1 "
        "MB/min"
    ),
}


def run_ceiling(
    bootstrap: str, topic: str, expect: int, timeout_s: float, passes: int = 3
) -> dict[str, Any]:
    """The median of ``passes`` reads, each from the start (no group, nothing committed)."""
    return median_of_passes(
        [asyncio.run(_ceiling(bootstrap, topic, expect, timeout_s)) for _ in range(passes)]
    )


async def _ceiling(bootstrap: str, topic: str, expect: int, timeout_s: float) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    # Partitions are assigned by hand: a group join (seconds on tansu) is not consuming,
    # and without a group nothing is committed, so every pass reads from the start.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        # The benchmark created the topic, with PARTITIONS partitions.
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        loads = orjson.loads
        events = records = 0
        t0, cpu0 = time.perf_counter(), cpu_s()
        while events < expect:
            if time.monotonic() > deadline:
                raise BenchError(f"the ceiling consumer saw {events:,} of {expect:,} events")
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for messages in batches.values():
                records += len(messages)
                for message in messages:
                    value = loads(message.value)
                    events += len(value) if type(value) is list else 1
        seconds, cpu = time.perf_counter() - t0, cpu_s() - cpu0
    finally:
        await consumer.stop()
    return {
        "events": events,
        "records": records,
        "seconds": seconds,
        "events_per_s": rate(events, seconds),
        "cpu_s": cpu,
        "cpu_s_per_event": cpu / events,
    }


class Runner:
    """Runs the sections in order, filling ``results`` as it goes (Ctrl-C keeps what is done)."""

    def __init__(self, options: BenchOptions, results: dict[str, Any], stack: ExitStack) -> None:
        self.options = options
        self.results = results
        self.stack = stack
        self.sections: dict[str, Any] = results.setdefault("sections", {})
        self.errors: dict[str, str] = results.setdefault("errors", {})
        #: wall seconds per step, start-up and stop included (where the run's time goes)
        self.timings: dict[str, float] = results.setdefault("timings", {})
        self.datasets: dict[str, Dataset] = {}
        self.run_id = f"bench{int(time.time()) % 10_000_000}"
        self.work_dir = Path(tempfile.mkdtemp(prefix="creatorpulse-bench-"))
        if not options.keep_work_dir:
            stack.callback(shutil.rmtree, self.work_dir, True)
        self.broker: BrokerInfo | None = None
        self._topics = 0
        self._status: Any = None
        self.kstreams = KStreamsSection(self)

    # -- plumbing ------------------------------------------------------------------------

    def say(self, text: str) -> None:
        if self._status is not None:
            self._status.update(f"[bold]{text}")

    def done(self, text: str) -> None:
        console.print(f"  [green]\u2713[/] {text}")

    def topic(self, label: str) -> str:
        self._topics += 1
        name = f"{self.run_id}-{self._topics:02d}-{label}"
        assert self.broker is not None
        create_topic(self.broker.bootstrap, name)
        return name

    @contextlib.contextmanager
    def timed(self, label: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings[label] = round(time.monotonic() - started, 1)

    def section(self, name: str, key: str | None, work: Callable[[], Any]) -> Any:
        """Run one measurement; an error is recorded and the run goes on."""
        label = f"{name}/{key}" if key else name
        try:
            with self.timed(label):
                value = work()
        except BenchError as exc:
            self.errors[label] = str(exc)
            console.print(f"  [red]\u2717 {label}:[/] {exc}")
            return None
        if key is None:
            self.sections[name] = value
        else:
            self.sections.setdefault(name, {})[key] = value
        return value

    def bootstrap(self) -> str:
        assert self.broker is not None
        return self.broker.bootstrap

    # -- sections ------------------------------------------------------------------------

    def run(self) -> None:
        o = self.options
        self.results["machine"] = machine_info()
        with console.status("[bold]starting the broker") as status:
            self._status = status
            self.broker = self.stack.enter_context(open_broker(o.broker, self.work_dir))
            self.results["broker"] = asdict(self.broker)
            self.done(
                f"broker {self.broker.flavour} {self.broker.version} at {self.broker.bootstrap}"
                f" ready in {self.broker.ready_s or 0:.1f}s"
            )
            for shape in SHAPES:
                if o.runs(shape):
                    self.shape(shape)
            if o.runs("latency"):
                for shape in SHAPES:
                    if o.runs(shape):
                        self.section("latency", shape, functools.partial(self.latency, shape))
            if o.runs("memory"):
                self.section("memory", None, self.memory)
            if o.runs("scaling"):
                self.scaling()
            if o.runs("alerts") and "batch" in self.datasets:
                self.section("alerts", None, self.alerts)
            if o.runs("soak"):
                self.section("soak", None, self.soak)

    def shape(self, shape: str) -> None:
        o = self.options
        wanted = [
            s for s in ("producers", "ceiling", "baseline", "worker", "kstreams") if o.runs(s)
        ]
        if shape == "batch" and o.runs("alerts"):
            wanted.append("alerts")  # it reads the batch-record topic made here
        if not wanted:
            return
        events = o.events if shape == "batch" else o.single_events
        per_record = o.events_per_record if shape == "batch" else 1
        sim = simulator(3, 100, o.seed, self.run_id)
        rate_per_s = even_rate(events, THROUGHPUT_SPAN_S)
        start_ms = int(time.time() * 1000) - int(THROUGHPUT_SPAN_S * 1000)
        topic = self.topic(shape)
        values: list[bytes] = []
        creators: set[bytes] = set()

        def generate() -> Iterator[SimRecord]:
            for record in sim.events_at_rate(start_ms, rate_per_s, events):
                values.append(record.value)
                creators.add(record.key or b"")
                yield record

        self.say(f"{shape}: simulating and publishing {events:,} events")
        with self.timed(f"publish/{shape}"):
            published = publish(self.bootstrap(), topic, generate(), events_per_record=per_record)
        dataset = Dataset(
            shape,
            topic,
            events,
            published["records"],
            per_record,
            len(creators),
            THROUGHPUT_SPAN_S,
        )
        self.datasets[shape] = dataset
        self.results.setdefault("datasets", {})[shape] = asdict(dataset)
        producers: dict[str, Any] = {"simulator": published}
        self.sections.setdefault("producers", {})[shape] = producers
        self.done(
            f"{shape}: simulator published {events:,} events in {published['records']:,} "
            f"records, {fmt_number(published['events_per_s'], 'ev/s')}"
        )
        if o.runs("producers"):
            path = self.work_dir / f"{shape}.jsonl"
            path.write_bytes(b"\n".join(values) + b"\n")
            values.clear()
            self.say(f"{shape}: replaying {path.name}")
            replay_topic = self.topic(f"{shape}-replay")
            with self.timed(f"replay/{shape}"):
                replayed = replay(self.bootstrap(), replay_topic, path, per_record)
            producers["replay"] = replayed
            path.unlink()
            self.done(f"{shape}: replay {fmt_number(replayed['events_per_s'], 'ev/s')}")
        values.clear()
        if o.runs("ceiling"):
            self.say(f"{shape}: ceiling (aiokafka + orjson)")
            result = self.section(
                "ceiling",
                shape,
                lambda: run_ceiling(
                    self.bootstrap(),
                    topic,
                    events,
                    timeout_s=60 + events / 5000,
                    passes=o.passes,
                ),
            )
            if result:
                self.done(f"{shape}: ceiling {fmt_number(result['events_per_s'], 'ev/s')}")
        if o.runs("baseline"):
            expect = min(events, o.baseline_events)
            self.say(f"{shape}: textbook Faust baseline, first {expect:,} events")
            result = self.section(
                "baseline",
                shape,
                lambda: run_baseline(
                    self.bootstrap(),
                    topic,
                    expect,
                    self.work_dir / f"baseline-{shape}.log",
                    timeout_s=120 + expect / 200,
                ),
            )
            if result:
                self.done(f"{shape}: baseline {fmt_number(result['events_per_s'], 'ev/s')}")
            # Every record, as the worker reads them: the two rates compare like for like.
            records = dataset.records
            self.say(f"{shape}: bare Faust loop, {records:,} records")
            result = self.section(
                "bare_loop",
                shape,
                lambda: median_of_passes(
                    [
                        whole_topic_rates(
                            run_baseline(
                                self.bootstrap(),
                                topic,
                                records,
                                self.work_dir / f"bare-{shape}-{i}.log",
                                timeout_s=120 + records / 500,
                                bare=True,
                            ),
                            events,
                        )
                        for i in range(o.passes)
                    ]
                ),
            )
            if result:
                self.done(f"{shape}: bare loop {fmt_number(result['events_per_s'], 'ev/s')}")
        if o.runs("worker"):
            result = self.section(
                "worker",
                shape,
                lambda: median_of_passes(
                    [self.worker_run(dataset, f"worker-{shape}-{i}") for i in range(o.passes)]
                ),
            )
            if result:
                self.done(
                    f"{shape}: creatorpulse {fmt_number(result['events_per_s'], 'ev/s')}, "
                    f"CPU {fmt_us(result['cpu_s_per_event'])}/event"
                )
        if o.runs("kstreams"):
            self.kstreams.run(dataset)

    def worker_run(self, dataset: Dataset, name: str, sink: str = "clickhouse") -> dict[str, Any]:
        """The worker over a pre-loaded topic; ``sink="topic"`` adds a sink process and
        waits until it has written everything the worker published."""
        worker = WorkerProcess(self.bootstrap(), dataset.topic, self.work_dir, name, sink=sink)
        sink_process = None
        if sink == "topic":
            sink_process = WorkerProcess(
                self.bootstrap(),
                dataset.topic,
                self.work_dir,
                f"{name}-sink",
                command="sink",
                app_id=worker.app_id,
            ).start()
        try:
            figures = self._worker_run(dataset, name, worker)
            if sink_process is not None:
                figures.update(self._sink_caught_up(sink_process, name))
        finally:
            if sink_process is not None:
                sink_process.stop()
        return figures

    def _sink_caught_up(self, sink: WorkerProcess, name: str) -> dict[str, Any]:
        """Wait until the sink has committed every window row; its peak RSS then."""
        from schemas.topics import Topics

        group, topic = f"{sink.app_id}-sink", Topics(app_id=sink.app_id).window_rows
        started = time.monotonic()
        deadline = started + 120
        while (lag := group_lag(self.bootstrap(), group, [topic])) != 0:
            if sink.proc is not None and sink.proc.poll() is not None:
                raise BenchError(f"the sink exited:\n{log_tail(sink.log_path)}")
            if time.monotonic() > deadline:
                raise BenchError(f"the sink still lags {lag} rows behind (log {sink.log_path})")
            self.say(f"{name}: sink lags {lag if lag is not None else '?'} rows")
            time.sleep(POLL_RUNNING_S)
        return {
            "sink_rss_peak_mb": sink.vm_hwm_mb(),
            "sink_caught_up_s": time.monotonic() - started,
        }

    def alerts(self) -> dict[str, Any]:
        """Batch throughput with alert evaluation on and off, in this run, same topic."""
        dataset = self.datasets["batch"]
        on: list[dict[str, Any]] = []
        off: list[dict[str, Any]] = []
        for i in range(self.options.passes):
            # Interleaved: a neighbour's job on the shared machine falls on both sides.
            on.append(self.alert_run(dataset, f"alerts-on-{i}", alerts=True))
            off.append(self.alert_run(dataset, f"alerts-off-{i}", alerts=False))
        result = alert_cost(on, off)
        result["runs"] = {"on": on, "off": off}
        if not all(run.get("evaluations") for run in on):
            self.errors["alerts/evaluations"] = (
                "a worker with alerts on evaluated no minute (creatorpulse_alert_evaluations_"
                "total): the figure is that of an idle stage"
            )
        self.done(
            f"alerts: on {fmt_number(result['on']['events_per_s'], 'ev/s')}, off "
            f"{fmt_number(result['off']['events_per_s'], 'ev/s')}: throughput cost "
            f"{fmt_pct(result['throughput_cost_pct'])}, CPU cost {fmt_pct(result['cpu_cost_pct'])}"
        )
        return result

    def alert_run(self, dataset: Dataset, name: str, *, alerts: bool) -> dict[str, Any]:
        env = {"CREATORPULSE_ALERTS": "1" if alerts else "0"}
        worker = WorkerProcess(self.bootstrap(), dataset.topic, self.work_dir, name, env=env)
        figures = self._worker_run(
            dataset, name, worker, then=functools.partial(self._settled_cpu, alerts=alerts)
        )
        figures["alerts"] = alerts
        return figures

    def _settled_cpu(
        self, worker: WorkerProcess, waited: Waited, *, alerts: bool
    ) -> dict[str, Any]:
        """CPU per event once everything is done: with the stage on, once it has committed
        every window row, so its work after the last write counts. Both sides read it at
        this point, after the same quiet period, so the idle worker's CPU is on both."""
        from schemas.topics import Topics

        out: dict[str, Any] = {}
        if alerts:
            # The stage is an agent of the worker's app: its group is the app id.
            topic = Topics(app_id=worker.app_id).window_rows
            started = time.monotonic()
            deadline = started + 120
            while (lag := group_lag(self.bootstrap(), worker.app_id, [topic])) != 0:
                worker.stats()  # raises if the worker exited
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"the alert stage still lags {lag} rows behind (log {worker.log_path})"
                    )
                self.say(
                    f"{worker.dir.name}: the alert stage lags {lag if lag is not None else '?'}"
                )
                time.sleep(POLL_RUNNING_S)
            out["stage_caught_up_s"] = time.monotonic() - started
            # Proof that the stage evaluated: a workload without campaigns' minutes to
            # evaluate would measure an idle stage.
            out["evaluations"] = worker.metric("creatorpulse_alert_evaluations_total")
        stats = worker.stats() or {}
        cpu = stats.get("cpu_s")
        events = waited.final.get("events_counted") or 0
        if cpu is not None and events:
            used = cpu - waited.before.get("cpu_s", 0.0)
            out.update(cpu_s=used, cpu_s_per_event=used / events)
        return out

    def _worker_run(
        self,
        dataset: Dataset,
        name: str,
        worker: WorkerProcess,
        then: Callable[[WorkerProcess, Waited], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """One worker run; ``then`` measures more while the worker still runs, and its
        figures replace the run's own."""
        extra: dict[str, Any] = {}
        with worker:

            def progress(stats: dict[str, Any]) -> None:
                self.say(
                    f"{name}: {stats.get('events_counted', 0):,}/{dataset.events:,} events, "
                    f"{stats.get('rows_written', 0):,} rows written"
                )

            waited = wait_until_written(
                worker, dataset.events, worker_timeout(dataset.events), progress
            )
            if then is not None:
                extra = then(worker, waited)
        figures = worker_figures(waited.before, waited.final, dataset.events)
        if "cpu_s" in extra:
            extra["cpu_s_at_last_write"] = figures["cpu_s"]
        figures.update(extra)
        figures.update(
            startup_s=waited.startup_s,
            stop_s=worker.stop_s,
            exit_code=worker.exit_code,
            creators=dataset.creators,
            windows=dataset.windows,
        )
        if worker.exit_code != 0:
            self.errors[f"{name}/exit"] = f"worker exited {worker.exit_code} on SIGTERM"
        return figures

    def latency(self, shape: str) -> dict[str, Any]:
        o = self.options
        topic = self.topic(f"latency-{shape}")
        total = int(o.latency_rate * o.latency_seconds)
        # One record proves the consumer is assigned and fetching. Its latency includes
        # the worker's start-up, so it must stay a negligible share of the samples.
        warmup = 1
        sim = simulator(3, 100, o.seed, self.run_id)
        t0_ms = int(time.time() * 1000)
        source = iter(sim.events_at_rate(t0_ms, float(o.latency_rate), total + warmup))
        from producers.publisher import Publisher

        worker = WorkerProcess(self.bootstrap(), topic, self.work_dir, f"worker-latency-{shape}")
        # Batch records: one creator's events of a slice make one record (the span bound
        # never cuts a slice; the slice's flush sends every buffer).
        per_record = o.events_per_record if shape == "batch" else 1
        publisher = Publisher(self.bootstrap(), topic, events_per_record=per_record)
        with worker, publisher:
            self.say(f"latency, {SHAPE_LABEL[shape]}: starting the worker")
            deadline = time.monotonic() + 120
            # Warm-up records make sure partitions are assigned before the clock starts.
            for record in take(source, warmup):
                now_ms = int(time.time() * 1000)
                publisher.publish(restamped(record, now_ms))
            publisher.flush()
            while True:
                stats = worker.stats()
                if stats and stats.get("events_counted", 0) >= warmup:
                    warm = stats
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"the latency worker did not start (log {worker.log_path})")
                time.sleep(POLL_STARTUP_S)
            self.say(
                f"latency, {SHAPE_LABEL[shape]}: {o.latency_rate:,} events/s for "
                f"{o.latency_seconds:.0f}s"
            )
            records_before = publisher.stats.records_sent
            lags, sent = self._paced_publish(publisher, source, total, LATENCY_SLICE_S[shape])
            records = publisher.stats.records_sent - records_before
            published_at = time.time()
            waited = wait_until_written(worker, total + warmup, worker_timeout(total), before=warm)
        latency_ms = waited.final.get("latency_ms") or {}
        last_write = waited.final.get("last_write_unix")
        # Far above the flush interval: the worker fell behind the rate (a backlog).
        drain_s = last_write - published_at if last_write is not None else None
        self.done(
            f"latency, {SHAPE_LABEL[shape]}, at {o.latency_rate:,} ev/s: "
            f"p50 {fmt_number(latency_ms.get('p50'), 'ms')}"
            f", p99 {fmt_number(latency_ms.get('p99'), 'ms')}; written "
            f"{fmt_number(drain_s, 's', 1)} after the last publish"
        )
        return {
            "drain_s": drain_s,
            "rate": o.latency_rate,
            "seconds": o.latency_seconds,
            "events": sent,
            "records": records,
            "slice_s": LATENCY_SLICE_S[shape],
            "achieved_rate": sent / o.latency_seconds if o.latency_seconds else None,
            "latency_ms": latency_ms,
            "pacing_lag_ms": {
                "p50": percentile(lags, 0.5),
                "p99": percentile(lags, 0.99),
                "max": max(lags) if lags else None,
            },
            "worker_cpu_s_per_event": (waited.final["cpu_s"] - warm["cpu_s"]) / sent,
            "rss_peak_mb": waited.final.get("vm_hwm_mb"),
            "exit_code": worker.exit_code,
        }

    def _paced_publish(
        self,
        publisher: Any,
        source: Iterator[SimRecord],
        total: int,
        slice_s: float,
        rate_per_s: float | None = None,
        on_slice: Callable[[int], None] | None = None,
    ) -> tuple[list[float], int]:
        """Publish ``total`` events at ``rate_per_s`` (the latency rate by default) in
        slices, event time = now; ``on_slice`` gets the events sent after each slice."""
        speed = float(rate_per_s if rate_per_s is not None else self.options.latency_rate)
        lags: list[float] = []
        sent = 0
        start = time.perf_counter()
        tick = 0
        while sent < total:
            tick += 1
            due = start + tick * slice_s
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            lags.append(max(0.0, time.perf_counter() - due) * 1000)
            target = min(total, int(speed * (time.perf_counter() - start)))
            now_ms = int(time.time() * 1000)
            for record in take(source, target - sent):
                publisher.publish(restamped(record, now_ms))
                sent += 1
            publisher.flush()
            if on_slice is not None:
                on_slice(sent)
        return lags, sent

    def soak(self) -> dict[str, Any]:
        """The worker under a steady live load for minutes, its RSS sampled: does memory
        level off once the grace has passed (issue 13: flat after the grace period)?"""
        o = self.options
        topic = self.topic("soak")
        total = int(o.soak_rate * o.soak_s)
        warmup = 1
        sim = simulator(SOAK_CAMPAIGNS, SOAK_CREATORS_PER_CAMPAIGN, o.seed, f"{self.run_id}k")
        creators: set[bytes] = set()

        def events() -> Iterator[SimRecord]:
            now_ms = int(time.time() * 1000)
            for record in sim.events_at_rate(now_ms, float(o.soak_rate), total + warmup):
                creators.add(record.key or b"")
                yield record

        source = events()
        env = {"CREATORPULSE_GRACE_S": str(o.soak_grace_s)}
        worker = WorkerProcess(
            self.bootstrap(), topic, self.work_dir, "worker-soak", sink="topic", env=env
        )
        sink = WorkerProcess(
            self.bootstrap(),
            topic,
            self.work_dir,
            "worker-soak-sink",
            command="sink",
            app_id=worker.app_id,
            env=env,
        )
        from producers.publisher import Publisher

        slice_s = LATENCY_SLICE_S["batch"]
        publisher = Publisher(self.bootstrap(), topic, events_per_record=o.events_per_record)

        def pid(process: WorkerProcess) -> int | None:
            proc = process.proc
            return proc.pid if proc is not None and proc.poll() is None else None

        sink.start()
        try:
            with worker, publisher:
                self.say("soak: starting the worker")
                for record in take(source, warmup):
                    publisher.publish(restamped(record, int(time.time() * 1000)))
                publisher.flush()
                deadline = time.monotonic() + 120
                while True:
                    stats = worker.stats()
                    if stats and stats.get("events_counted", 0) >= warmup:
                        warm = stats
                        break
                    if time.monotonic() > deadline:
                        raise BenchError(f"the soak worker did not start (log {worker.log_path})")
                    time.sleep(POLL_STARTUP_S)
                started = time.monotonic()
                shown = [started]

                def on_slice(sent: int) -> None:
                    for process in (worker, sink):
                        if process.proc is not None and process.proc.poll() is not None:
                            raise BenchError(
                                f"the soak's {process.command} exited "
                                f"{process.proc.returncode}:\n{log_tail(process.log_path)}"
                            )
                    now = time.monotonic()
                    if now - shown[0] >= 1.0:
                        shown[0] = now
                        rss = rss_worker.samples[-1][1] if rss_worker.samples else None
                        self.say(
                            f"soak: {now - started:,.0f}/{o.soak_s:,.0f} s, {sent:,} events, "
                            f"worker RSS {fmt_number(rss, 'MB')}"
                        )

                def held() -> dict[str, int] | None:
                    with contextlib.suppress(BenchError):  # an exit is reported by on_slice
                        return (worker.stats() or {}).get("held")
                    return None

                with (
                    RssSampler(lambda: pid(worker), SOAK_SAMPLE_S) as rss_worker,
                    RssSampler(lambda: pid(sink), SOAK_SAMPLE_S) as rss_sink,
                    Sampler(held, SOAK_HELD_SAMPLE_S, name="held-sampler") as held_worker,
                ):
                    lags, sent = self._paced_publish(
                        publisher, source, total, slice_s, o.soak_rate, on_slice
                    )
                    end_s = time.monotonic() - started
                published_at = time.time()
                waited = wait_until_written(
                    worker, total + warmup, worker_timeout(total), before=warm
                )
                vm_hwm_mb = worker.vm_hwm_mb()
        finally:
            sink.stop()

        def relative(sampler: Sampler[Any]) -> list[tuple[float, Any]]:
            return [(t - started, value) for t, value in sampler.samples]

        def judged(samples: list[tuple[float, float]]) -> dict[str, Any]:
            return soak_figures(
                samples,
                settle_s=o.soak_settle_s,
                end_s=end_s,
                tolerance_mb_per_min=SOAK_TOLERANCE_MB_PER_MIN,
                min_settled_s=SOAK_MIN_SETTLED_S,
                min_samples=SOAK_MIN_SAMPLES,
            )

        worker_samples, sink_samples = relative(rss_worker), relative(rss_sink)
        result = judged(worker_samples)
        last_write = waited.final.get("last_write_unix")
        result.update(
            seconds=end_s,
            events=sent,
            records=waited.final.get("records"),
            rate=o.soak_rate,
            achieved_rate=sent / end_s if end_s else None,
            creators=len(creators),
            grace_s=o.soak_grace_s,
            windows=WINDOWS,
            sample_interval_s=SOAK_SAMPLE_S,
            vm_hwm_mb=vm_hwm_mb,
            drain_s=last_write - published_at if last_write is not None else None,
            late=waited.final.get("late"),
            duplicates=waited.final.get("duplicates"),
            pacing_lag_ms={"p99": percentile(lags, 0.99), "max": max(lags) if lags else None},
            exit_code=worker.exit_code,
            rss_mb=[[round(t, 1), round(mb, 1)] for t, mb in worker_samples],
            held=held_figures(relative(held_worker), settle_s=o.soak_settle_s, end_s=end_s),
            held_samples=[[round(t, 1), held] for t, held in relative(held_worker)],
            held_sample_interval_s=SOAK_HELD_SAMPLE_S,
            held_read_errors=held_worker.errors,
            held_last_error=held_worker.last_error,
            sink={
                key: value
                for key, value in judged(sink_samples).items()
                if key in ("slope_mb_per_min", "verdict", "rss_peak_mb", "settled_samples")
            },
        )
        if worker.exit_code != 0:
            self.errors["soak/exit"] = f"worker exited {worker.exit_code} on SIGTERM"
        self.done(
            f"soak, {o.soak_rate:,} ev/s for {end_s:,.0f} s, grace {o.soak_grace_s} s: worker "
            f"RSS slope {fmt_number(result['slope_mb_per_min'], 'MB/min', 2)} after "
            f"{o.soak_settle_s:.0f} s ({result['verdict']}), peak "
            f"{fmt_number(result['rss_peak_mb'], 'MB')}"
        )
        return result

    def memory(self) -> dict[str, Any]:
        o = self.options
        creators = o.memory_creators * o.memory_campaigns
        self.say(f"memory: building {creators:,} creators")
        sim = simulator(o.memory_campaigns, o.memory_creators, o.seed, f"{self.run_id}m")
        dataset = self.live_dataset("memory", sim, o.memory_events_per_creator)
        result = self.worker_run(dataset, "worker-memory")
        result.update(
            campaigns=o.memory_campaigns,
            creators_per_campaign=o.memory_creators,
            events_per_creator=o.memory_events_per_creator,
            kb_per_window=kb_per_window(result, dataset.windows),
        )
        self.done(
            f"memory: peak RSS {fmt_number(result.get('rss_peak_mb'), 'MB')} with "
            f"{dataset.windows:,} open windows, chDB in the worker"
        )
        self.say("memory: the same with --sink topic and a `creatorpulse sink` process")
        topic_mode = self.worker_run(dataset, "worker-memory-topic", sink="topic")
        topic_mode["kb_per_window"] = kb_per_window(topic_mode, dataset.windows)
        result["sink_topic"] = topic_mode
        self.done(
            f"memory, --sink topic: worker {fmt_number(topic_mode.get('rss_peak_mb'), 'MB')}, "
            f"sink process {fmt_number(topic_mode.get('sink_rss_peak_mb'), 'MB')}"
        )
        return result

    def live_dataset(self, label: str, sim: CampaignSimulator, per_creator: int) -> Dataset:
        """Every creator gets ``per_creator`` events within the grace: all windows open."""
        creators = len(sim.traits())
        events = creators * per_creator
        rate_per_s = even_rate(events, LIVE_SPAN_S)
        start_ms = int(time.time() * 1000) - int(LIVE_SPAN_S * 1000)
        records = list(
            coverage_records(
                sim, start_ms, rate_per_s, per_creator, id_prefix=f"{label}-{uuid.uuid4().hex[:6]}"
            )
        )
        windows = count_windows(records)
        topic = self.topic(label)
        self.say(f"{label}: publishing {events:,} events for {creators:,} creators")
        published = publish(self.bootstrap(), topic, records, events_per_record=1)
        del records
        return Dataset(
            label, topic, events, published["records"], 1, creators, LIVE_SPAN_S, windows
        )

    def scaling(self) -> None:
        o = self.options
        creator_counts = sorted(o.scaling_creators)
        per_creator = sorted(o.scaling_events_per_creator)
        if not creator_counts or not per_creator:
            return
        total = creator_counts[-1]
        fixed = creator_counts[0]
        plan: list[tuple[str, int, int]] = [
            ("creators", c, max(1, total // c)) for c in creator_counts
        ]
        plan += [("events_per_creator", fixed, e) for e in per_creator]
        done: dict[tuple[int, int], dict[str, Any]] = {}
        scaling = self.sections.setdefault("scaling", {"creators": [], "events_per_creator": []})
        sims: dict[int, CampaignSimulator] = {}
        for axis, creators, each in plan:
            key = (creators, each)
            point = done.get(key)
            if point is None:
                label = f"scale-{creators}x{each}"
                try:
                    if creators not in sims:
                        self.say(f"scaling: building {creators:,} creators")
                        campaigns, per_campaign = campaigns_for(creators)
                        with self.timed(f"scaling/cast-{creators}"):
                            sims[creators] = simulator(
                                campaigns, per_campaign, o.seed, f"{self.run_id}s{creators}"
                            )
                    with self.timed(f"scaling/{label}"):
                        dataset = self.live_dataset(label, sims[creators], each)
                        point = self.worker_run(dataset, f"worker-{label}")
                except BenchError as exc:
                    self.errors[f"scaling/{label}"] = str(exc)
                    console.print(f"  [red]\u2717 scaling {label}:[/] {exc}")
                    continue
                point["events_per_creator"] = each
                done[key] = point
                self.done(
                    f"scaling {creators:,} creators x {each}: "
                    f"{fmt_number(point['events_per_s'], 'ev/s')}, "
                    f"CPU {fmt_us(point['cpu_s_per_event'])}/event, "
                    f"RSS {fmt_number(point['rss_peak_mb'], 'MB')}"
                )
            scaling[axis].append(point)


def run_benchmark(options: BenchOptions, results: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run every section not skipped; returns (and fills in place) the results dict.

    The broker is started once and stopped on the way out, also on Ctrl-C; pass your own
    ``results`` dict to keep what was measured before an interruption.
    """
    results = {} if results is None else results
    started = time.time()
    results.update(
        schema=1,
        started_at=datetime.fromtimestamp(started, UTC).isoformat(),
        options=jsonable(asdict(options)),
        method=METHOD,
    )
    try:
        with ExitStack() as stack:
            Runner(options, results, stack).run()
    finally:
        results["duration_s"] = round(time.time() - started, 1)
    return results
