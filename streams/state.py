"""The state of one partition and the rules that keep its totals exact: pure, no Faust.

One :class:`PartitionState` holds everything a partition's events change: the
watermark, the event ids seen within the grace period (dedup), the highest lifetime
totals per post (snapshot -> delta), and the open windows' totals. It is a
deterministic function of the partition's records in offset order, which is what makes
replays exact.

Durability (DESIGN.md §4) without Kafka transactions: :meth:`PartitionState.flush`
returns the changelog records to write, in an order that matters —

1. the changed windows and posts, each carrying the source offsets they include;
2. dedup and dead-letter segments (what is new since the last flush);
3. last, a checkpoint: the offsets applied and the watermark after them.

Kafka keeps one partition's records in order, so a durable checkpoint means every
record before it is durable too. :meth:`PartitionState.restore` rebuilds the state
from the changelog: records after the checkpoint's offsets are replayed; a window or
post written by a flush whose checkpoint was lost is *ahead* and skips the replayed
records it already holds; segments from such a flush are dropped, because the replay
rebuilds them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce
from math import gcd
from operator import add, attrgetter
from typing import Any
from zlib import crc32

import orjson

from schemas.events import METRICS, DecodedEvent
from schemas.rows import CreatorWindowRow, DeadLetter, dead_letter_fields
from streams.windows import Watermark, is_closed, window_end_ms, window_start_ms

WindowKey = tuple[str, str, int, int]  # campaign_id, creator_id, window_size_s, window_start_ms
PostKey = tuple[str, str, str]  # campaign_id, creator_id, post_id
Offsets = dict[str, int]  # source topic -> offset of the last record applied
ChangelogRecord = tuple[bytes, bytes | None]  # key, value (None deletes the key)

ZERO: tuple[int, ...] = (0,) * len(METRICS)
#: Windows (per size and start) and post totals are written to the changelog in
#: chunks of creators, so a flush sends a few hundred records, not one per window.
CHUNKS = 64
#: Kafka refuses records over ~1 MB by default: dedup ids and dead letters from one
#: flush are split into pieces well under that.
IDS_PER_PIECE = 5_000
DEAD_LETTERS_PER_PIECE = 8  # each payload is at most MAX_DEAD_LETTER_PAYLOAD bytes
#: An event's counters as a tuple in METRICS order, in one C call.
_counts: Any = attrgetter(*METRICS)


@dataclass(slots=True)
class RecordOutcome:
    """What happened to the events of one record."""

    counted: int = 0
    duplicates: int = 0
    late: list[int] = field(default_factory=list)  # indexes of late events in the record
    skipped: bool = False  # the whole record was applied before the checkpoint


@dataclass(slots=True)
class Flush:
    """The output of one flush: changelog records to write, then rows for ClickHouse."""

    seq: int
    changelog: list[ChangelogRecord]
    rows: list[CreatorWindowRow]
    dead_letters: list[DeadLetter]
    dead_letter_keys: list[bytes]  # delete these once the dead letters are in ClickHouse


def changelog_key(partition: int, *parts: Any) -> bytes:
    return orjson.dumps([partition, *parts])


def changelog_partition(key: bytes) -> int:
    """The partition a changelog key belongs to (its first element)."""
    return int(orjson.loads(key)[0])


def _ahead(offsets: Mapping[str, int], checkpoint: Mapping[str, int]) -> bool:
    return any(offset > checkpoint.get(topic, -1) for topic, offset in offsets.items())


def _dead_letter_json(dead: DeadLetter) -> dict[str, Any]:
    # Epoch seconds in the changelog (its format predates the topic's RFC 3339 text).
    return {**dead_letter_fields(dead), "received_at": dead.received_at.timestamp()}


def _dead_letter_from_json(data: Mapping[str, Any]) -> DeadLetter:
    from datetime import UTC, datetime

    return DeadLetter(
        received_at=datetime.fromtimestamp(data["received_at"], UTC),
        topic=data["topic"],
        partition=data["partition"],
        offset=data["offset"],
        idx=data["idx"],
        reason=data["reason"],
        payload=data["payload"].encode(),
        # Absent in changelogs written before payloads were cut: measured on reading.
        payload_size=data.get("payload_size", -1),
        payload_sha256=data.get("payload_sha256", ""),
    )


class PartitionState:
    """Everything one partition's events change, plus what changed since the last flush."""

    def __init__(
        self,
        partition: int,
        *,
        window_sizes_s: Sequence[int],
        grace_s: int,
        baseline: Mapping[WindowKey, Sequence[int]] | None = None,
    ) -> None:
        if not window_sizes_s or any(size <= 0 for size in window_sizes_s):
            raise ValueError("window sizes must be positive seconds")
        self.partition = partition
        self.window_sizes_s = tuple(window_sizes_s)
        # No window boundary of any size falls inside a bucket of the sizes' gcd.
        self._bucket_s = reduce(gcd, self.window_sizes_s)
        self.watermark = Watermark(grace_ms=grace_s * 1000)
        self.offsets: Offsets = {}
        self.windows: dict[WindowKey, list[int]] = {}
        self.posts: dict[PostKey, list[int]] = {}
        self.seen: dict[str, int] = {}  # event_id -> event time, for ids within grace
        self.flush_seq = 0
        # Expiry (closed windows, old dedup ids) follows the watermark of the last
        # checkpoint known to be durable, never a newer one: if a crash loses the newest
        # checkpoint, the replay from the older one may still need what expired.
        self._durable_horizon: int | None = None
        self._flushed_horizon: int | None = None
        # Windows whose newest row the sink has not confirmed: window -> flush seq.
        # A closed window stays until its final row is written, or a crash could lose it.
        self._unwritten: dict[WindowKey, int] = {}
        self._flushed_offsets: Offsets = {}
        # Source offsets covered by the last checkpoint known to be durable: what the
        # consumer group may commit (each plus one).
        self.durable_offsets: Offsets = {}
        # Totals already in ClickHouse from an earlier run whose broker state is gone
        # (the embedded broker keeps nothing): a window starts from them, not from zero.
        self._baseline: dict[WindowKey, Sequence[int]] = dict(baseline or {})
        # Since the last flush.
        self._dirty_windows: set[WindowKey] = set()
        self._dirty_posts: set[PostKey] = set()
        # Which windows and posts each changelog chunk holds.
        self._window_chunks: dict[tuple[int, int, int], set[WindowKey]] = {}
        self._post_chunks: dict[int, set[PostKey]] = {}
        self._creator_chunk: dict[str, int] = {}
        self._new_ids: list[tuple[str, int]] = []
        self._new_dead: list[DeadLetter] = []
        # Dedup segments still needed: seq -> (newest event time, ids).
        self._segments: dict[tuple[int, int], tuple[int, list[str]]] = {}
        self._drop_keys: list[bytes] = []  # stale segment keys found at restore
        # After a restore: keys written by a flush whose checkpoint was lost.
        self._ahead_windows: dict[WindowKey, Offsets] = {}
        self._ahead_posts: dict[PostKey, Offsets] = {}
        # Dead letters restored from the changelog that may not be in ClickHouse yet.
        self.unwritten_dead_letters: dict[bytes, list[DeadLetter]] = {}

    # -- applying records -------------------------------------------------------------

    def apply_record(
        self, topic: str, offset: int, events: Sequence[DecodedEvent]
    ) -> RecordOutcome:
        """Apply the valid events of one record, in order.

        This is the hot path. Events are grouped by creator and the finest time bucket
        that no window boundary splits (the gcd of the window sizes); each group's
        counts are summed column-wise once and added to every window size, instead of
        adding 11 counters per event per window.
        """
        outcome = RecordOutcome()
        if offset <= self.offsets.get(topic, -1):
            outcome.skipped = True
            return outcome
        admit = self.watermark.admit
        seen = self.seen
        new_ids = self._new_ids
        bucket_s = self._bucket_s
        groups: dict[tuple[str, str, int], list[tuple[int, ...]]] = {}
        timestamps = [event.ts for event in events]
        # The common case, a record with no late event, skips the per-event rule.
        none_late = self.watermark.admit_all(timestamps)
        counted = duplicates = 0
        for index, event in enumerate(events):
            ts = timestamps[index]
            if not none_late and not admit(ts):
                outcome.late.append(index)
                continue
            event_id = event.event_id
            if event_id in seen:
                duplicates += 1
                continue
            seen[event_id] = ts
            new_ids.append((event_id, ts))
            counted += 1
            if event.kind == "snapshot":
                counts = self._snapshot_delta(event, topic, offset)
            else:
                counts = _counts(event)
            key = (event.campaign_id, event.creator_id, window_start_ms(ts, bucket_s))
            group = groups.get(key)
            if group is None:
                groups[key] = [counts]
            else:
                group.append(counts)
        for key, group in groups.items():
            totals = group[0] if len(group) == 1 else tuple(map(sum, zip(*group)))
            if any(totals):
                self._add_to_windows(key, totals, topic, offset)
        self.offsets[topic] = offset
        outcome.counted = counted
        outcome.duplicates = duplicates
        return outcome

    def _snapshot_delta(self, event: DecodedEvent, topic: str, offset: int) -> tuple[int, ...]:
        """Per metric, max(0, new total - highest total seen so far); keeps the highest."""
        key = (event.campaign_id, event.creator_id, event.post_id)
        totals = _counts(event)
        highest = self.posts.get(key)
        if highest is None:
            self.posts[key] = list(totals)
            self._post_chunks.setdefault(self._chunk(event.creator_id), set()).add(key)
            self._dirty_posts.add(key)
            delta = totals
        else:
            delta = tuple(new - old if new > old else 0 for new, old in zip(totals, highest))
            if any(delta):
                self.posts[key] = [max(new, old) for new, old in zip(totals, highest)]
                self._dirty_posts.add(key)
        ahead = self._ahead_posts.get(key)
        if ahead is not None and offset <= ahead.get(topic, -1):
            # The post's totals already include this record (a flush outran its
            # checkpoint); the windows it fed are ahead too and will skip it.
            return ZERO
        return delta

    def _add_to_windows(
        self, group: tuple[str, str, int], counts: tuple[int, ...], topic: str, offset: int
    ) -> None:
        campaign_id, creator_id, bucket = group
        windows = self.windows
        for size in self.window_sizes_s:
            key = (campaign_id, creator_id, size, window_start_ms(bucket, size))
            if self._ahead_windows:
                ahead = self._ahead_windows.get(key)
                if ahead is not None and offset <= ahead.get(topic, -1):
                    continue
            totals = windows.get(key)
            if totals is None:
                base = self._baseline.pop(key, None)
                windows[key] = list(map(add, base, counts)) if base else list(counts)
                self._index_window(key)
            else:
                windows[key] = list(map(add, totals, counts))
            self._dirty_windows.add(key)

    def add_dead_letters(self, dead_letters: Iterable[DeadLetter]) -> None:
        """Dead letters become durable with the next flush, like the counts."""
        self._new_dead.extend(dead_letters)

    # -- flushing ---------------------------------------------------------------------

    def has_changes(self) -> bool:
        return bool(
            self._dirty_windows
            or self._dirty_posts
            or self._new_ids
            or self._new_dead
            or self._drop_keys
            or self.offsets != self._flushed_offsets
        )

    def flush(self) -> Flush:
        """Take everything changed since the last flush as changelog records and rows."""
        self.flush_seq += 1
        seq = self.flush_seq
        p = self.partition
        offsets = dict(self.offsets)
        self._flushed_offsets = offsets
        # Stale segments found at restore go first: this flush may reuse their keys.
        records: list[ChangelogRecord] = [(key, None) for key in self._drop_keys]
        rows: list[CreatorWindowRow] = []

        for key in self._dirty_windows:
            totals = self.windows[key]
            rows.append(CreatorWindowRow(key[0], key[1], key[2], key[3], tuple(totals)))
            self._unwritten[key] = seq
        for chunk in {self._window_chunk_of(key) for key in self._dirty_windows}:
            entries = [
                self._entry([k[0], k[1], self.windows[k]], offsets, self._ahead_windows.get(k))
                for k in self._window_chunks[chunk]
            ]
            value = orjson.dumps({"w": entries, "o": offsets})
            records.append((changelog_key(p, "w", *chunk), value))
        # Closed windows leave memory; their final totals were written when they last
        # changed (above, or in an earlier flush). A chunk's windows share size and
        # start, so they close together; the chunk goes once none awaits the sink.
        horizon = self._durable_horizon
        if horizon is not None:
            unwritten = self._unwritten
            closed = [
                chunk
                for chunk, keys in self._window_chunks.items()
                if is_closed(window_end_ms(chunk[1], chunk[0]), horizon)
                and not any(k in unwritten for k in keys)
            ]
            for chunk in closed:
                for key in self._window_chunks.pop(chunk):
                    del self.windows[key]
                records.append((changelog_key(p, "w", *chunk), None))
        for post_chunk in {self._chunk(post[1]) for post in self._dirty_posts}:
            entries = [
                self._entry([k[0], k[1], k[2], self.posts[k]], offsets, self._ahead_posts.get(k))
                for k in self._post_chunks[post_chunk]
            ]
            records.append(
                (changelog_key(p, "p", post_chunk), orjson.dumps({"p": entries, "o": offsets}))
            )
        for piece, start in enumerate(range(0, len(self._new_ids), IDS_PER_PIECE)):
            ids = self._new_ids[start : start + IDS_PER_PIECE]
            newest = max(ts for _, ts in ids)
            self._segments[(seq, piece)] = (newest, [event_id for event_id, _ in ids])
            records.append(
                (
                    changelog_key(p, "d", seq, piece),
                    orjson.dumps({"i": ids, "m": newest, "o": offsets}),
                )
            )
        records.extend((key, None) for key in self._expire_segments())
        dead = self._new_dead
        dead_keys = []
        for piece, start in enumerate(range(0, len(dead), DEAD_LETTERS_PER_PIECE)):
            dead_keys.append(changelog_key(p, "x", seq, piece))
            letters = dead[start : start + DEAD_LETTERS_PER_PIECE]
            payload = {"l": [_dead_letter_json(d) for d in letters], "o": offsets}
            records.append((dead_keys[-1], orjson.dumps(payload)))
        records.append(
            (
                changelog_key(p, "c"),
                orjson.dumps({"o": offsets, "w": self.watermark.value_ms, "s": seq}),
            )
        )

        self._dirty_windows = set()
        self._dirty_posts = set()
        self._new_ids = []
        self._new_dead = []
        self._drop_keys = []
        self._forget_passed_ahead_markers()
        self._flushed_horizon = self.watermark.horizon_ms()
        return Flush(seq, records, rows, dead, dead_keys)

    def confirm_written(self, seq: int) -> None:
        """Call once the rows of flush ``seq`` (and all before it) are in the sink."""
        self._unwritten = {k: s for k, s in self._unwritten.items() if s > seq}

    def confirm_durable(self) -> None:
        """Call once the changelog records of the last flush are durable (acked)."""
        self._durable_horizon = self._flushed_horizon
        self.durable_offsets = dict(self._flushed_offsets)

    def _chunk(self, creator_id: str) -> int:
        chunk = self._creator_chunk.get(creator_id)
        if chunk is None:
            chunk = self._creator_chunk[creator_id] = crc32(creator_id.encode()) % CHUNKS
        return chunk

    def _window_chunk_of(self, key: WindowKey) -> tuple[int, int, int]:
        return (key[2], key[3], self._chunk(key[1]))

    def _index_window(self, key: WindowKey) -> None:
        self._window_chunks.setdefault(self._window_chunk_of(key), set()).add(key)

    @classmethod
    def _entry(cls, entry: list[Any], offsets: Offsets, ahead: Offsets | None) -> list[Any]:
        """A chunk entry; one still ahead of the offsets carries its own marker."""
        if ahead:
            entry.append(cls._marker(offsets, ahead))
        return entry

    @staticmethod
    def _marker(offsets: Offsets, ahead: Offsets | None) -> Offsets:
        """The offsets a key's value includes: still the ahead marker while replaying."""
        if not ahead:
            return offsets
        merged = dict(offsets)
        for topic, offset in ahead.items():
            if offset > merged.get(topic, -1):
                merged[topic] = offset
        return merged

    def _expire_segments(self) -> list[bytes]:
        """Dedup ids older than the horizon are no longer needed: a copy would be late."""
        horizon = self._durable_horizon
        if horizon is None:
            return []
        expired = [key for key, (newest, _) in self._segments.items() if newest < horizon]
        for key in expired:
            for event_id in self._segments.pop(key)[1]:
                self.seen.pop(event_id, None)
        return [changelog_key(self.partition, "d", *key) for key in expired]

    def _forget_passed_ahead_markers(self) -> None:
        if not (self._ahead_windows or self._ahead_posts):
            return

        def passed(marker: Offsets) -> bool:
            return all(self.offsets.get(t, -1) >= o for t, o in marker.items())

        self._ahead_windows = {k: m for k, m in self._ahead_windows.items() if not passed(m)}
        self._ahead_posts = {k: m for k, m in self._ahead_posts.items() if not passed(m)}

    def all_rows(self) -> list[CreatorWindowRow]:
        """Rows for every window in memory (after a restore, to rewrite them all).

        They count as written by flush :attr:`flush_seq` for :meth:`confirm_written`.
        """
        for key in self.windows:
            self._unwritten[key] = self.flush_seq
        return [CreatorWindowRow(k[0], k[1], k[2], k[3], tuple(v)) for k, v in self.windows.items()]

    # -- restoring --------------------------------------------------------------------

    @classmethod
    def restore(
        cls,
        partition: int,
        changelog: Iterable[tuple[bytes, bytes]],
        *,
        window_sizes_s: Sequence[int],
        grace_s: int,
        baseline: Mapping[WindowKey, Sequence[int]] | None = None,
    ) -> PartitionState:
        """Rebuild a partition's state from the latest value of each changelog key."""
        state = cls(partition, window_sizes_s=window_sizes_s, grace_s=grace_s, baseline=baseline)
        entries: list[tuple[list[Any], dict[str, Any], bytes]] = []
        checkpoint: dict[str, Any] = {"o": {}, "w": None, "s": 0}
        for raw_key, raw_value in changelog:
            key = orjson.loads(raw_key)
            if key[0] != partition or raw_value is None:
                continue
            value = orjson.loads(raw_value)
            if key[1] == "c":
                checkpoint = value
            else:
                entries.append((key, value, raw_key))
        applied: Offsets = dict(checkpoint["o"])
        state.offsets = dict(applied)
        state._flushed_offsets = dict(applied)
        state.watermark.value_ms = checkpoint["w"]
        state._durable_horizon = state._flushed_horizon = state.watermark.horizon_ms()
        state.flush_seq = int(checkpoint["s"])
        for key, value, raw_key in entries:
            kind = key[1]
            ahead = _ahead(value["o"], applied)
            if kind == "w":
                size, start = int(key[2]), int(key[3])
                for entry in value["w"]:
                    wkey: WindowKey = (entry[0], entry[1], size, start)
                    state.windows[wkey] = list(entry[2])
                    state._index_window(wkey)
                    marker = entry[3] if len(entry) > 3 else value["o"]
                    if _ahead(marker, applied):
                        state._ahead_windows[wkey] = dict(marker)
            elif kind == "p":
                for entry in value["p"]:
                    pkey: PostKey = (entry[0], entry[1], entry[2])
                    state.posts[pkey] = list(entry[3])
                    state._post_chunks.setdefault(state._chunk(pkey[1]), set()).add(pkey)
                    marker = entry[4] if len(entry) > 4 else value["o"]
                    if _ahead(marker, applied):
                        state._ahead_posts[pkey] = dict(marker)
            elif kind == "d":
                if ahead:  # the replay adds these ids again
                    state._drop_keys.append(raw_key)
                    continue
                ids = [event_id for event_id, _ in value["i"]]
                state.seen.update((event_id, ts) for event_id, ts in value["i"])
                state._segments[(int(key[2]), int(key[3]))] = (int(value["m"]), ids)
            elif kind == "x":
                if ahead:  # the replay dead-letters these records again
                    state._drop_keys.append(raw_key)
                    continue
                state.unwritten_dead_letters[raw_key] = [
                    _dead_letter_from_json(d) for d in value["l"]
                ]
        return state
