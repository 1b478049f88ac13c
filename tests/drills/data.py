"""What the drills publish: a normal campaign stream, and every poison input of issue 8.

Pure and seeded. A :class:`Stream` is the records to send, in order, with what the
independent oracle (``tests.support.oracle``) needs to judge them: the event-shaped elements in
publish order, and the dead letters each malformed record must make (by reason class, as
the contract states them). Lateness, future times, duplicates and the window bound are
left to the oracle, which sees the events in the order their partition does.

Event times are epoch ms around :data:`T0` (in the past of any machine running this), so
only the one event planted a year ahead of the wall clock is "in the future".
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from kafka.partitioner.default import murmur2

T0 = 1_795_338_000_000  # 2026-11-22T09:00:00Z, on an hour boundary
MINUTE = 60_000
#: Contract v1.1 bounds, written out again (the oracle does not import the pipeline).
MAX_COUNT = 2**53
MAX_BATCH_ELEMENTS = 10_000
MAX_DEAD_LETTERS_PER_RECORD = 100

Record = tuple[bytes | None, bytes | None]


def partition_of(creator_id: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as the producer applies it to the key."""
    return int(murmur2(creator_id.encode()) & 0x7FFFFFFF) % partitions


def reason_class(reason: str) -> str:
    """``late``, ``bad_json``, ``too_large``...; ``invalid: <field>`` for invalid ones."""
    head, _, rest = reason.partition(":")
    if head == "invalid":
        return f"invalid: {rest.strip().partition(':')[0]}"
    return head


def event(
    event_id: str, ts: int | str, creator: str, campaign: str, **fields: Any
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "ts": ts,
        "campaign_id": campaign,
        "creator_id": creator,
        "post_id": fields.pop("post_id", f"{creator}-post"),
        **fields,
    }


@dataclass(frozen=True)
class Part:
    """One record, the event-shaped elements in it, and the dead letters it must make."""

    record: Record
    events: tuple[dict[str, Any], ...] = ()
    planted: tuple[tuple[str, int], ...] = ()
    rekeyed: bool = False


@dataclass
class Stream:
    """Records in publish order, and what the oracle needs to judge them."""

    parts: list[Part] = field(default_factory=list)
    #: Event-shaped elements in publish order (duplicates, late and future ones too).
    events: list[dict[str, Any]] = field(default_factory=list)
    #: Dead letters malformed records must make, by reason class.
    planted: Counter[str] = field(default_factory=Counter)
    #: Ids of events in records not keyed by their creator (they travel the rekey topic).
    rekeyed_ids: set[str] = field(default_factory=set)
    malformed_records: int = 0
    #: Records planted as malformed or hostile (a flood's share), valid in shape or not.
    hostile_records: int = 0

    @property
    def records(self) -> list[Record]:
        return [part.record for part in self.parts]

    def append(self, part: Part) -> None:
        self.parts.append(part)
        self.events += part.events
        self.planted.update(dict(part.planted))
        if part.rekeyed:
            self.rekeyed_ids |= {e["event_id"] for e in part.events}
        if part.planted:
            self.malformed_records += 1

    def add(self, other: Stream) -> None:
        for part in other.parts:
            self.append(part)

    def keyed(self, events: list[dict[str, Any]]) -> None:
        """One record keyed by the creator: a single event, or a batch of one creator's."""
        value: Any = events[0] if len(events) == 1 else events
        self.append(Part((events[0]["creator_id"].encode(), orjson.dumps(value)), tuple(events)))

    def unkeyed(self, events: list[dict[str, Any]]) -> None:
        """One record with no key: its events are forwarded to their creators' partitions."""
        self.append(Part((None, orjson.dumps(events)), tuple(events), rekeyed=True))

    def malformed(self, key: bytes | None, value: bytes | None, **dead: int) -> None:
        """A record that is not (all) valid events; ``dead``: its dead letters by class
        (``invalid_views=2`` stands for ``invalid: views``)."""
        planted = tuple(
            (
                f"invalid: {name.removeprefix('invalid_')}"
                if name.startswith("invalid_")
                else name,
                n,
            )
            for name, n in dead.items()
        )
        self.append(Part((key, value), planted=planted))

    def parts_as_streams(self) -> list[Stream]:
        """One stream per record, in order (what :class:`LivePublisher` takes)."""
        out = []
        for part in self.parts:
            one = Stream()
            one.append(part)
            out.append(one)
        return out

    @property
    def elements(self) -> int:
        """Events published (valid in shape) plus malformed elements planted."""
        return len(self.events) + sum(self.planted.values())


