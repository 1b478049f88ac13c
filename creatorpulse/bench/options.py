"""What a benchmark run does: its flags (:class:`BenchOptions`) and the settings every run uses.

The fixed settings are the worker's defaults, set explicitly so that a user's environment
cannot change the run, and the shapes of the data the sections measure.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

APACHE_KAFKA: Final = "apache-kafka"
EMBEDDED: Final = "embedded"
SHAPES: Final = ("single", "batch")
SECTIONS: Final = (
    "producers",
    "ceiling",
    "baseline",
    "worker",
    # Kafka Streams over the same topics (creatorpulse.bench.kafka_streams): Java and Maven
    "kstreams",
    "latency",
    "memory",
    "scaling",
    "alerts",
    "soak",
)
PARTITIONS: Final = 4
#: The worker's defaults, set explicitly so a user's environment cannot change the run.
WINDOWS: Final = "60,3600"
GRACE_S: Final = 600
FLUSH_INTERVAL_S: Final = 1.0
# Data spread over this much event time: longer than the 600 s grace, so the earliest
# 60 s windows close while the worker reads (closing is part of the cost).
THROUGHPUT_SPAN_S: Final = 900.0
# Memory and scaling data fits inside the grace period: every window stays open, so the
# state is creators x windows, which is what those sections measure.
LIVE_SPAN_S: Final = 300.0
BATCH_MAX_SPAN_MS: Final = 120_000
#: Passes of the ceiling, bare-loop and worker runs per record shape, and of each side
#: of the alerts section: each figure is the median of its passes (``--passes``; see
#: figures.median_of_passes).
PASSES: Final = 3
#: Soak: a worker grace shorter than the run, so that windows close and dedup ids
#: expire inside it; the RSS slope is taken once the grace and the smallest window have
#: passed (see soak_settle_s), over this fixed set of creators (campaigns x creators).
SOAK_GRACE_S: Final = 120
SOAK_CAMPAIGNS: Final = 10
SOAK_CREATORS_PER_CAMPAIGN: Final = 100
SOAK_SAMPLE_S: Final = 2.0
# How often the soak reads what the worker holds (/stats "held"); rarer than RSS, since
# each read is an HTTP request to the worker under test.
SOAK_HELD_SAMPLE_S: Final = 10.0
#: |slope| at or under this many MB per minute is flat: a leak of a few bytes per event
#: at the soak's rate (5,000 events/s is 300,000 a minute) would exceed it.
SOAK_TOLERANCE_MB_PER_MIN: Final = 1.0
#: Fewer settled seconds than this, or fewer samples, give no verdict.
SOAK_MIN_SETTLED_S: Final = 60.0
SOAK_MIN_SAMPLES: Final = 5
#: Latency: how often the paced publisher sends, per record shape. Batch records hold
#: one creator's events of one slice, as a poller would publish one poll's results.
LATENCY_SLICE_S: Final = {"batch": 0.25, "single": 0.05}
# /stats polls: often while waiting for the first record (CPU before it is start-up),
# less often afterwards (each poll costs the worker a little).
POLL_STARTUP_S: Final = 0.1
POLL_RUNNING_S: Final = 0.25


class BenchError(RuntimeError):
    """A benchmark step that cannot go on; the message says what to do."""


@dataclass(frozen=True)
class BenchOptions:
    """What to run. Every field is a flag of ``creatorpulse bench`` (see :func:`parse_args`)."""

    broker: str = APACHE_KAFKA
    #: events of the batch-record shape (100 events per record): about 10 s of work, so
    #: the last flush interval and ClickHouse write are a small part of the figure
    events: int = 1_000_000
    #: events of the single-event shape (kafka-python is ~15-20k records/s, so fewer)
    single_events: int = 100_000
    events_per_record: int = 100
    #: the textbook baseline reads only this prefix of each topic (it is ~1k events/s)
    baseline_events: int = 20_000
    latency_seconds: float = 30.0
    latency_rate: int = 5_000
    #: memory: creators per campaign x campaigns, events per creator
    memory_creators: int = 10_000
    memory_campaigns: int = 3
    memory_events_per_creator: int = 2
    #: scaling: creator counts (same event count, the largest of them), and events per
    #: creator at the smallest creator count
    scaling_creators: tuple[int, ...] = (1_000, 10_000, 100_000)
    scaling_events_per_creator: tuple[int, ...] = (1, 10, 100)
    #: passes of each throughput figure; the figure is their median
    passes: int = PASSES
    #: soak: seconds of steady publishing, the soak worker's grace, events/s
    soak_s: float = 600.0
    soak_grace_s: int = SOAK_GRACE_S
    soak_rate: int = 5_000
    skip: frozenset[str] = frozenset()
    out: Path | None = None
    seed: int = 7
    quick: bool = False
    keep_work_dir: bool = False

    def __post_init__(self) -> None:
        if self.broker not in (APACHE_KAFKA, EMBEDDED):
            raise ValueError(f"broker must be {APACHE_KAFKA!r} or {EMBEDDED!r}")
        for name in ("events", "single_events", "events_per_record", "baseline_events"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.latency_seconds <= 0 or self.latency_rate <= 0:
            raise ValueError("latency seconds and rate must be > 0")
        if self.passes < 1:
            raise ValueError("passes must be >= 1")
        if self.soak_s <= 0 or self.soak_rate <= 0 or self.soak_grace_s < 0:
            raise ValueError("soak seconds and rate must be > 0, its grace >= 0")
        if min(self.scaling_creators, default=1) < 1:
            raise ValueError("scaling creator counts must be >= 1")
        if min(self.scaling_events_per_creator, default=1) < 1:
            raise ValueError("events per creator must be >= 1")
        unknown = set(self.skip) - set(SECTIONS) - set(SHAPES)
        if unknown:
            raise ValueError(f"unknown section(s) to skip: {', '.join(sorted(unknown))}")

    def runs(self, section: str) -> bool:
        return section not in self.skip

    @property
    def soak_settle_s(self) -> float:
        """Seconds into the soak after which its RSS slope counts: the grace, then the
        smallest window, so the first windows have closed and the first dedup ids have
        expired (state has begun leaving as well as arriving)."""
        smallest = min(int(size) for size in WINDOWS.split(","))
        return float(self.soak_grace_s + smallest)


QUICK: Final = {
    "events": 20_000,
    "single_events": 5_000,
    "baseline_events": 2_000,
    "latency_seconds": 6.0,
    "latency_rate": 1_000,
    "memory_creators": 1_000,
    "scaling_creators": (100, 1_000),
    "scaling_events_per_creator": (1, 10),
    "passes": 1,
    "soak_s": 90.0,
    "soak_grace_s": 10,
    "soak_rate": 1_000,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="creatorpulse bench",
        description=(
            "Benchmark the creatorpulse worker against the raw-consume ceiling and a "
            "textbook Faust agent, on one broker and the same data; prints a table and "
            "writes JSON. Real Apache Kafka by default (needs Java 17 and Maven)."
        ),
    )
    parser.add_argument(
        "--broker",
        choices=(APACHE_KAFKA, EMBEDDED),
        default=APACHE_KAFKA,
        help="apache-kafka (default: fetched with Maven, run with Java) or embedded (tansu)",
    )
    defaults, quick = BenchOptions(), QUICK

    def sized(name: str, text: str) -> str:
        return f"{text} (default {getattr(defaults, name):,}; --quick {quick[name]:,})"

    parser.add_argument(
        "--events", type=int, default=None, help=sized("events", "events in batch records")
    )
    parser.add_argument(
        "--single-events",
        type=int,
        default=None,
        help=sized("single_events", "events in single-event records (else --events / 4)"),
    )
    parser.add_argument(
        "--baseline-events",
        type=int,
        default=None,
        help=sized("baseline_events", "events the slow textbook Faust baseline reads per shape"),
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=None,
        help=sized("latency_seconds", "seconds of steady publishing for the latency figure"),
    )
    parser.add_argument(
        "--latency-rate",
        type=int,
        default=None,
        help=sized("latency_rate", "events/s for the latency figure"),
    )
    parser.add_argument(
        "--passes",
        type=int,
        default=None,
        help=sized(
            "passes", "passes of each ceiling, bare-loop, worker and alerts figure (median)"
        ),
    )
    parser.add_argument(
        "--soak-s",
        type=float,
        default=None,
        help=sized("soak_s", "seconds the soak publishes at a steady rate"),
    )
    parser.add_argument(
        "--soak-grace-s",
        type=int,
        default=None,
        help=sized("soak_grace_s", "the soak worker's grace; the RSS slope starts after it + 60 s"),
    )
    parser.add_argument(
        "--soak-rate",
        type=int,
        default=None,
        help=sized("soak_rate", "events/s of the soak, in batch records"),
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON results (default: bench-results/bench-<timestamp>.json)",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=(*SECTIONS, *SHAPES),
        help="leave out a section or a record shape (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--keep-work-dir", action="store_true", help="keep worker logs and chDB stores"
    )
    return parser


def parse_args(argv: Sequence[str] | None) -> BenchOptions:
    """Options from the command line; argparse exits (SystemExit) on --help or bad flags."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    sizes: dict[str, Any] = dict(QUICK) if args.quick else {}
    if args.events is not None:
        sizes["events"] = args.events
        # Single-event records cost ~4x more per event everywhere: a quarter keeps the
        # two shapes' run times alike.
        sizes["single_events"] = max(1, args.events // 4)
    for name in (
        "single_events",
        "baseline_events",
        "latency_seconds",
        "latency_rate",
        "passes",
        "soak_s",
        "soak_grace_s",
        "soak_rate",
    ):
        value = getattr(args, name)
        if value is not None:
            sizes[name] = value
    return BenchOptions(
        broker=args.broker,
        skip=frozenset(args.skip),
        out=args.out,
        seed=args.seed,
        quick=args.quick,
        keep_work_dir=args.keep_work_dir,
        **sizes,
    )
