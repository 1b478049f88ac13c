"""The Kafka Streams section's pure parts: /proc parsing, its figures, ratios and rows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from creatorpulse.bench.kafka_streams import (
    KStreamsProcess,
    build_jar,
    comparison,
    jar_is_current,
    kstreams_figures,
    parse_proc_cpu_ticks,
    sources,
)
from creatorpulse.bench.options import BenchError, parse_args
from creatorpulse.bench.report import build_rows
from schemas.metrics import METRICS

# A /proc/<pid>/stat line whose command name holds ") " and spaces, as a thread name can.
STAT = "4242 (java (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 567 0 0 20 0 31 0 99 0 0"


def test_proc_stat_cpu_is_user_plus_system_ticks() -> None:
    assert parse_proc_cpu_ticks(STAT) == 1234 + 567
    assert parse_proc_cpu_ticks("") is None
    assert parse_proc_cpu_ticks("1 (x) S 1 2") is None


def test_own_proc_stat_grows_with_cpu_used() -> None:
    path = Path(f"/proc/{os.getpid()}/stat")
    if not path.exists():
        pytest.skip("no /proc")
    before = parse_proc_cpu_ticks(path.read_text())
    assert before is not None
    total = 0
    for i in range(3_000_000):  # well over a clock tick of CPU
        total += i * i
    after = parse_proc_cpu_ticks(path.read_text())
    assert after is not None
    assert after > before


def test_figures_divide_the_run_by_its_events() -> None:
    result = {
        "events": 20_000,
        "records": 200,
        "seconds": 0.5,
        "cpu_ticks_first": 300,
        "cpu_ticks_done": 350,
    }
    figures = kstreams_figures(result, ticks_per_s=100)
    assert figures["events_per_s"] == 40_000
    assert figures["cpu_s"] == pytest.approx(0.5)
    assert figures["cpu_s_per_event"] == pytest.approx(25e-6)
    assert kstreams_figures({**result, "cpu_ticks_first": -1}, 100)["cpu_s_per_event"] is None


def test_comparison_rates_against_ceiling_and_the_worker() -> None:
    kstreams = {"events_per_s": 50_000.0, "cpu_s_per_event": 10e-6}
    ceiling = {"events_per_s": 200_000.0, "cpu_s_per_event": 4e-6}
    worker = {"events_per_s": 75_000.0, "cpu_s_per_event": 8e-6}
    out = comparison(kstreams, ceiling, worker)
    assert out["vs_ceiling"] == pytest.approx(0.25)
    assert out["cpu_vs_ceiling"] == pytest.approx(2.5)
    assert out["worker_vs_kstreams"] == pytest.approx(1.5)
    assert out["worker_cpu_vs_kstreams"] == pytest.approx(0.8)
    assert comparison(kstreams, {}, {})["worker_vs_kstreams"] is None


def test_kstreams_rows_show_both_ratios() -> None:
    results = {
        "datasets": {"batch": {"events": 100_000, "records": 1_000, "creators": 260}},
        "sections": {
            "ceiling": {"batch": {"events_per_s": 200_000.0, "cpu_s_per_event": 4e-6}},
            "kstreams": {
                "batch": {
                    "events_per_s": 50_000.0,
                    "cpu_s_per_event": 10e-6,
                    "rows_out": 9_000,
                    "worker_vs_kstreams": 1.5,
                    "worker_cpu_vs_kstreams": 0.8,
                }
            },
        },
    }
    rows = build_rows(results)
    at = next(i for i, r in enumerate(rows) if r.section == "3 Kafka Streams, batch records")
    assert rows[at].value == "50,000 ev/s"
    assert rows[at].vs_ceiling == "0.250x"
    assert "creatorpulse: 1.50x its events/s, 0.800x its CPU/event" in rows[at].note
    assert rows[at + 1].figure == "CPU per event"
    assert rows[at + 1].vs_ceiling == "2.50x"


def test_kstreams_is_a_section_that_can_be_skipped() -> None:
    assert parse_args([]).runs("kstreams")
    options = parse_args(["--skip", "kstreams"])
    assert not options.runs("kstreams")
    assert options.runs("worker")


def test_a_jar_older_than_a_source_is_rebuilt(tmp_path: Path) -> None:
    java = tmp_path / "src" / "main" / "java" / "A.java"
    java.parent.mkdir(parents=True)
    (tmp_path / "pom.xml").write_text("<project/>")
    java.write_text("class A {}")
    jar = tmp_path / "target" / "a.jar"
    assert not jar_is_current(jar, tmp_path)
    jar.parent.mkdir()
    jar.write_bytes(b"jar")
    os.utime(jar, (2_000_000_000, 2_000_000_000))
    assert jar_is_current(jar, tmp_path)
    os.utime(java, (2_000_000_001, 2_000_000_001))
    assert not jar_is_current(jar, tmp_path)
    assert sources(tmp_path) == [tmp_path / "pom.xml", java]


def test_the_java_app_sums_the_same_metrics_in_the_same_order() -> None:
    java = next(path for path in sources() if path.name == "WindowTotals.java").read_text()
    start = java.index("METRICS = {")
    listed = java[start : java.index("};", start)]
    names = [part.strip().strip('"') for part in listed.split("{", 1)[1].split(",")]
    assert [name for name in names if name] == list(METRICS)


def test_without_maven_the_build_is_a_clear_bench_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pom.xml").write_text("<project/>")
    monkeypatch.setattr("creatorpulse.bench.kafka_streams.shutil.which", lambda name: None)
    with pytest.raises(BenchError, match="`mvn` was not found"):
        build_jar(tmp_path / "mvn.log", tmp_path)


def test_without_java_a_run_is_a_clear_bench_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("creatorpulse.bench.kafka_streams.shutil.which", lambda name: None)
    app = KStreamsProcess(tmp_path / "a.jar", "127.0.0.1:1", "in", "out", tmp_path, "ks")
    with pytest.raises(BenchError, match="`java` \\(17\\) is not installed"):
        app.start(expect=10)