class Campaign:
    """A normal stream: creators of a few campaigns posting deltas and snapshots.

    Event times grow with the stream, ``step_ms`` per event, each up to ``jitter_ms``
    early: on time as long as ``jitter_ms`` is under the grace period. About 5% of the
    events are sent twice (a producer retry); 30% of the records are batches.
    """

    def __init__(
        self,
        seed: int,
        *,
        creators: int = 40,
        campaigns: int = 3,
        start_ms: int = T0,
        step_ms: float = 20,
        jitter_ms: int = 30_000,
        prefix: str = "n",
    ) -> None:
        self.rng = random.Random(seed)
        self.creators = [f"{prefix}-creator-{i:03d}" for i in range(creators)]
        self.campaign_of = {
            c: f"{prefix}-campaign-{i % campaigns}" for i, c in enumerate(self.creators)
        }
        self.clock: float = start_ms
        self.step_ms = step_ms
        self.jitter_ms = jitter_ms
        self.prefix = prefix
        self.sent = 0
        self.post_totals: dict[str, int] = {}

    def next_event(self, creator: str | None = None, *, snapshots: bool = True) -> dict[str, Any]:
        """The next event; ``snapshots=False`` for events of records not keyed by their
        creator: those reach the creator's partition at no fixed place among its keyed
        records, and a snapshot's delta depends on what came before it."""
        rng = self.rng
        self.clock += self.step_ms
        self.sent += 1
        creator = creator or rng.choice(self.creators)
        ts = int(self.clock) - rng.randint(0, self.jitter_ms)
        eid = f"{self.prefix}-{self.sent}"
        campaign = self.campaign_of[creator]
        if snapshots and rng.random() < 0.3:
            post = f"{creator}-post-{rng.randint(1, 3)}"
            self.post_totals[post] = max(0, self.post_totals.get(post, 0) + rng.randint(-3, 40))
            return event(
                eid,
                ts,
                creator,
                campaign,
                kind="snapshot",
                post_id=post,
                views=self.post_totals[post],
                likes=self.post_totals[post] // 10,
            )
        return event(
            eid,
            ts,
            creator,
            campaign,
            views=rng.randint(0, 30),
            likes=rng.randint(0, 4),
            shares=rng.randint(0, 1),
            watch_time_ms=rng.randint(0, 90_000),
            clicks=rng.randint(0, 2),
            revenue_cents=rng.choice([0, 0, 0, 1_999]),
        )

    def records(self) -> Iterator[Stream]:
        """One record at a time (as a one-record :class:`Stream`), forever."""
        rng = self.rng
        while True:
            out = Stream()
            if rng.random() < 0.3:
                creator = rng.choice(self.creators)
                out.keyed([self.next_event(creator) for _ in range(rng.randint(2, 20))])
            else:
                ev = self.next_event()
                out.keyed([ev])
                if rng.random() < 0.05:
                    out.keyed([dict(ev)])  # a producer retry: the same event again
            yield out

    def take(self, events: int) -> Stream:
        """Records until at least ``events`` events are in them."""
        out = Stream()
        for one in self.records():
            out.add(one)
            if len(out.events) >= events:
                return out
        raise AssertionError("unreachable")


# -- issue 8's inputs, one builder each ---------------------------------------------------


def control_bytes_900k(key: bytes) -> Stream:
    """Finding 1: a default-sized record of invalid JSON whose dead letter escaped to 5.4 MB."""
    s = Stream()
    s.malformed(key, b"[" + b"\x01" * 900_000, bad_json=1)
    return s


def control_bytes_60k(key: bytes, count: int = 8) -> Stream:
    """Finding 1: dead letters of ~60 KB of control bytes sharing one changelog record."""
    s = Stream()
    for i in range(count):
        s.malformed(key, bytes([1 + i % 8]) * 60_000, bad_json=1)
    return s


