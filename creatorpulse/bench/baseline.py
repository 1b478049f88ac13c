"""The textbook Faust baseline of ``creatorpulse bench``: one table update per event.

What a Faust user writes first for "per-creator totals in 60 s and 3600 s tumbling
windows": an agent that iterates the stream one record at a time and, for every event
and window size, reads the window's totals from a table and writes them back. Each
write is a changelog record, which is what makes this form slow (docs/design.md §5).

Which textbook form: a plain ``app.Table`` keyed by ``campaign:creator:size:start``,
with the window computed from the event's own ``ts``. Faust's windowed tables
(``.tumbling(60).relative_to_stream()``) are the other textbook form, but they take the
window from the *record* timestamp, which is wrong for the elements of a batch record,
and they expire windows on the wall clock (docs/design.md §3). The per-event cost is the
same: one table write (one changelog record) per event and window size.

No validation, dedup or ClickHouse: this is the cost of Faust's per-event table path
alone, a generous lower bar for the real worker. Runs as its own process::

    python -m creatorpulse.bench.baseline --bootstrap 127.0.0.1:9092 --topic t --expect N

and prints one JSON line on stdout when it has processed ``N`` events:
``{"events", "records", "seconds", "cpu_s", "rss_peak_mb", "table_writes"}``, measured
from the first event processed to the last one, changelog flushed (start-up excluded).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from schemas.metrics import METRICS
from streams.windows import DEFAULT_WINDOW_SIZES_S

#: The windows the real worker keeps by default (``CREATORPULSE_WINDOWS``).
WINDOW_SIZES_S = DEFAULT_WINDOW_SIZES_S


def window_keys(event: dict[str, Any], sizes: Sequence[int] = WINDOW_SIZES_S) -> list[str]:
    """Table keys of the tumbling windows an event (with epoch-ms ``ts``) falls in."""
    ts = int(event["ts"])
    prefix = f"{event['campaign_id']}:{event['creator_id']}"
    return [f"{prefix}:{size}:{ts - ts % (size * 1000)}" for size in sizes]


def add_counts(old: list[int] | None, event: dict[str, Any]) -> list[int]:
    """The window's totals after ``event`` (``old`` None: a new window)."""
    counts = [int(event.get(name, 0)) for name in METRICS]
    if old is None:
        return counts
    return [a + b for a, b in zip(old, counts)]


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker_faust_settings() -> dict[str, Any]:
    """The Faust settings ``streams.app.build_worker`` gives the worker's app, apart from
    its identity and placement (id, directories, web server): the baseline and the bare
    loop run with them, so no ratio credits the worker a setting they lack
    (tests/unit/creatorpulse/test_bench.py compares the two apps' settings)."""
    from streams.config import WorkerConfig

    defaults = WorkerConfig(kafka_bootstrap="unused")
    return {
        "broker_commit_interval": defaults.flush_interval_s,
        "broker_session_timeout": defaults.session_timeout_s,
        "broker_heartbeat_interval": defaults.session_timeout_s / 5,
        "producer_acks": -1,
        "producer_request_timeout": defaults.kafka_send_timeout_s,
        "stream_wait_empty": False,
        "consumer_max_fetch_size": 8 * 1024 * 1024,
        "stream_buffer_maxsize": defaults.max_batch,
    }


def build_app(
    bootstrap: str, topic_name: str, expect: int, app_id: str, partitions: int, bare: bool = False
) -> Any:
    """The textbook agent; with ``bare``, an agent that only iterates the stream (the
    per-record cost of Faust itself: the ceiling for single-event records)."""
    import faust
    import orjson

    from streams.faust_compat import use_prompt_fetches

    app = faust.App(
        app_id,
        broker=[f"kafka://{host}" for host in bootstrap.split(",")],
        store="memory://",
        web_enabled=False,
        topic_partitions=partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        logging_config=None,
        **worker_faust_settings(),
    )
    # The worker's fetch setting too, so the ratios do not credit it (streams.app).
    use_prompt_fetches(app)
    topic = app.topic(
        topic_name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    windows = app.Table("windows", default=lambda: None, partitions=partitions)
    progress: dict[str, Any] = {"events": 0, "records": 0, "writes": 0}

    @app.agent(topic)
    async def count(stream: Any) -> None:
        async for value in stream:
            if progress["records"] == 0:
                progress["t0"] = time.perf_counter()
                progress["cpu0"] = _cpu_s()
            progress["records"] += 1
            if bare:
                progress["events"] += 1
            else:
                data = orjson.loads(value)
                for event in data if isinstance(data, list) else (data,):
                    for key in window_keys(event):
                        windows[key] = add_counts(windows[key], event)
                        progress["writes"] += 1
                    progress["events"] += 1
            if progress["events"] >= expect and "done" not in progress:
                progress["done"] = True
                await app.producer.flush()  # the changelog is part of the work
                result = {
                    "events": progress["events"],
                    "records": progress["records"],
                    "seconds": time.perf_counter() - progress["t0"],
                    "cpu_s": _cpu_s() - progress["cpu0"],
                    "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                    "table_writes": progress["writes"],
                }
                sys.stdout.write(json.dumps(result) + "\n")
                sys.stdout.flush()
                # The Faust worker turns SIGTERM into a clean shutdown.
                os.kill(os.getpid(), signal.SIGTERM)

    _ = count
    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m creatorpulse.bench.baseline")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--expect", type=int, required=True, help="events to process")
    parser.add_argument("--app-id", default=None)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--bare", action="store_true", help="only iterate the stream (counts records as events)"
    )
    args = parser.parse_args(argv)
    import faust

    from creatorpulse.runtime import GIL_SWITCH_INTERVAL_S

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    app = build_app(
        args.bootstrap,
        args.topic,
        args.expect,
        args.app_id or f"bench-baseline-{uuid.uuid4().hex[:8]}",
        args.partitions,
        bare=args.bare,
    )
    # The interpreter setting creatorpulse's worker runs with: the comparison then shows
    # what the worker's code does differently, not a GIL setting any Faust app could use.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    worker = faust.Worker(
        app, loglevel="WARNING", quiet=True, redirect_stdouts=False, override_logging=False
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
