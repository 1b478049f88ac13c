"""What a run shows: the table's rows (pure), the rendered table and the JSON file.

Progress goes to stderr through :data:`console`; the table goes to stdout.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.table import Table

from creatorpulse.bench.figures import ratio
from creatorpulse.bench.options import SHAPES

#: Progress and errors (stderr), apart from the table (stdout).
console = Console(stderr=True)


def fmt_ratio(value: float | None) -> str:
    """``0.081x``, ``1.9x``, ``14x``: three significant figures at most, '-' if unknown."""
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}x"
    if value >= 10:
        return f"{value:.1f}x"
    if value >= 1:
        return f"{value:.2f}x"
    return f"{value:#.3g}x"


def fmt_number(value: float | None, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "-"
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}" if unit else text


def fmt_us(seconds_per_event: float | None) -> str:
    """CPU seconds per event, shown in microseconds (the JSON keeps seconds)."""
    if seconds_per_event is None:
        return "-"
    us = seconds_per_event * 1e6
    return f"{us:,.1f} us" if us < 100 else f"{us:,.0f} us"


@dataclass(frozen=True)
class Row:
    section: str
    figure: str
    value: str
    vs_ceiling: str = ""
    vs_baseline: str = ""
    note: str = ""


def _get(data: Mapping[str, Any], *path: str) -> Any:
    node: Any = data
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


SHAPE_LABEL: Final = {"single": "single-event records", "batch": "batch records"}


def fmt_passes(passes: Any) -> str:
    """How many passes a figure is the median of, with each pass's events/s."""
    values = [v for v in (passes or []) if v is not None]
    if not values:
        return ""
    if len(values) == 1:
        return f"one pass ({fmt_number(values[0])} ev/s), not a median"
    return "median of " + ", ".join(fmt_number(v) for v in values) + " ev/s"


def _with_passes(note: str, figures: Mapping[str, Any]) -> str:
    passes = fmt_passes(figures.get("passes"))
    return f"{note}; {passes}" if passes else note


def _cost_rows(
    section: str,
    figure: str,
    figures: Mapping[str, Any],
    ceiling: Mapping[str, Any],
    baseline: Mapping[str, Any],
    note: str,
) -> list[Row]:
    """Throughput and CPU per event, each with its ratio to the ceiling and the baseline.

    A ratio above 1 means faster (throughput) or costlier (CPU) than the reference.
    """
    speed, cpu = figures.get("events_per_s"), figures.get("cpu_s_per_event")
    return [
        Row(
            section,
            figure,
            fmt_number(speed, "ev/s"),
            fmt_ratio(ratio(speed, ceiling.get("events_per_s"))),
            fmt_ratio(ratio(speed, baseline.get("events_per_s"))),
            note,
        ),
        Row(
            "",
            "CPU per event",
            fmt_us(cpu),
            fmt_ratio(ratio(cpu, ceiling.get("cpu_s_per_event"))),
            fmt_ratio(ratio(cpu, baseline.get("cpu_s_per_event"))),
        ),
    ]


def _shape_rows(results: Mapping[str, Any], shape: str) -> list[Row]:
    data = _get(results, "datasets", shape)
    if not data:
        return []
    label = SHAPE_LABEL[shape]
    ceiling = _get(results, "sections", "ceiling", shape) or {}
    baseline = _get(results, "sections", "baseline", shape) or {}
    worker = _get(results, "sections", "worker", shape) or {}
    rows: list[Row] = []
    if ceiling:
        per_record = data["events"] / data["records"] if data.get("records") else 0
        note = f"{data['events']:,} events, {per_record:.1f}/record, {data['creators']:,} creators"
        rows += _cost_rows(
            f"1 ceiling, {label}",
            "aiokafka + orjson",
            ceiling,
            ceiling,
            baseline,
            _with_passes(note, ceiling),
        )
    if baseline:
        note = f"first {baseline['events']:,} events, {baseline.get('table_writes', 0):,} writes"
        rows += _cost_rows(
            f"2 baseline, {label}",
            "Faust, table write/event/window",
            baseline,
            ceiling,
            baseline,
            note,
        )
    bare = _get(results, "sections", "bare_loop", shape) or {}
    if bare:
        rows += _cost_rows(
            f"2 bare Faust loop, {label}",
            "agent iterating, no work",
            bare,
            ceiling,
            baseline,
            _with_passes(
                f"every record: {bare.get('records') or 0:,} records, {bare['events']:,} events",
                bare,
            ),
        )
    if worker:
        note = (
            f"{worker.get('rows_written') or 0:,} rows written, "
            f"peak RSS {fmt_number(worker.get('rss_peak_mb'), 'MB')}"
        )
        share = ratio(worker.get("events_per_s"), bare.get("events_per_s"))
        if share is not None:
            note += f"; {share * 100:.0f}% of the bare Faust loop"
        note = _with_passes(note, worker)
        rows += _cost_rows(
            f"3 creatorpulse, {label}",
            "read -> all windows in ClickHouse",
            worker,
            ceiling,
            baseline,
            note,
        )
    rows += _kstreams_rows(results, shape, ceiling, baseline)
    return rows