def cyrillic_ids(count: int, start_ms: int, *, per_record: int = 500, tag: str = "") -> Stream:
    """Finding 1: valid events whose ids are 128 Cyrillic characters (the contract's maximum)."""
    s = Stream()
    letters = "абвгдеёжзийклмнопрстуфхцчшщъыьэюя"
    creators = [f"кириллица-{tag}{i}" for i in range(4)]
    for first in range(0, count, per_record):
        creator = creators[first // per_record % len(creators)]
        batch = []
        for n in range(first, min(count, first + per_record)):
            digits = "".join(letters[int(d)] for d in f"{n:06d}")
            event_id = (tag + digits + "я" * 128)[:128]
            batch.append(
                event(
                    event_id,
                    start_ms + n % 60_000,
                    creator,
                    "кампания-" + "ю" * 110,
                    post_id="пост-" + "ж" * 120,
                    views=1 + n % 7,
                    likes=n % 2,
                )
            )
        s.keyed(batch)
    return s


def bad_times(creator: str, campaign: str, now_ms: int, tag: str = "") -> Stream:
    """Findings 2 and 3: a year ahead of the clock (the oracle refuses it: future skew),
    the years 2200 and 9999, and ts 2^64 and 10^30 (the decoder refuses them)."""
    s = Stream()
    s.keyed([event(f"future{tag}", now_ms + 365 * 86_400_000, creator, campaign, views=5)])
    key = creator.encode()
    for name, ts in (("y2200", "2200-01-01T00:00:00Z"), ("y9999", 253_402_300_799_000)):
        s.malformed(
            key, orjson.dumps(event(f"{name}{tag}", ts, creator, campaign, views=1)), invalid_ts=1
        )
    for name, ts in (("2^64", 2**64), ("10^30", 10**30)):
        template = orjson.dumps(event(f"{name}{tag}", 0, creator, campaign, views=1))
        s.malformed(key, template.replace(b'"ts":0', b'"ts":%d' % ts), invalid_ts=1)
    return s


def one_window_at_the_cap(count: int, ts: int, tag: str = "") -> Stream:
    """Finding 4: ``count`` events at views 2^53 in one creator window (one fits)."""
    s = Stream()
    creator, campaign = f"cap-creator{tag}", f"cap-campaign{tag}"
    for i in range(count):
        s.keyed([event(f"cap{tag}-{i}", ts + i, creator, campaign, views=MAX_COUNT)])
    return s


def creators_at_the_cap(count: int, ts: int, tag: str = "") -> Stream:
    """Finding 4: ``count`` creators of one campaign at views 2^53 (the campaign sum wrapped)."""
    s = Stream()
    for i in range(count):
        creator = f"wide-creator{tag}-{i:02d}"
        s.keyed([event(f"wide{tag}-{i}", ts, creator, f"wide-campaign{tag}", views=MAX_COUNT)])
    return s


def zeros_400k(key: bytes) -> Stream:
    """Finding 6: ``[0,0,...]`` of 400 KB, 200,000 elements: one ``too_large`` dead letter."""
    s = Stream()
    s.malformed(key, b"[" + b",".join([b"0"] * 200_000) + b"]", too_large=1)
    return s


def classic_malformed(creator: str, campaign: str, ts: int, tag: str = "") -> Stream:
    """The contract's own cases: bad JSON, a negative counter, a missing field, a naive
    time, a single event over 64 KiB, no value, and a batch of 150 bad elements (at most
    100 dead letters per record)."""
    s = Stream()
    key = creator.encode()
    s.malformed(key, b"{not json", bad_json=1)
    s.malformed(
        key, orjson.dumps(event(f"neg{tag}", ts, creator, campaign, views=-5)), invalid_views=1
    )
    s.malformed(key, orjson.dumps({"event_id": f"missing{tag}", "ts": ts}), invalid_campaign_id=1)
    naive = event(f"naive{tag}", "2026-11-22T09:00:00", creator, campaign)
    s.malformed(key, orjson.dumps(naive), invalid_ts=1)
    big = event(f"big{tag}", ts, creator, campaign, padding="x" * 70_000)
    s.malformed(key, orjson.dumps(big), too_large=1)
    s.malformed(key, None, empty=1)
    bad = [event(f"bad{tag}-{i}", ts, creator, campaign, views=-1) for i in range(150)]
    s.malformed(key, orjson.dumps(bad), invalid_views=MAX_DEAD_LETTERS_PER_RECORD)
    return s


def late_events(
    creators: list[str], campaign_of: Callable[[str], str], ts: int, tag: str = ""
) -> Stream:
    """Events hours older than anything else (the oracle judges them late)."""
    s = Stream()
    for i, creator in enumerate(creators):
        s.keyed([event(f"late{tag}-{i}", ts, creator, campaign_of(creator), views=1_000)])
    return s


def every_poison(
    *, key_creator: str, campaign: str, ts: int, now_ms: int | None = None, tag: str = ""
) -> Stream:
    """Every malformed or hostile input of issue 8 except the backlog (a drill's shape)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    key = key_creator.encode()
    s = Stream()
    s.add(control_bytes_900k(key))
    s.add(control_bytes_60k(key))
    s.add(bad_times(key_creator, campaign, now_ms, tag))
    s.add(one_window_at_the_cap(200, ts, tag))
    s.add(creators_at_the_cap(30, ts, tag))
    s.add(zeros_400k(key))
    s.add(classic_malformed(key_creator, campaign, ts, tag))
    return s


def flood(good_records: int, seed: int, *, now_ms: int, share: float = 0.1) -> Stream:
    """``good_records`` normal records with ``share`` of malformed or hostile ones among
    them, every kind of :func:`every_poison` in turn (the two largest kinds less often:
    they are most of the bytes, not most of the cases)."""
    campaign = Campaign(seed, creators=200, step_ms=1, prefix=f"flood{seed}")
    rng = campaign.rng
    good = campaign.records()
    kinds: list[tuple[int, Callable[[str], Stream]]] = []

    def kind(weight: int) -> Callable[[Callable[[str], Stream]], Callable[[str], Stream]]:
        def register(build: Callable[[str], Stream]) -> Callable[[str], Stream]:
            kinds.append((weight, build))
            return build

        return register

    def target() -> str:
        return rng.choice(campaign.creators)

    ts = int(campaign.clock)

    @kind(1)
    def _big_control(tag: str) -> Stream:
        return control_bytes_900k(target().encode())

    @kind(1)
    def _zeros(tag: str) -> Stream:
        return zeros_400k(target().encode())

    @kind(10)
    def _control(tag: str) -> Stream:
        return control_bytes_60k(target().encode(), count=1)

    @kind(10)
    def _times(tag: str) -> Stream:
        creator = target()
        return bad_times(creator, campaign.campaign_of[creator], now_ms, tag)

    @kind(10)
    def _cap(tag: str) -> Stream:
        # One window at the cap: five events at 2^53 in one batch (one fits).
        s = Stream()
        creator, name = f"cap-creator{tag}", f"cap-campaign{tag}"
        s.keyed([event(f"cap{tag}-{i}", ts, creator, name, views=MAX_COUNT) for i in range(5)])
        return s

    @kind(10)
    def _wide(tag: str) -> Stream:
        # A creator at the cap, 20 a campaign: a campaign's sums stay inside UInt64.
        number = int(tag.removeprefix("-"))
        s = Stream()
        creator, name = f"wide-creator{tag}", f"wide-campaign-{number // 20}"
        s.keyed([event(f"wide{tag}", ts, creator, name, views=MAX_COUNT)])
        return s

    @kind(10)
    def _classic(tag: str) -> Stream:
        creator = target()
        return classic_malformed(creator, campaign.campaign_of[creator], ts, tag)

    @kind(10)
    def _cyrillic(tag: str) -> Stream:
        return cyrillic_ids(500, ts, tag=tag.removeprefix("-"))

    out = Stream()
    weights = [w for w, _ in kinds]
    builders = [b for _, b in kinds]
    planted_records = 0
    for n in range(good_records):
        out.add(next(good))
        while planted_records < (n + 1) * share / (1 - share):
            build = rng.choices(builders, weights)[0]
            for part in build(f"-{planted_records}").parts:
                out.append(part)
                planted_records += 1
        if n % 37 == 0:
            out.unkeyed([campaign.next_event(snapshots=False) for _ in range(3)])
    out.hostile_records = planted_records
    return out
