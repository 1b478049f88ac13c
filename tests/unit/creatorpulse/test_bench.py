"""The benchmark's pure parts: figures, percentiles, ratios, options, data and the table."""

from __future__ import annotations

import io
import time
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

from creatorpulse.bench.baseline import add_counts, window_keys
from creatorpulse.bench.command import main
from creatorpulse.bench.figures import (
    DoneTracker,
    alert_cost,
    held_figures,
    kb_per_window,
    median_of,
    median_of_passes,
    percentile,
    ratio,
    slope_mb_per_min,
    soak_figures,
    whole_topic_rates,
    worker_figures,
)
from creatorpulse.bench.machine import (
    parse_cpu_model,
    parse_mem_total_gb,
    parse_vm_hwm_mb,
    parse_vm_rss_mb,
)
from creatorpulse.bench.options import SOAK_MIN_SETTLED_S, BenchOptions, parse_args
from creatorpulse.bench.processes import Sampler, parse_json_line, parse_sample
from creatorpulse.bench.report import (
    build_rows,
    default_out_path,
    fmt_passes,
    fmt_pct,
    fmt_ratio,
    render_table,
    write_results,
)
from creatorpulse.bench.workload import (
    campaigns_for,
    count_windows,
    coverage_records,
    restamp,
    simulator,
)
from schemas.events import decode_record

# -- numbers -------------------------------------------------------------------------------


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0.0) == 10.0
    assert percentile(values, 1.0) == 40.0
    assert percentile(values, 0.5) == 25.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0  # order of input does not matter
    assert percentile(list(map(float, range(1, 101))), 0.99) == pytest.approx(99.01)
    assert percentile([], 0.5) is None
    with pytest.raises(ValueError, match="q must be within"):
        percentile(values, 1.5)


def test_ratio_and_its_format() -> None:
    assert ratio(50.0, 200.0) == 0.25
    assert ratio(1.0, None) is None
    assert ratio(None, 1.0) is None
    assert ratio(1.0, 0.0) is None
    assert fmt_ratio(None) == "-"
    assert fmt_ratio(0.08123) == "0.0812x"
    assert fmt_ratio(1.5) == "1.50x"
    assert fmt_ratio(14.24) == "14.2x"
    assert fmt_ratio(1234.0) == "1,234x"


def test_restamp_replaces_only_the_event_time() -> None:
    value = b'{"event_id":"x-1","kind":"delta","ts":1000,"campaign_id":"c","views":1000}'
    out = restamp(value, 1000, 2500)
    assert orjson.loads(out)["ts"] == 2500
    assert orjson.loads(out)["views"] == 1000
    with pytest.raises(ValueError, match="no ts 999"):
        restamp(value, 999, 2500)


def test_worker_figures_run_from_first_record_to_last_write() -> None:
    before = {"cpu_s": 2.0, "rss_peak_mb": 300.0}
    final = {
        "first_record_unix": 100.0,
        "last_write_unix": 104.0,
        "cpu_s": 6.0,
        "records": 500,
        "rows_written": 900,
        "flushes": 5,
        "rss_peak_mb": 420.0,
    }
    figures = worker_figures(before, final, 20_000)
    assert figures["seconds"] == 4.0
    assert figures["events_per_s"] == 5_000.0
    assert figures["cpu_s"] == 4.0
    assert figures["cpu_s_per_event"] == pytest.approx(4.0 / 20_000)
    assert figures["rss_start_mb"] == 300.0
    assert figures["rss_peak_mb"] == 420.0
    # VmHWM, where measured, wins over ru_maxrss (which can be the parent's).
    measured = worker_figures({**before, "vm_hwm_mb": 250.0}, {**final, "vm_hwm_mb": 380.0}, 1)
    assert (measured["rss_start_mb"], measured["rss_peak_mb"]) == (250.0, 380.0)
    assert measured["rss_peak_mb_stats"] == 420.0
    # No write yet: no throughput, rather than a made-up one.
    assert worker_figures(before, {**final, "last_write_unix": None}, 10)["events_per_s"] is None


def _stats(**overrides: object) -> dict[str, object]:
    stats: dict[str, object] = {
        "events_counted": 100,
        "duplicates": 0,
        "late": 0,
        "invalid": 0,
        "flushes": 3,
        "rows_written": 40,
        "rows_pending": 0,
        "writer_idle": True,
        "last_record_unix": 10.0,
        "last_write_unix": 11.0,
        "cpu_s": 1.0,
    }
    stats.update(overrides)
    return stats


def test_done_tracker_waits_for_a_quiet_settled_worker() -> None:
    tracker = DoneTracker(expected=100, quiet_s=2.0)
    assert not tracker.update(_stats(events_counted=99), now=0.0)
    assert not tracker.update(_stats(writer_idle=False), now=0.5)
    assert not tracker.update(_stats(rows_pending=7), now=1.0)
    # Counted, but the last records were applied after the last write: a flush is due.
    assert not tracker.update(_stats(last_record_unix=12.0), now=1.5)
    assert not tracker.update(_stats(cpu_s=1.0), now=2.0)
    assert not tracker.update(_stats(cpu_s=1.1), now=3.0)  # quiet for 1 s only
    assert tracker.update(_stats(cpu_s=1.2), now=4.0)
    # The first snapshot of the quiet period: its CPU excludes the waiting.
    assert tracker.final is not None
    assert tracker.final["cpu_s"] == 1.0