def _kstreams_rows(
    results: Mapping[str, Any],
    shape: str,
    ceiling: Mapping[str, Any],
    baseline: Mapping[str, Any],
) -> list[Row]:
    """Kafka Streams on the same topic, and creatorpulse's ratios to it."""
    kstreams = _get(results, "sections", "kstreams", shape) or {}
    if not kstreams:
        return []
    note = (
        f"{kstreams.get('rows_out') or 0:,} rows out, peak RSS "
        f"{fmt_number(kstreams.get('rss_peak_mb'), 'MB')}; creatorpulse: "
        f"{fmt_ratio(kstreams.get('worker_vs_kstreams'))} its events/s, "
        f"{fmt_ratio(kstreams.get('worker_cpu_vs_kstreams'))} its CPU/event"
    )
    return _cost_rows(
        f"3 Kafka Streams, {SHAPE_LABEL[shape]}",
        "1 thread, at-least-once, 1 s commits",
        kstreams,
        ceiling,
        baseline,
        note,
    )


def _producer_rows(results: Mapping[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for shape in SHAPES:
        for kind, figure in (("simulator", "simulator -> Kafka"), ("replay", "JSONL replay")):
            figures = _get(results, "sections", "producers", shape, kind)
            if figures:
                note = (
                    f"kafka-python, {figures.get('records', 0):,} records, "
                    f"CPU {fmt_us(figures.get('cpu_s_per_event'))}/event"
                )
                section = f"4 producers, {SHAPE_LABEL[shape]}" if kind == "simulator" else ""
                speed = fmt_number(figures.get("events_per_s"), "ev/s")
                rows.append(Row(section, figure, speed, note=note))
    return rows


def _latency_rows(latency: Mapping[str, Any] | None) -> list[Row]:
    rows: list[Row] = []
    for shape in SHAPES:
        run = (latency or {}).get(shape)
        if not run:
            continue
        ms = run.get("latency_ms") or {}
        note = (
            f"{fmt_number(run.get('achieved_rate'), 'ev/s')} for {run.get('seconds', 0):.0f} s "
            f"in {run.get('records') or 0:,} records; {ms.get('count') or 0:,} most recent "
            "samples"
        )
        drain = run.get("drain_s")
        drained = f"last row written {fmt_number(drain, 's', 1)} after the last publish"
        rows += [
            Row(
                f"5 latency, {SHAPE_LABEL[shape]}",
                "publish -> row written, p50",
                fmt_number(ms.get("p50"), "ms"),
                note=note,
            ),
            Row("", "p95", fmt_number(ms.get("p95"), "ms"), note=drained),
            Row("", "p99", fmt_number(ms.get("p99"), "ms")),
        ]
    return rows


def _memory_rows(memory: Mapping[str, Any] | None) -> list[Row]:
    if not memory:
        return []

    def note(run: Mapping[str, Any]) -> str:
        return (
            f"{fmt_number(run.get('rss_start_mb'), 'MB')} before the first record, "
            f"{fmt_number(run.get('kb_per_window'), 'KB', 2)} per window"
        )

    section = (
        f"6 memory, {memory.get('creators_per_campaign', 0):,} creators x "
        f"{memory.get('campaigns', 0)} campaigns"
    )
    rows = [
        Row(
            section,
            "worker peak RSS, chDB in the worker",
            fmt_number(memory.get("rss_peak_mb"), "MB"),
            note=f"{memory.get('windows') or 0:,} open windows; {note(memory)}",
        )
    ]
    topic_mode = memory.get("sink_topic")
    if topic_mode:
        rows.append(
            Row(
                "",
                "worker peak RSS, --sink topic",
                fmt_number(topic_mode.get("rss_peak_mb"), "MB"),
                note=(
                    f"{note(topic_mode)}; the sink process: "
                    f"{fmt_number(topic_mode.get('sink_rss_peak_mb'), 'MB')}"
                ),
            )
        )
    return rows


def _scaling_rows(scaling: Mapping[str, Any] | None) -> list[Row]:
    """CPU per event is the figure: short runs' events/s are bound by the flush interval."""
    rows: list[Row] = []
    for axis, label in (("creators", "creators"), ("events_per_creator", "events/creator")):
        points = (scaling or {}).get(axis) or []
        for i, point in enumerate(points):
            cost = point.get("cpu_s_per_event")
            growth = fmt_ratio(ratio(cost, points[0].get("cpu_s_per_event")))
            note = (
                f"{growth} the first; {fmt_number(point.get('events_per_s'), 'ev/s')}, "
                f"peak RSS {fmt_number(point.get('rss_peak_mb'), 'MB')}, "
                f"{point.get('windows') or 0:,} windows"
            )
            rows.append(
                Row(
                    f"7 scaling by {label}" if i == 0 else "",
                    f"CPU/event, {point['creators']:,} creators x {point['events_per_creator']:,}",
                    fmt_us(cost),
                    note=note,
                )
            )
    return rows


def fmt_pct(value: float | None) -> str:
    """``+4.2%``, ``-0.8%``: a signed share, '-' if unknown."""
    return "-" if value is None else f"{value:+.1f}%"


def _alert_rows(alerts: Mapping[str, Any] | None) -> list[Row]:
    """Batch throughput with the alert stage on and off, medians of the same run's passes.

    The cost rows are signed: positive is what alert evaluation costs (throughput lost,
    CPU per event added); a negative figure is within the noise of a shared machine.
    """
    if not alerts:
        return []
    on, off = alerts.get("on") or {}, alerts.get("off") or {}

    def passes(side: Mapping[str, Any]) -> str:
        return fmt_passes(side.get("passes"))

    section = f"8 alerts, {SHAPE_LABEL['batch']}"
    caught_up = on.get("stage_caught_up_s")
    stage_note = (
        f"; the stage caught up {fmt_number(caught_up, 's', 1)} after the worker settled"
        if caught_up is not None
        else ""
    )
    evaluations = on.get("evaluations")
    if evaluations is not None:
        stage_note += f"; {fmt_number(evaluations)} evaluations per run"
    return [
        Row(
            section,
            "worker, alert evaluation on",
            fmt_number(on.get("events_per_s"), "ev/s"),
            note=f"{passes(on)}, CPU {fmt_us(on.get('cpu_s_per_event'))}/event{stage_note}",
        ),
        Row(
            "",
            "worker, alert evaluation off",
            fmt_number(off.get("events_per_s"), "ev/s"),
            note=f"{passes(off)}, CPU {fmt_us(off.get('cpu_s_per_event'))}/event; "
            "CREATORPULSE_ALERTS=0",
        ),
        Row(
            "",
            "cost of alerts, throughput",
            fmt_pct(alerts.get("throughput_cost_pct")),
            note="throughput lost with the stage on (issue 10 aims under 10%)",
        ),
        Row(
            "",
            "cost of alerts, CPU per event",
            fmt_pct(alerts.get("cpu_cost_pct")),
            note="CPU per event added with the stage on",
        ),
    ]


def _soak_rows(soak: Mapping[str, Any] | None) -> list[Row]:
    """The soak's memory verdict: the worker's RSS slope once its grace has passed."""
    if not soak:
        return []
    slope = soak.get("slope_mb_per_min")
    later = soak.get("later_half_slope_mb_per_min")
    sink = soak.get("sink") or {}
    section = (
        f"9 soak, {fmt_number(soak.get('rate'))} ev/s for {fmt_number(soak.get('seconds'), 's')}"
    )
    return [
        Row(
            section,
            "worker RSS slope after the grace",
            "-" if slope is None else f"{slope:+.2f} MB/min",
            note=(
                f"{soak.get('verdict', '?')} (tolerance +/-{soak.get('tolerance_mb_per_min')} "
                f"MB/min); least squares over {soak.get('settled_samples', 0)} samples from "
                f"{fmt_number(soak.get('settle_s'), 's')} (grace {soak.get('grace_s')} s + the "
                f"60 s window) to the end; over its later half "
                f"{'-' if later is None else f'{later:+.2f} MB/min'} (a leak "
                f"grows alike in both halves); {soak.get('creators') or 0:,} creators, windows "
                f"{soak.get('windows')}, --sink topic"
            ),
        ),
        Row(
            "",
            "worker peak RSS",
            fmt_number(soak.get("rss_peak_mb"), "MB"),
            note=(
                f"sampled every {soak.get('sample_interval_s')} s; VmHWM "
                f"{fmt_number(soak.get('vm_hwm_mb'), 'MB')}; the sink process: peak "
                f"{fmt_number(sink.get('rss_peak_mb'), 'MB')}, slope "
                f"{fmt_number(sink.get('slope_mb_per_min'), 'MB/min', 2)}"
            ),
        ),
        *_held_rows(soak),
    ]


#: How /stats names what the worker holds, as the soak's table says it.
HELD_LABEL: Final = {"dedup_ids": "dedup ids", "windows": "windows", "posts": "posts"}


def _held_rows(soak: Mapping[str, Any]) -> list[Row]:
    """What the worker held over the settled part of the soak, beside its RSS slope."""
    held = soak.get("held") or {}
    if not held:
        return []

    def change(figures: Mapping[str, Any]) -> str:
        pct = figures.get("change_pct")
        return "-" if pct is None else f"{pct:+.1f}%"

    names = [name for name in HELD_LABEL if name in held]
    return [
        Row(
            "",
            "worker state after the grace",
            ", ".join(f"{HELD_LABEL[name]} {change(held[name])}" for name in names),
            note=(
                "; ".join(
                    f"{HELD_LABEL[name]} {held[name]['settled_start']:,} -> "
                    f"{held[name]['end']:,} (peak {held[name]['peak']:,})"
                    for name in names
                )
                + f"; from /stats every {soak.get('held_sample_interval_s')} s"
                + (
                    f" ({soak['held_read_errors']} reads failed, the last: "
                    f"{soak.get('held_last_error')})"
                    if soak.get("held_read_errors")
                    else ""
                )
                + ". State that levels off while RSS grows is the allocator's, not held by "
                "the worker"
            ),
        )
    ]


def build_rows(results: Mapping[str, Any]) -> list[Row]:
    """The table's rows from the results dict (what ``sections.run_benchmark`` returns)."""
    rows: list[Row] = []
    for shape in SHAPES:
        rows += _shape_rows(results, shape)
    sections = results.get("sections") or {}
    rows += _producer_rows(results)
    rows += _latency_rows(sections.get("latency"))
    rows += _memory_rows(sections.get("memory"))
    rows += _scaling_rows(sections.get("scaling"))
    rows += _alert_rows(sections.get("alerts"))
    rows += _soak_rows(sections.get("soak"))
    return rows


def machine_caption(results: Mapping[str, Any]) -> str:
    machine = results.get("machine", {})
    broker = results.get("broker", {})
    return (
        f"{machine.get('nproc', '?')} CPU(s) {machine.get('cpu_model', '?')}, "
        f"{machine.get('ram_gb', '?')} GB RAM, Python {machine.get('python', '?')}, "
        f"broker {broker.get('flavour', '?')} {broker.get('version', '')}, "
        f"load average at start {machine.get('loadavg_1m_at_start', '?')}"
    )


def render_table(results: Mapping[str, Any]) -> Table:
    table = Table(
        title="creatorpulse bench",
        caption=machine_caption(results),
        show_lines=False,
    )
    table.add_column("section")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("vs ceiling", justify="right")
    table.add_column("vs baseline", justify="right")
    table.add_column("note")
    previous = None
    for row in build_rows(results):
        if row.section and previous is not None:
            table.add_section()
        table.add_row(row.section, row.figure, row.value, row.vs_ceiling, row.vs_baseline, row.note)
        previous = row
    return table


def default_out_path(now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return Path("bench-results") / f"bench-{stamp}.json"


def jsonable(value: Any) -> Any:
    """``value`` with sets sorted into lists and paths as strings, for ``json.dumps``."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [jsonable(v) for v in value]
        return sorted(items) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, Path):
        return str(value)
    return value


def write_results(results: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(dict(results)), indent=2, default=str) + "\n")
