"""The data a benchmark run reads: simulated events, data sets on topics, publishing.

The generators are pure (a simulator in, records out); :func:`publish` and :func:`replay`
write them to a topic and measure the producer side while doing so.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from creatorpulse.bench.figures import rate
from creatorpulse.bench.machine import cpu_s
from creatorpulse.bench.options import BATCH_MAX_SPAN_MS, BenchError
from producers.simulator import CampaignSimulator, SimRecord, SimulationConfig
from schemas.events import EVENT_ADAPTER
from schemas.metrics import METRICS

TS_FIELD: Final = b'","kind":"delta","ts":'


def even_rate(events: int, span_s: float) -> float:
    """The event-time rate that spreads ``events`` over ``span_s`` seconds."""
    if events < 1 or span_s <= 0:
        raise ValueError("need events >= 1 and a positive span")
    return events / span_s


def restamp(value: bytes, old_ts: int, new_ts: int) -> bytes:
    """The event with ``"ts":old`` replaced by ``new`` (events the simulator made)."""
    old = b'"ts":%d,' % old_ts
    if old not in value:
        raise ValueError(f"no ts {old_ts} in {value[:80]!r}")
    return value.replace(old, b'"ts":%d,' % new_ts, 1)


def restamped(record: SimRecord, now_ms: int) -> SimRecord:
    """``record`` with its event time and record timestamp moved to ``now_ms`` (live data)."""
    return SimRecord(
        record.key, restamp(record.value, record.timestamp_ms, now_ms), now_ms, record.event
    )


def simulator(
    campaigns: int, creators_per_campaign: int, seed: int, run_id: str
) -> CampaignSimulator:
    return CampaignSimulator(
        SimulationConfig(
            seed=seed,
            campaigns=campaigns,
            creators_per_campaign=creators_per_campaign,
            mode="clickstream",
            run_id=run_id,
        )
    )


def campaigns_for(creators: int, per_campaign: int = 1_000) -> tuple[int, int]:
    """(campaigns, creators per campaign) for ``creators`` in all.

    The simulator's cast building grows faster than linearly with the creators of one
    campaign, so large counts are split into campaigns of ``per_campaign``.
    """
    if creators <= per_campaign:
        return 1, creators
    if creators % per_campaign:
        raise ValueError(f"{creators} creators is not a multiple of {per_campaign}")
    return creators // per_campaign, per_campaign


def coverage_records(
    sim: CampaignSimulator,
    start_ms: int,
    rate_per_s: float,
    events_per_creator: int,
    *,
    id_prefix: str,
    seed: int = 0,
) -> Iterator[SimRecord]:
    """``events_per_creator`` valid delta events for *every* creator of the simulator.

    :meth:`CampaignSimulator.events_at_rate` draws creators from 1,024 slots, so it
    cannot give each of 30k or 100k creators an event; memory and scaling need that.
    Creators take turns (round robin), event time runs from ``start_ms`` at
    ``rate_per_s``; counts follow each creator's simulated rates.
    """
    if rate_per_s <= 0 or events_per_creator < 1:
        raise ValueError("need a positive rate and at least one event per creator")
    rng = random.Random(f"{seed}:coverage")
    traits = sim.traits()
    keys: list[bytes] = []
    tails: list[bytes] = []
    for t in traits:
        views = rng.randint(1, 40)
        counts = (
            views,
            round(views * t.like_rate),
            round(views * t.comment_rate),
            round(views * t.share_rate),
            round(views * t.save_rate),
            round(views * t.watch_ms_per_view),
            round(views * t.completion_rate),
            round(views * t.replay_rate),
            round(views * t.ctr),
            0,
            0,
        )
        rest = {
            "campaign_id": t.campaign_id,
            "creator_id": t.creator_id,
            "post_id": f"{t.creator_id}-p1",
            **dict(zip(METRICS, counts, strict=True)),
        }
        keys.append(t.creator_id.encode())
        tails.append(b"," + orjson.dumps(rest)[1:])
    prefix = f'{{"event_id":"{id_prefix}-'.encode()
    step_ms = 1000.0 / rate_per_s
    n = len(traits)
    validate = EVENT_ADAPTER.validate_json
    for i in range(n * events_per_creator):
        c = i % n
        ts = start_ms + int(i * step_ms)
        value = b"".join((prefix, str(i).encode(), TS_FIELD, str(ts).encode(), tails[c]))
        yield SimRecord(keys[c], value, ts, validate(value))


def count_windows(records: Iterable[SimRecord], sizes_s: Sequence[int] = (60, 3600)) -> int:
    """Distinct (campaign, creator, size, window start) the events fall in."""
    windows: set[tuple[str, str, int, int]] = set()
    for record in records:
        event = record.event
        if event is None:
            continue
        for size in sizes_s:
            size_ms = size * 1000
            windows.add((event.campaign_id, event.creator_id, size, event.ts - event.ts % size_ms))
    return len(windows)


@dataclass
class Dataset:
    """A pre-loaded topic: what every consumer of a shape reads."""

    shape: str
    topic: str
    events: int
    records: int
    events_per_record: int
    creators: int
    span_s: float
    windows: int | None = None


def publisher_for(bootstrap: str, topic: str, events_per_record: int) -> Any:
    from producers.publisher import Publisher

    # Batch records of up to 100 events need a creator's events of about two minutes
    # at these data rates; the default 30 s bound would cut them to ~25. Two minutes
    # is a fifth of the grace period, so no event becomes late (Publisher docstring).
    if events_per_record > 1:
        return Publisher(
            bootstrap, topic, events_per_record=events_per_record, max_span_ms=BATCH_MAX_SPAN_MS
        )
    return Publisher(bootstrap, topic)


def publish(
    bootstrap: str, topic: str, records: Iterable[SimRecord], *, events_per_record: int
) -> dict[str, Any]:
    """Publish (generation included, if ``records`` is lazy); returns events/s and CPU."""
    cpu0, t0 = cpu_s(), time.perf_counter()
    with publisher_for(bootstrap, topic, events_per_record) as publisher:
        publisher.publish_many(records)
        publisher.flush()
    seconds, cpu = time.perf_counter() - t0, cpu_s() - cpu0
    stats = publisher.stats
    if stats.events_failed:
        raise BenchError(f"{stats.events_failed} events were not delivered to {topic}")
    return {
        "events": stats.events_sent,
        "records": stats.records_sent,
        "bytes": stats.bytes_sent,
        "seconds": seconds,
        "events_per_s": rate(stats.events_sent, seconds),
        "cpu_s": cpu,
        "cpu_s_per_event": cpu / stats.events_sent if stats.events_sent else None,
    }


def replay(bootstrap: str, topic: str, path: Path, events_per_record: int) -> dict[str, Any]:
    from producers.loops import replay_file

    cpu0 = cpu_s()
    with publisher_for(bootstrap, topic, events_per_record) as publisher:
        stats = replay_file(publisher, path, progress=False)
    cpu = cpu_s() - cpu0
    events = stats.publisher.events_sent
    return {
        "events": events,
        "records": stats.publisher.records_sent,
        "seconds": stats.elapsed_s,
        "events_per_s": rate(events, stats.elapsed_s),
        "cpu_s": cpu,
        "cpu_s_per_event": cpu / events if events else None,
    }


def take(source: Iterator[SimRecord], n: int) -> list[SimRecord]:
    """The next ``n`` records of ``source`` (fewer when it runs out)."""
    out = []
    for _ in range(max(0, n)):
        try:
            out.append(next(source))
        except StopIteration:
            break
    return out