def test_done_tracker_restarts_the_quiet_period_on_a_new_write() -> None:
    tracker = DoneTracker(expected=100, quiet_s=2.0)
    assert not tracker.update(_stats(), now=0.0)
    assert not tracker.update(_stats(rows_written=50, last_write_unix=12.0), now=1.5)
    assert not tracker.update(_stats(rows_written=50, last_write_unix=12.0), now=3.0)
    assert tracker.update(_stats(rows_written=50, last_write_unix=12.0), now=3.6)
    assert tracker.final is not None
    assert tracker.final["rows_written"] == 50


def test_done_tracker_counts_duplicates_and_dead_letters_as_seen() -> None:
    tracker = DoneTracker(expected=100, quiet_s=0.0)
    assert not tracker.update(_stats(events_counted=90, duplicates=6, late=2, invalid=2), 0.0)
    assert tracker.update(_stats(events_counted=90, duplicates=6, late=2, invalid=2), 0.0)


# -- options -------------------------------------------------------------------------------


def test_default_options_are_sized_for_minutes() -> None:
    options = parse_args([])
    assert options.broker == "apache-kafka"
    assert options.events == 1_000_000
    assert options.single_events == 100_000
    assert options.skip == frozenset()
    assert options.out is None


def test_events_flag_sizes_the_single_event_shape_too() -> None:
    options = parse_args(["--events", "80000"])
    assert (options.events, options.single_events) == (80_000, 20_000)
    options = parse_args(["--events", "80000", "--single-events", "3000"])
    assert (options.events, options.single_events) == (80_000, 3_000)


def test_quick_is_small_and_flags_still_win() -> None:
    quick = parse_args(["--quick"])
    assert quick.quick
    assert quick.events < 50_000
    assert quick.latency_seconds < 10
    assert max(quick.scaling_creators) <= 1_000
    assert parse_args(["--quick", "--events", "7000"]).events == 7_000


def test_skip_broker_and_out_flags() -> None:
    options = parse_args(
        ["--broker", "embedded", "--skip", "latency", "--skip", "single", "--out", "x.json"]
    )
    assert options.broker == "embedded"
    assert options.skip == {"latency", "single"}
    assert not options.runs("latency")
    assert options.runs("memory")
    assert options.out == Path("x.json")
    with pytest.raises(SystemExit):
        parse_args(["--skip", "everything"])
    with pytest.raises(ValueError, match="events must be >= 1"):
        BenchOptions(events=0)


def test_main_returns_argparse_exit_codes() -> None:
    assert main(["--broker", "redpanda"]) == 2


# -- data ----------------------------------------------------------------------------------


def test_campaigns_split_large_casts() -> None:
    assert campaigns_for(300) == (1, 300)
    assert campaigns_for(1_000) == (1, 1_000)
    assert campaigns_for(100_000) == (100, 1_000)
    with pytest.raises(ValueError, match="not a multiple of 1000"):
        campaigns_for(1_500)


def test_coverage_records_give_every_creator_valid_events() -> None:
    sim = simulator(2, 25, seed=1, run_id="t")
    records = list(coverage_records(sim, 1_000_000, 10.0, 3, id_prefix="cov"))
    creators = {t.creator_id for t in sim.traits()}
    assert len(records) == 150
    seen: dict[str, int] = {}
    for record in records:
        decoded = decode_record(record.value)
        assert not decoded.rejected
        (event,) = decoded.events
        assert record.key == event.creator_id.encode()
        assert record.timestamp_ms == event.ts
        seen[event.creator_id] = seen.get(event.creator_id, 0) + 1
    assert seen == {creator: 3 for creator in creators}
    assert len({r.event.event_id for r in records if r.event}) == 150
    # 10 events/s: 150 events span 14.9 s of event time.
    assert records[-1].timestamp_ms - records[0].timestamp_ms == 14_900


def test_count_windows_counts_each_size_per_creator() -> None:
    sim = simulator(1, 4, seed=1, run_id="w")
    # 4 creators x 2 events, 1 event/s from a minute boundary: 8 s, one window each.
    records = list(coverage_records(sim, 3_600_000, 1.0, 2, id_prefix="w"))
    assert count_windows(records) == 4 * 2
    # 30 events per creator over 120 s: 2 minutes (+1 straddling), 1 hour each.
    records = list(coverage_records(sim, 3_600_000 - 30_000, 1.0, 30, id_prefix="w"))
    minutes = {(r.event.creator_id, r.timestamp_ms // 60_000) for r in records if r.event}
    assert count_windows(records) == len(minutes) + 4 + 4  # hour boundary at 3_600_000


def test_simulator_events_are_what_the_baseline_counts() -> None:
    sim = simulator(1, 5, seed=2, run_id="b")
    record = next(islice(sim.events_at_rate(120_500, 100.0, 1), 1))
    event = orjson.loads(record.value)
    assert window_keys(event) == [
        f"{event['campaign_id']}:{event['creator_id']}:60:120000",
        f"{event['campaign_id']}:{event['creator_id']}:3600:0",
    ]
    once = add_counts(None, event)
    assert once[0] == event["views"]
    assert add_counts(once, event) == [2 * v for v in once]


# -- machine and subprocess output ----------------------------------------------------------


def test_machine_parsers() -> None:
    cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n"
    assert parse_cpu_model(cpuinfo) == "AMD EPYC 7B13"
    assert parse_cpu_model("") == "unknown"
    assert parse_mem_total_gb("MemTotal:       24683520 kB\nMemFree: 1 kB\n") == 23.5
    assert parse_mem_total_gb("nothing") is None
    assert parse_vm_hwm_mb("VmPeak:\t 1 kB\nVmHWM:\t  524288 kB\n") == 512.0
    assert parse_vm_hwm_mb("") is None
    status = "VmHWM:\t  524288 kB\nVmRSS:\t  262144 kB\n"
    assert (parse_vm_hwm_mb(status), parse_vm_rss_mb(status)) == (512.0, 256.0)
    assert parse_vm_rss_mb("VmRSS:\t  ? kB\n") is None


def test_parse_json_line_skips_terminal_noise() -> None:
    out = 'starting\n\x1b[?25h{"events": 5, "seconds": 1.5}\n'
    assert parse_json_line(out) == {"events": 5, "seconds": 1.5}
    assert parse_json_line("no json {here\n") is None


# -- the table -----------------------------------------------------------------------------


def _results() -> dict[str, object]:
    return {
        "machine": {"nproc": 2, "cpu_model": "AMD EPYC", "ram_gb": 23.5, "python": "3.11.7"},
        "broker": {"flavour": "apache-kafka", "version": "3.9.1"},
        "datasets": {"batch": {"events": 200_000, "records": 8_000, "creators": 300}},
        "sections": {
            "ceiling": {"batch": {"events_per_s": 200_000.0, "cpu_s_per_event": 5e-6}},
            "baseline": {
                "batch": {
                    "events": 20_000,
                    "events_per_s": 1_000.0,
                    "cpu_s_per_event": 5e-4,
                    "table_writes": 40_000,
                }
            },
            "worker": {
                "batch": {
                    "events_per_s": 20_000.0,
                    "cpu_s_per_event": 3e-5,
                    "rows_written": 9_000,
                    "rss_peak_mb": 500.0,
                }
            },
            "producers": {
                "batch": {
                    "simulator": {"events_per_s": 80_000.0, "records": 8_000},
                    "replay": {"events_per_s": 50_000.0, "records": 8_000},
                }
            },
            "latency": {
                "batch": {
                    "seconds": 30.0,
                    "achieved_rate": 4_990.0,
                    "records": 30_000,
                    "latency_ms": {"count": 30_000, "p50": 800.0, "p95": 1_300.0, "p99": 1_600.0},
                },
                "single": {
                    "seconds": 30.0,
                    "achieved_rate": 4_000.0,
                    "records": 120_000,
                    "latency_ms": {"count": 50_000, "p50": 2_500.0, "p95": 4_000.0, "p99": 9_000.0},
                },
            },
            "memory": {
                "campaigns": 3,
                "creators_per_campaign": 10_000,
                "rss_peak_mb": 700.0,
                "rss_start_mb": 300.0,
                "windows": 60_000,
                "kb_per_window": 6.83,
                "sink_topic": {
                    "rss_peak_mb": 250.0,
                    "rss_start_mb": 150.0,
                    "kb_per_window": kb_per_window(
                        {"rss_peak_mb": 250.0, "rss_start_mb": 150.0}, 60_000
                    ),
                    "sink_rss_peak_mb": 380.0,
                },
            },
            "scaling": {
                "creators": [
                    {"creators": 1_000, "events_per_creator": 100, "cpu_s_per_event": 1e-4},
                    {"creators": 100_000, "events_per_creator": 1, "cpu_s_per_event": 3e-4},
                ],
                "events_per_creator": [],
            },
        },
    }


def test_rows_carry_ratios_to_ceiling_and_baseline() -> None:
    rows = {(r.section or "", r.figure): r for r in build_rows(_results())}
    worker = rows[("3 creatorpulse, batch records", "read -> all windows in ClickHouse")]
    assert worker.value == "20,000 ev/s"
    assert worker.vs_ceiling == "0.100x"
    assert worker.vs_baseline == "20.0x"
    assert "9,000 rows" in worker.note
    baseline = rows[("2 baseline, batch records", "Faust, table write/event/window")]
    assert baseline.vs_ceiling == "0.00500x"
    assert baseline.vs_baseline == "1.00x"
    assert "first 20,000 events" in baseline.note
    latency = rows[("5 latency, batch records", "publish -> row written, p50")]
    assert latency.value == "800 ms"
    assert "30,000 records" in latency.note
    single = rows[("5 latency, single-event records", "publish -> row written, p50")]
    assert single.value == "2,500 ms"
    assert "4,000 ev/s" in single.note
    p99s = [r.value for r in build_rows(_results()) if r.figure == "p99"]
    assert p99s == ["9,000 ms", "1,600 ms"]  # in SHAPES order: single-event, then batch
    memory = rows[
        ("6 memory, 10,000 creators x 3 campaigns", "worker peak RSS, chDB in the worker")
    ]
    assert memory.value == "700 MB"
    assert "60,000 open windows" in memory.note
    topic_mode = rows[("", "worker peak RSS, --sink topic")]
    assert topic_mode.value == "250 MB"
    assert "sink process: 380 MB" in topic_mode.note
    assert "1.71 KB per window" in topic_mode.note
    scaled = rows[("", "CPU/event, 100,000 creators x 1")]
    assert "3.00x the first" in scaled.note


def test_cpu_rows_compare_cost_per_event() -> None:
    rows = build_rows(_results())
    worker_at = next(i for i, r in enumerate(rows) if r.section.startswith("3 creatorpulse"))
    cpu = rows[worker_at + 1]
    assert cpu.figure == "CPU per event"
    assert cpu.value == "30.0 us"
    assert cpu.vs_ceiling == "6.00x"  # costlier than raw decode
    assert cpu.vs_baseline == "0.0600x"  # cheaper than the textbook agent


def test_missing_sections_leave_no_rows_and_the_table_renders() -> None:
    assert build_rows({"sections": {}}) == []
    out = io.StringIO()
    Console(file=out, width=200).print(render_table(_results()))
    text = out.getvalue()
    assert "creatorpulse bench" in text
    assert "2 CPU(s) AMD EPYC" in text
    assert "apache-kafka 3.9.1" in text
    assert "20,000 ev/s" in text


def test_results_are_written_as_json(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "bench.json"
    write_results({"options": {"skip": frozenset({"b", "a"}), "out": path}}, path)
    data = orjson.loads(path.read_bytes())
    assert data["options"] == {"skip": ["a", "b"], "out": str(path)}
    assert default_out_path().parent == Path("bench-results")


def test_single_event_worker_is_compared_with_the_bare_faust_loop() -> None:
    results = _results()
    sections = results["sections"]
    assert isinstance(sections, dict)
    results["datasets"] = {"single": {"events": 50_000, "records": 50_000, "creators": 264}}
    sections["bare_loop"] = {
        "single": {"events": 20_000, "records": 20_000, "events_per_s": 8_000.0}
    }
    sections["worker"] = {"single": {"events_per_s": 6_000.0, "rows_written": 10}}
    rows = {(r.section or "", r.figure): r for r in build_rows(results)}
    bare = rows[("2 bare Faust loop, single-event records", "agent iterating, no work")]
    assert bare.value == "8,000 ev/s"
    assert bare.note == "every record: 20,000 records, 20,000 events"
    worker = rows[("3 creatorpulse, single-event records", "read -> all windows in ClickHouse")]
    assert "75% of the bare Faust loop" in worker.note


def test_a_bare_loop_over_batch_records_is_rated_per_event() -> None:
    # The loop counts records; 500 records of the topic held 40,000 events.
    loop = {"events": 500, "records": 500, "seconds": 2.0, "cpu_s": 1.6, "events_per_s": 250.0}
    rated = whole_topic_rates(loop, 40_000)
    assert rated["events"] == 40_000
    assert rated["records"] == 500
    assert rated["events_per_s"] == 20_000.0
    assert rated["cpu_s_per_event"] == 1.6 / 40_000
    assert loop["events_per_s"] == 250.0  # the run's own figures stay as they were


def test_kb_per_window_is_the_growth_over_the_start() -> None:
    assert kb_per_window({"rss_peak_mb": 250.0, "rss_start_mb": 150.0}, 50_000) == 2.048
    assert kb_per_window({"rss_peak_mb": 250.0}, 50_000) is None
    assert kb_per_window({"rss_peak_mb": 250.0, "rss_start_mb": 150.0}, 0) is None


def test_median_of_passes_takes_each_figure_s_median_and_keeps_every_pass() -> None:
    runs = [
        {"events_per_s": 1_100.0, "cpu_s_per_event": 9e-6, "rows_written": 11},
        {"events_per_s": 900.4, "cpu_s_per_event": 12e-6, "rows_written": 9},
        {"events_per_s": 1_000.0, "cpu_s_per_event": 10e-6, "rows_written": 10},
    ]
    median = median_of_passes(runs)
    assert median["events_per_s"] == 1_000.0
    # CPU per event is its own median, whichever pass it came from.
    assert median["cpu_s_per_event"] == 10e-6
    # Fields without a median come from the pass with the median events/s.
    assert median["rows_written"] == 10
    assert median["passes"] == [1_100, 900, 1_000]
    assert [run["events_per_s"] for run in median["runs"]] == [1_100.0, 900.4, 1_000.0]
    assert "passes" not in runs[2]  # the inputs are left alone
    assert "rss_peak_mb" not in median  # no pass had it


def test_median_of_passes_of_two_is_their_midpoint_and_of_one_itself() -> None:
    two = median_of_passes(
        [{"events_per_s": 800.0, "cpu_s_per_event": 2.0}, {"events_per_s": 1_200.0}]
    )
    assert two["events_per_s"] == 1_000.0
    assert two["cpu_s_per_event"] == 2.0  # the only pass that has it
    assert median_of_passes([{"events_per_s": None}])["passes"] == [0]
    with pytest.raises(ValueError, match="no passes"):
        median_of_passes([])


def test_the_median_of_three_does_not_follow_one_lucky_pass() -> None:
    # best-of would report 5,000: the median stays with the two passes that agree.
    runs = [{"events_per_s": v} for v in (1_000.0, 5_000.0, 1_100.0)]
    assert median_of_passes(runs)["events_per_s"] == 1_100.0


def test_rows_say_how_many_passes_each_figure_is_the_median_of() -> None:
    results = _results()
    sections = results["sections"]
    assert isinstance(sections, dict)
    sections["worker"]["batch"]["passes"] = [120_000, 100_000, 110_000]
    sections["ceiling"]["batch"]["passes"] = [400_000]
    rows = build_rows(results)
    worker = next(r for r in rows if r.section == "3 creatorpulse, batch records")
    ceiling = next(r for r in rows if r.section == "1 ceiling, batch records")
    assert "median of 120,000, 100,000, 110,000 ev/s" in worker.note
    assert "one pass (400,000 ev/s), not a median" in ceiling.note
    assert fmt_passes([]) == ""


# -- alerts on and off ---------------------------------------------------------------------


def test_alert_cost_compares_the_medians_of_each_side() -> None:
    on = [
        {"events_per_s": 90_000.0, "cpu_s_per_event": 11e-6, "stage_caught_up_s": 1.5},
        {"events_per_s": 70_000.0, "cpu_s_per_event": 13e-6, "stage_caught_up_s": 2.5},
        {
            "events_per_s": 95_000.0,
            "cpu_s_per_event": 12e-6,
            "stage_caught_up_s": 3.5,
            "evaluations": 42.0,
        },
    ]
    off = [
        {"events_per_s": 100_000.0, "cpu_s_per_event": 10e-6},
        {"events_per_s": 120_000.0, "cpu_s_per_event": 9e-6},
        {"events_per_s": 80_000.0, "cpu_s_per_event": 11e-6},
    ]
    cost = alert_cost(on, off)
    # Medians, not means or bests: 90k on, 100k off; 12 us on, 10 us off.
    assert cost["on"]["events_per_s"] == 90_000.0
    assert cost["off"]["events_per_s"] == 100_000.0
    assert cost["throughput_cost_pct"] == pytest.approx(10.0)
    assert cost["cpu_cost_pct"] == pytest.approx(20.0)
    assert cost["on"]["stage_caught_up_s"] == 2.5
    assert cost["on"]["evaluations"] == 42.0  # of the runs that report it
    assert cost["on"]["passes"] == [90_000.0, 70_000.0, 95_000.0]
    assert cost["off"]["passes"] == [100_000.0, 120_000.0, 80_000.0]


def test_alert_cost_of_two_runs_is_their_midpoint_and_may_be_negative() -> None:
    on = [{"events_per_s": 104_000.0}, {"events_per_s": 106_000.0}]
    off = [{"events_per_s": 100_000.0}, {"events_per_s": 100_000.0}]
    cost = alert_cost(on, off)
    assert cost["on"]["events_per_s"] == 105_000.0
    assert cost["throughput_cost_pct"] == pytest.approx(-5.0)  # noise: faster with alerts
    assert cost["cpu_cost_pct"] is None  # no CPU figure on either side
    assert median_of([{"x": None}], "x") is None


def test_alert_cost_without_runs_off_has_no_ratio() -> None:
    cost = alert_cost([{"events_per_s": 1.0, "cpu_s_per_event": 1e-6}], [])
    assert cost["off"]["events_per_s"] is None
    assert cost["throughput_cost_pct"] is None
    assert cost["cpu_cost_pct"] is None


def test_alert_rows_show_both_sides_and_the_signed_cost() -> None:
    results = _results()
    sections = results["sections"]
    assert isinstance(sections, dict)
    sections["alerts"] = alert_cost(
        [
            {"events_per_s": 96_000.0, "cpu_s_per_event": 11e-6, "stage_caught_up_s": 1.2},
            {
                "events_per_s": 94_000.0,
                "cpu_s_per_event": 11e-6,
                "stage_caught_up_s": 1.4,
                "evaluations": 1_300.0,
            },
        ],
        [
            {"events_per_s": 100_000.0, "cpu_s_per_event": 10e-6},
            {"events_per_s": 100_000.0, "cpu_s_per_event": 10e-6},
        ],
    )
    rows = build_rows(results)
    at = next(i for i, r in enumerate(rows) if r.section == "8 alerts, batch records")
    on, off, speed, cpu = rows[at : at + 4]
    assert (on.figure, on.value) == ("worker, alert evaluation on", "95,000 ev/s")
    assert "median of 96,000, 94,000 ev/s" in on.note
    assert "CPU 11.0 us/event" in on.note
    assert "caught up 1.3 s after the worker settled" in on.note
    assert "1,300 evaluations per run" in on.note
    assert (off.figure, off.value) == ("worker, alert evaluation off", "100,000 ev/s")
    assert "CREATORPULSE_ALERTS=0" in off.note
    assert (speed.figure, speed.value) == ("cost of alerts, throughput", "+5.0%")
    assert (cpu.figure, cpu.value) == ("cost of alerts, CPU per event", "+10.0%")
    assert all(not r.section for r in (off, speed, cpu))
    assert fmt_pct(None) == "-"
    assert fmt_pct(-0.04) == "-0.0%"
    out = io.StringIO()
    Console(file=out, width=240).print(render_table(results))
    assert "8 alerts, batch records" in out.getvalue()


def test_alerts_is_a_section_that_can_be_skipped() -> None:
    assert parse_args([]).runs("alerts")
    options = parse_args(["--skip", "alerts"])
    assert not options.runs("alerts")
    assert options.runs("worker")


def test_parse_sample_reads_one_unlabelled_sample() -> None:
    text = (
        "# HELP creatorpulse_alert_evaluations_total Minutes evaluated\n"
        "# TYPE creatorpulse_alert_evaluations_total counter\n"
        'creatorpulse_alerts_fired_total{rule="r"} 3.0\n'
        "creatorpulse_alert_evaluations_total 168.0\n"
        "creatorpulse_alert_evaluations_created 1.7e+09\n"
    )
    assert parse_sample(text, "creatorpulse_alert_evaluations_total") == 168.0
    assert parse_sample(text, "creatorpulse_alerts_fired_total") is None  # labelled
    assert parse_sample("", "x") is None


def test_a_worker_gets_its_own_settings_over_the_fixed_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from creatorpulse.bench import processes

    started: list[dict[str, str]] = []

    class Spawned:
        pid = 0

        def __init__(self, cmd: list[str], *, env: dict[str, str], **_: object) -> None:
            started.append(env)

    monkeypatch.setattr("creatorpulse.bench.processes.subprocess.Popen", Spawned)
    # A user's own setting never reaches a bench worker; the run's own does.
    monkeypatch.setenv("CREATORPULSE_ALERTS", "1")
    monkeypatch.setenv("CREATORPULSE_GRACE_S", "5")
    processes.WorkerProcess(
        "127.0.0.1:9", "t", tmp_path, "off", env={"CREATORPULSE_ALERTS": "0"}
    ).start()
    processes.WorkerProcess("127.0.0.1:9", "t", tmp_path, "default").start()
    off, default = started
    assert off["CREATORPULSE_ALERTS"] == "0"
    assert "CREATORPULSE_ALERTS" not in default  # the settings' default: alerts on
    assert off["CREATORPULSE_GRACE_S"] == default["CREATORPULSE_GRACE_S"] == "600"


def test_each_bench_worker_has_its_own_alerts_topic_shared_with_its_sink(tmp_path: Path) -> None:
    from creatorpulse.bench import processes
    from schemas.topics import ALERTS

    one = processes.WorkerProcess("127.0.0.1:9", "t", tmp_path, "one").environment()
    two = processes.WorkerProcess("127.0.0.1:9", "t", tmp_path, "two").environment()
    sink = processes.WorkerProcess(
        "127.0.0.1:9", "t", tmp_path, "sink", command="sink", app_id="bench-one-x"
    )
    topics = {one["CREATORPULSE_ALERTS_TOPIC"], two["CREATORPULSE_ALERTS_TOPIC"], ALERTS}
    assert len(topics) == 3  # no run reads another's alerts, nor the default topic
    assert sink.environment()["CREATORPULSE_ALERTS_TOPIC"] == "bench-one-x-alerts"


def test_passes_default_to_three_and_quick_says_fewer() -> None:
    assert parse_args([]).passes == 3
    assert parse_args(["--quick"]).passes == 1
    assert parse_args(["--quick", "--passes", "3"]).passes == 3
    with pytest.raises(ValueError, match="passes must be"):
        BenchOptions(passes=0)


#: Faust settings that name or place an app (its id, directories, web server), not how it
#: consumes: the only ones the textbook baseline may set apart from the worker.
IDENTITY_SETTINGS = frozenset(
    {
        "appdir",
        "canonical_url",
        "datadir",
        "id",
        "name",
        "reply_to",
        "tabledir",
        "web_bind",
        "web_enabled",
        "web_host",
        "web_port",
    }
)


def test_the_baseline_and_bare_loop_run_with_every_faust_setting_of_the_worker() -> None:
    from creatorpulse.bench.baseline import build_app
    from streams.app import build_worker
    from streams.config import WorkerConfig

    worker = build_worker(WorkerConfig(kafka_bootstrap="127.0.0.1:9"), None).app
    differ = {}
    for bare in (False, True):
        baseline = build_app("127.0.0.1:9", "t", 10, f"bench-baseline-{bare}", 4, bare=bare)
        for name, setting in type(worker.conf).SETTINGS.items():
            if setting.deprecated or name in IDENTITY_SETTINGS:
                continue
            ours, theirs = getattr(worker.conf, name), getattr(baseline.conf, name)
            if ours != theirs and not (callable(ours) and callable(theirs)):
                differ[name] = (ours, theirs)
    assert differ == {}


# -- soak ----------------------------------------------------------------------------------


def test_slope_is_the_least_squares_fit_in_mb_per_minute() -> None:
    # 0.5 MB every 10 s is 3 MB a minute, whatever the offset and the noise around the line.
    line = [(t, 200.0 + 0.05 * t) for t in range(0, 300, 10)]
    assert slope_mb_per_min(line) == pytest.approx(3.0)
    noisy = [(t, mb + (1.0 if i % 2 else -1.0)) for i, (t, mb) in enumerate(line)]
    assert slope_mb_per_min(noisy) == pytest.approx(3.0, abs=0.1)
    assert slope_mb_per_min([(0.0, 5.0), (60.0, 2.0)]) == pytest.approx(-3.0)
    assert slope_mb_per_min([(0.0, 5.0)]) == 0.0
    assert slope_mb_per_min([(1.0, 5.0), (1.0, 9.0)]) == 0.0


def _soak(samples: list[tuple[float, float]], **overrides: float) -> dict[str, Any]:
    settings: dict[str, float] = {
        "settle_s": 180.0,
        "end_s": 600.0,
        "tolerance_mb_per_min": 1.0,
        "min_settled_s": 20.0,
        "min_samples": 5,
    }
    settings.update(overrides)
    return soak_figures(
        samples,
        settle_s=settings["settle_s"],
        end_s=settings["end_s"],
        tolerance_mb_per_min=settings["tolerance_mb_per_min"],
        min_settled_s=settings["min_settled_s"],
        min_samples=int(settings["min_samples"]),
    )


def test_soak_slope_counts_only_what_follows_the_grace() -> None:
    # Memory climbs by 2 MB/s while the dedup ids and windows fill (the first 180 s),
    # then stays within a few tenths of a MB: flat, though the whole run's fit climbs.
    rising = [(float(t), 100.0 + 2.0 * t) for t in range(0, 180, 2)]
    level = [(float(t), 460.0 + (0.3 if t % 4 else 0.0)) for t in range(180, 602, 2)]
    figures = _soak(rising + level)
    assert figures["verdict"] == "flat"
    assert abs(figures["slope_mb_per_min"]) < 0.1
    assert slope_mb_per_min(rising + level) > 1.0  # what a fit over the warm-up would say
    assert figures["rss_peak_mb"] == 460.3
    assert figures["settled_samples"] == len([t for t, _ in level if t <= 600.0])
    assert figures["settled_s"] == 420.0


def test_soak_verdicts_grow_shrink_and_refuse_a_short_run() -> None:
    def line(per_min: float) -> list[tuple[float, float]]:
        return [(float(t), 300.0 + per_min * t / 60) for t in range(0, 600, 5)]

    assert _soak(line(1.5))["verdict"] == "growing"
    assert _soak(line(-1.5))["verdict"] == "shrinking"
    assert _soak(line(0.9))["verdict"] == "flat"
    short = _soak(line(5.0), end_s=190.0)
    assert short["verdict"] == "too short"  # 10 s after settling
    assert short["slope_mb_per_min"] == pytest.approx(5.0)
    empty = _soak([])
    assert (empty["verdict"], empty["slope_mb_per_min"], empty["rss_peak_mb"]) == (
        "too short",
        None,
        None,
    )


def test_the_later_half_of_the_settled_soak_tells_settling_from_a_leak() -> None:
    # Settling: +4 MB/min up to 390 s, then level. A leak: +2 MB/min throughout.
    settling = [(float(t), 300.0 + 4.0 * min(t, 390) / 60) for t in range(0, 602, 2)]
    leak = [(float(t), 300.0 + 2.0 * t / 60) for t in range(0, 602, 2)]
    settled, leaking = _soak(settling), _soak(leak)
    assert settled["verdict"] == leaking["verdict"] == "growing"  # the verdict is unchanged
    assert abs(settled["later_half_slope_mb_per_min"]) < 0.1
    assert leaking["later_half_slope_mb_per_min"] == pytest.approx(2.0)
    assert _soak([])["later_half_slope_mb_per_min"] is None


def test_soak_settles_after_the_grace_and_the_smallest_window() -> None:
    options = parse_args([])
    assert (options.soak_s, options.soak_grace_s, options.soak_settle_s) == (600.0, 120, 180.0)
    quick = parse_args(["--quick"])
    assert quick.soak_settle_s < quick.soak_s
    # A full soak settles long enough for a verdict; a quick one shows only its slope.
    settled, quick_settled = (
        options.soak_s - options.soak_settle_s,
        quick.soak_s - quick.soak_settle_s,
    )
    assert quick_settled < SOAK_MIN_SETTLED_S <= settled
    assert parse_args(["--soak-s", "30", "--soak-grace-s", "5"]).soak_settle_s == 65.0
    assert not parse_args(["--skip", "soak"]).runs("soak")


def test_soak_rows_show_the_slope_verdict_and_peak() -> None:
    results = _results()
    sections = results["sections"]
    assert isinstance(sections, dict)
    soak = _soak([(float(t), 400.0 + 0.02 * t) for t in range(0, 600, 2)])
    soak.update(rate=5_000, seconds=600.0, grace_s=120, creators=640, windows="60,3600")
    soak.update(sample_interval_s=2.0, vm_hwm_mb=420.0, sink={"rss_peak_mb": 700.0})
    sections["soak"] = soak
    rows = build_rows(results)
    at = next(i for i, r in enumerate(rows) if r.section.startswith("9 soak"))
    slope, peak = rows[at : at + 2]
    assert slope.section == "9 soak, 5,000 ev/s for 600 s"
    assert slope.value == "+1.20 MB/min"
    assert slope.note.startswith("growing (tolerance +/-1.0 MB/min)")
    assert "from 180 s (grace 120 s" in slope.note
    assert "over its later half +1.20 MB/min" in slope.note  # a straight line: alike
    assert peak.value == "412 MB"
    assert "the sink process: peak 700 MB" in peak.note


def test_held_state_is_judged_over_the_same_settled_part_as_the_rss() -> None:
    samples = [
        (100.0, {"windows": 10, "dedup_ids": 0, "posts": 0}),  # before the settle: ignored
        (180.0, {"windows": 2_000, "dedup_ids": 600_000, "posts": 0}),
        (300.0, {"windows": 2_100, "dedup_ids": 612_000, "posts": 0}),
        (590.0, {"windows": 2_000, "dedup_ids": 606_000, "posts": 0}),
        (620.0, {"windows": 9_999, "dedup_ids": 1, "posts": 0}),  # after publishing: ignored
    ]
    held = held_figures(samples, settle_s=180.0, end_s=600.0)
    assert held["dedup_ids"] == {
        "settled_start": 600_000,
        "end": 606_000,
        "peak": 612_000,
        "change_pct": pytest.approx(1.0),
    }
    assert held["windows"]["change_pct"] == 0.0
    assert held["posts"]["change_pct"] is None  # nothing to compare with
    assert held_figures(samples[:1], settle_s=180.0, end_s=600.0) == {}


def test_the_soak_table_shows_what_the_worker_held_beside_its_rss() -> None:
    results = _results()
    sections = results["sections"]
    assert isinstance(sections, dict)
    soak = _soak([(float(t), 400.0 + 0.02 * t) for t in range(0, 600, 2)])
    soak.update(held_sample_interval_s=10.0)
    soak["held"] = held_figures(
        [
            (180.0, {"windows": 2_000, "dedup_ids": 600_000, "posts": 0}),
            (590.0, {"windows": 2_000, "dedup_ids": 606_000, "posts": 0}),
        ],
        settle_s=180.0,
        end_s=600.0,
    )
    sections["soak"] = soak
    rows = build_rows(results)
    (held,) = [r for r in rows if r.figure == "worker state after the grace"]
    assert held.value == "dedup ids +1.0%, windows +0.0%, posts -"
    assert held.note.startswith("dedup ids 600,000 -> 606,000 (peak 606,000); windows 2,000")
    assert "from /stats every 10.0 s. State" in held.note
    soak.update(held_read_errors=2, held_last_error="IncompleteRead: 0 bytes")
    (held,) = [r for r in build_rows(results) if r.figure == "worker state after the grace"]
    assert "every 10.0 s (2 reads failed, the last: IncompleteRead: 0 bytes)" in held.note


def test_a_sampler_counts_a_failed_read_and_goes_on() -> None:
    reads = iter([1.0, RuntimeError("worker gone"), None, 2.0])

    def read() -> float | None:
        value = next(reads, None)
        if isinstance(value, Exception):
            raise value
        return value

    sampler = Sampler(read, 0.001, name="test-sampler")
    with sampler:
        deadline = time.monotonic() + 5
        while len(sampler.samples) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
    assert [value for _, value in sampler.samples] == [1.0, 2.0]
    assert sampler.errors == 1
    assert sampler.last_error == "RuntimeError: worker gone"
