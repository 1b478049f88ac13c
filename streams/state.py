"""The state of one partition and the rules that keep its totals exact: pure, no Faust.

One :class:`PartitionState` holds everything a partition's events change: the
watermark, the event ids seen within the grace period (dedup), the highest lifetime
totals per post (snapshot -> delta), and the open windows' totals. It is a
deterministic function of the partition's records in offset order, which is what makes
replays exact.

Durability (docs/design.md §4) without Kafka transactions: :meth:`PartitionState.flush`
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
from datetime import UTC, datetime
from functools import reduce
from math import gcd
from operator import add, attrgetter
from typing import Any

import orjson

from schemas.events import DecodedEvent, Rejected
from schemas.metrics import MAX_COUNT, METRICS
from schemas.rows import CreatorWindowRow, DeadLetter, WindowKey
from streams import changelog
from streams.changelog import (
    CHECKPOINT,
    DEAD,
    DEAD_LETTERS_PER_PIECE,
    IDS,
    IDS_PER_PIECE,
    POSTS,
    POSTS_PER_PIECE,
    WINDOWS,
    WINDOWS_PER_PIECE,
    ChangelogRecord,
    Offsets,
    Pieces,
    split_to_fit,
)
from streams.windows import (
    DEFAULT_FUTURE_SKEW_S,
    Watermark,
    is_closed,
    window_end_ms,
    window_start_ms,
)

PostKey = tuple[str, str, str]  # campaign_id, creator_id, post_id

ZERO: tuple[int, ...] = (0,) * len(METRICS)

#: What an addition to a window replaced: the key, its old totals (None: a new window),
#: whether it was dirty before, and the baseline it started from.
_Undo = tuple[WindowKey, "list[int] | None", bool, "Sequence[int] | None"]
#: An event's counters as a tuple in METRICS order, in one C call.
_counts: Any = attrgetter(*METRICS)


@dataclass(slots=True)
class RecordOutcome:
    """What happened to the elements of one record."""

    counted: int = 0
    duplicates: int = 0
    late: int = 0
    invalid: int = 0  # decoding refused them, or their time or totals break a bound
    skipped: bool = False  # the whole record was applied before the checkpoint
    dead_letters: list[DeadLetter] = field(default_factory=list)


@dataclass(slots=True)
class Flush:
    """The output of one flush: changelog records to write, then rows for ClickHouse.

    The last changelog record is the checkpoint: write it only once the others are durable.
    """

    seq: int
    changelog: list[ChangelogRecord]
    rows: list[CreatorWindowRow]
    dead_letters: list[DeadLetter]
    dead_letter_keys: list[bytes]  # delete these once the dead letters are in ClickHouse


class PartitionState:
    """Everything one partition's events change, plus what changed since the last flush."""

    def __init__(
        self,
        partition: int,
        *,
        window_sizes_s: Sequence[int],
        grace_s: int,
        future_skew_s: int = DEFAULT_FUTURE_SKEW_S,
        baseline: Mapping[WindowKey, Sequence[int]] | None = None,
    ) -> None:
        if not window_sizes_s or any(size <= 0 for size in window_sizes_s):
            raise ValueError("window sizes must be positive seconds")
        self.partition = partition
        self.window_sizes_s = tuple(window_sizes_s)
        # No window boundary of any size falls inside a bucket of the sizes' gcd.
        self._bucket_s = reduce(gcd, self.window_sizes_s)
        self._sizes_ms = tuple((size, size * 1000) for size in self.window_sizes_s)
        self.watermark = Watermark(grace_ms=grace_s * 1000)
        self.future_skew_ms = future_skew_s * 1000
        self.offsets: Offsets = {}
        self.windows: dict[WindowKey, list[int]] = {}
        self.posts: dict[PostKey, list[int]] = {}
        # Event ids within the grace period. A set, not a map to event times: at 3,000
        # events/s and a 10-minute grace it holds 1.8 million ids, and expiry goes by
        # segment (each knows its newest event time), so a time per id is never read.
        self.seen: set[str] = set()
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
        # Which windows and posts each changelog piece holds: a piece is a
        # (window size, start, piece number) for windows and a piece number for posts.
        # A (campaign, creator) pair, and a post, keeps its piece number for as long as
        # it is in memory, so no entry ever moves from one changelog key to another.
        self._window_chunks: dict[tuple[int, int, int], set[WindowKey]] = {}
        self._post_chunks: dict[int, set[PostKey]] = {}
        self._pair_piece = Pieces[tuple[str, str]](WINDOWS_PER_PIECE)
        self._post_piece = Pieces[PostKey](POSTS_PER_PIECE)
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
        self,
        topic: str,
        offset: int,
        events: Sequence[DecodedEvent],
        *,
        now_ms: int,
        positions: Sequence[int] | None = None,
        rejected: Sequence[Rejected] = (),
        forwarded: bool = False,
    ) -> RecordOutcome:
        """Apply the valid events of one record, in order; return what became of them.

        ``now_ms`` is the worker's clock: an event more than the allowed skew ahead of
        it is refused before it can move the watermark. ``positions`` are the events'
        places in the record (default 0, 1, ...), ``rejected`` what decoding refused;
        both go into the record's dead letters, which become durable with the next
        flush. ``forwarded``: the record came through the rekey topic.

        This is the hot path. Events are grouped by creator and the finest time bucket
        that no window boundary splits (the gcd of the window sizes); each group's
        counts are summed column-wise once and added to every window size, instead of
        adding 11 counters per event per window.
        """
        outcome = RecordOutcome()
        if offset <= self.offsets.get(topic, -1):
            outcome.skipped = True
            return outcome
        problems: list[Rejected] = list(rejected)
        outcome.invalid = len(problems)
        where: Sequence[int] = range(len(events)) if positions is None else positions
        timestamps = [event.ts for event in events]
        if timestamps and max(timestamps) > now_ms + self.future_skew_ms:
            events, where, timestamps = self._refuse_future(
                events, where, timestamps, now_ms, problems
            )
            outcome.invalid = len(problems)
        admit = self.watermark.admit
        seen = self.seen
        new_ids = self._new_ids
        bucket_ms = self._bucket_s * 1000
        seen_add = seen.add
        add_id = new_ids.append
        # group -> (each event's counts, each event's index in ``events``)
        groups: dict[tuple[str, str, int], tuple[list[tuple[int, ...]], list[int]]] = {}
        # The common case, a record with no late event, skips the per-event rule.
        none_late = self.watermark.admit_all(timestamps)
        counted = duplicates = 0
        for index, event in enumerate(events):
            ts = timestamps[index]
            if not none_late and not admit(ts):
                problems.append(self._late(event, where[index], forwarded))
                outcome.late += 1
                continue
            event_id = event.event_id
            if event_id in seen:
                duplicates += 1
                continue
            seen_add(event_id)
            add_id((event_id, ts))
            counted += 1
            if event.kind == "snapshot":
                counts = self._snapshot_delta(event, topic, offset)
            else:
                counts = _counts(event)
            # The start of the event's bucket (window_start_ms, inlined: per event).
            key = (event.campaign_id, event.creator_id, ts - ts % bucket_ms)
            grouped = groups.get(key)
            if grouped is None:
                groups[key] = ([counts], [index])
            else:
                grouped[0].append(counts)
                grouped[1].append(index)
        undo: list[_Undo] = []
        for key, (group, _) in groups.items():
            totals = group[0] if len(group) == 1 else tuple(map(sum, zip(*group)))
            if not any(totals) or self._add_to_windows(key, totals, topic, offset, undo) is None:
                continue
            # Some window would pass the bound: take back what this record added, then
            # add its events one by one in record order, refusing those that would pass
            # it. (Their ids stay seen, and a snapshot keeps its post's new high-water
            # mark: a copy is a duplicate, not a second try.)
            self._undo_windows(undo)
            in_order = sorted(
                (index, bucket_key, counts)
                for bucket_key, (group_counts, indexes) in groups.items()
                for counts, index in zip(group_counts, indexes)
            )
            for index, bucket_key, counts in in_order:
                if not any(counts):
                    continue
                full = self._add_to_windows(bucket_key, counts, topic, offset, None)
                if full is not None:
                    problems.append(_over_bound(events[index], where[index], METRICS[full]))
                    counted -= 1
                    outcome.invalid += 1
            break
        self.offsets[topic] = offset
        outcome.counted = counted
        outcome.duplicates = duplicates
        if problems:
            outcome.dead_letters = self._dead_letters(topic, offset, problems, now_ms)
        return outcome

    def apply_one(
        self, topic: str, offset: int, event: DecodedEvent, *, now_ms: int, forwarded: bool = False
    ) -> RecordOutcome | None:
        """:meth:`apply_record` for a record of one valid event, with its outcome.

        The common case of a single-event record (in order, on time, not seen, a delta
        whose windows stay within the bounds) is applied here without building the
        groups, undo log and outcome of the general path; ``None`` then means "counted,
        nothing else". Anything else goes to :meth:`apply_record` before anything is
        changed, so both paths leave the same state and the same outcome.
        """
        ts = event.ts
        if (
            event.kind == "snapshot"
            or offset <= self.offsets.get(topic, -1)
            or ts > now_ms + self.future_skew_ms
            or self._ahead_windows
        ):
            return self.apply_record(topic, offset, (event,), now_ms=now_ms, forwarded=forwarded)
        watermark = self.watermark
        value_ms = watermark.value_ms
        event_id = event.event_id
        seen = self.seen
        if (value_ms is not None and ts < value_ms - watermark.grace_ms) or event_id in seen:
            return self.apply_record(topic, offset, (event,), now_ms=now_ms, forwarded=forwarded)
        counts = _counts(event)
        if any(counts):
            windows = self.windows
            campaign_id = event.campaign_id
            creator_id = event.creator_id
            updates = []
            for size, size_ms in self._sizes_ms:
                key = (campaign_id, creator_id, size, ts - ts % size_ms)
                totals = windows.get(key)
                if totals is None:
                    base = self._baseline.get(key)
                    new = list(map(add, base, counts)) if base else list(counts)
                else:
                    new = list(map(add, totals, counts))
                if max(new) > MAX_COUNT:
                    return self.apply_record(
                        topic, offset, (event,), now_ms=now_ms, forwarded=forwarded
                    )
                updates.append((key, new, totals is None))
            dirty = self._dirty_windows
            for key, new, fresh in updates:
                windows[key] = new
                if fresh:
                    self._baseline.pop(key, None)
                    self._index_window(key)
                dirty.add(key)
        if value_ms is None or ts > value_ms:
            watermark.value_ms = ts
        seen.add(event_id)
        self._new_ids.append((event_id, ts))
        self.offsets[topic] = offset
        return None

    def _refuse_future(
        self,
        events: Sequence[DecodedEvent],
        where: Sequence[int],
        timestamps: list[int],
        now_ms: int,
        problems: list[Rejected],
    ) -> tuple[list[DecodedEvent], list[int], list[int]]:
        """The events no further ahead of ``now_ms`` than the skew allows; the rest refused.

        An event from the future must never move the watermark: every on-time event
        after it on the partition would be late (docs/design.md §6).
        """
        limit = now_ms + self.future_skew_ms
        kept: list[DecodedEvent] = []
        kept_where: list[int] = []
        kept_ts: list[int] = []
        for event, position, ts in zip(events, where, timestamps):
            if ts <= limit:
                kept.append(event)
                kept_where.append(position)
                kept_ts.append(ts)
                continue
            reason = (
                f"invalid: ts: event time {ts} ms is {(ts - now_ms) // 1000} s in the future "
                f"(the worker allows {self.future_skew_ms // 1000} s ahead of its clock)"
            )
            problems.append(Rejected(position, reason, event.to_json()))
        return kept, kept_where, kept_ts

    def _late(self, event: DecodedEvent, position: int, forwarded: bool) -> Rejected:
        # A forwarded event reached this partition through the rekey topic, possibly
        # long after its record was read (README, "Records keyed by something else").
        kind = "late_rekeyed" if forwarded else "late"
        reason = (
            f"{kind}: event time {event.ts} ms is older than the watermark minus grace "
            f"({self.watermark.horizon_ms()} ms)"
        )
        return Rejected(position, reason, event.to_json())

    def _dead_letters(
        self, topic: str, offset: int, problems: Sequence[Rejected], now_ms: int
    ) -> list[DeadLetter]:
        received_at = datetime.fromtimestamp(now_ms / 1000, UTC)
        dead = [
            DeadLetter(received_at, topic, self.partition, offset, p.index, p.reason, p.payload)
            for p in problems
        ]
        self._new_dead.extend(dead)
        return dead

    def _snapshot_delta(self, event: DecodedEvent, topic: str, offset: int) -> tuple[int, ...]:
        """Per metric, max(0, new total - highest total seen so far); keeps the highest."""
        key = (event.campaign_id, event.creator_id, event.post_id)
        totals: tuple[int, ...] = _counts(event)
        highest = self.posts.get(key)
        if highest is None:
            self.posts[key] = list(totals)
            self._index_post(key)
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
        self,
        group: tuple[str, str, int],
        counts: tuple[int, ...],
        topic: str,
        offset: int,
        undo: list[_Undo] | None,
    ) -> int | None:
        """Add ``counts`` to the group's window of every size, or to none of them.

        Returns ``None`` once added, or (nothing changed) the index of a counter whose
        window total would pass ``MAX_COUNT``. ``undo`` collects what it takes to take
        the addition back.
        """
        campaign_id, creator_id, bucket = group
        windows = self.windows
        updates: list[tuple[WindowKey, list[int], bool]] = []
        for size in self.window_sizes_s:
            key = (campaign_id, creator_id, size, window_start_ms(bucket, size))
            if self._ahead_windows:
                ahead = self._ahead_windows.get(key)
                if ahead is not None and offset <= ahead.get(topic, -1):
                    continue
            totals = windows.get(key)
            if totals is None:
                base = self._baseline.get(key)
                new = list(map(add, base, counts)) if base else list(counts)
            else:
                new = list(map(add, totals, counts))
            if max(new) > MAX_COUNT:
                return new.index(max(new))
            updates.append((key, new, totals is None))
        dirty = self._dirty_windows
        for key, new, fresh in updates:
            old = windows.get(key)
            windows[key] = new
            base = None
            if fresh:
                base = self._baseline.pop(key, None)
                self._index_window(key)
            if undo is not None:
                undo.append((key, old, key in dirty, base))
            dirty.add(key)
        return None

    def _undo_windows(self, undo: list[_Undo]) -> None:
        """Take back the additions ``undo`` recorded, newest first."""
        for key, old, was_dirty, base in reversed(undo):
            if old is not None:
                self.windows[key] = old
            else:
                del self.windows[key]
                chunk = self._window_chunks[self._window_chunk_of(key)]
                chunk.discard(key)
                if base is not None:
                    self._baseline[key] = base
            if not was_dirty:
                self._dirty_windows.discard(key)
        undo.clear()

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
        for chunk in sorted({self._window_chunk_of(key) for key in self._dirty_windows}):
            entries = [
                self._entry([k[0], k[1], self.windows[k]], offsets, self._ahead_windows.get(k))
                for k in self._window_chunks[chunk]
            ]
            records.append(
                (changelog.key(p, WINDOWS, *chunk), changelog.encode_windows(entries, offsets))
            )
        # Closed windows leave memory; their final totals were written when they last
        # changed (above, or in an earlier flush). A piece's windows share size and
        # start, so they close together; the piece goes once none awaits the sink.
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
                records.append((changelog.key(p, WINDOWS, *chunk), None))
        for piece in sorted({self._post_piece.of(post) for post in self._dirty_posts}):
            entries = [
                self._entry([k[0], k[1], k[2], self.posts[k]], offsets, self._ahead_posts.get(k))
                for k in self._post_chunks[piece]
            ]
            records.append(
                (changelog.key(p, POSTS, piece), changelog.encode_posts(entries, offsets))
            )
        new_ids = self._new_ids

        def id_segment(ids: list[tuple[str, int]]) -> bytes:
            return changelog.encode_ids(ids, offsets)

        pieces = [
            piece
            for start in range(0, len(new_ids), IDS_PER_PIECE)
            for piece in split_to_fit(new_ids[start : start + IDS_PER_PIECE], id_segment)
        ]
        for number, (ids, value) in enumerate(pieces):
            newest = max(ts for _, ts in ids)
            self._segments[(seq, number)] = (newest, [event_id for event_id, _ in ids])
            records.append((changelog.key(p, IDS, seq, number), value))
        records.extend((key, None) for key in self._expire_segments())
        dead = self._new_dead
        dead_keys = []
        letters = [changelog.dead_letter_json(d) for d in dead]

        def dead_segment(letters: list[dict[str, Any]]) -> bytes:
            return changelog.encode_dead_letters(letters, offsets)

        dead_pieces = [
            piece
            for start in range(0, len(letters), DEAD_LETTERS_PER_PIECE)
            for piece in split_to_fit(letters[start : start + DEAD_LETTERS_PER_PIECE], dead_segment)
        ]
        for number, (_, value) in enumerate(dead_pieces):
            dead_keys.append(changelog.key(p, DEAD, seq, number))
            records.append((dead_keys[-1], value))
        records.append(
            (
                changelog.key(p, CHECKPOINT),
                changelog.encode_checkpoint(offsets, self.watermark.value_ms, seq),
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

    def awaiting_sink(self) -> int:
        """How many windows have rows the sink has not confirmed yet."""
        return len(self._unwritten)

    def confirm_durable(self) -> None:
        """Call once the changelog records of the last flush are durable (acked)."""
        self._durable_horizon = self._flushed_horizon
        self.durable_offsets = dict(self._flushed_offsets)

    def _window_chunk_of(self, key: WindowKey) -> tuple[int, int, int]:
        return (key[2], key[3], self._pair_piece.of((key[0], key[1])))

    def _index_window(self, key: WindowKey) -> None:
        self._window_chunks.setdefault(self._window_chunk_of(key), set()).add(key)

    def _index_post(self, key: PostKey, piece: int | None = None) -> None:
        piece = self._post_piece.of(key, piece)
        self._post_chunks.setdefault(piece, set()).add(key)

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
                self.seen.discard(event_id)
        return [changelog.key(self.partition, IDS, *key) for key in expired]

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
        records: Iterable[tuple[bytes, bytes]],
        *,
        window_sizes_s: Sequence[int],
        grace_s: int,
        future_skew_s: int = DEFAULT_FUTURE_SKEW_S,
        baseline: Mapping[WindowKey, Sequence[int]] | None = None,
    ) -> PartitionState:
        """Rebuild a partition's state from the latest value of each changelog key."""
        state = cls(
            partition,
            window_sizes_s=window_sizes_s,
            grace_s=grace_s,
            future_skew_s=future_skew_s,
            baseline=baseline,
        )
        entries: list[tuple[list[Any], dict[str, Any], bytes]] = []
        checkpoint: dict[str, Any] = {"o": {}, "w": None, "s": 0}
        for raw_key, raw_value in records:
            key = orjson.loads(raw_key)
            if key[0] != partition or raw_value is None:
                continue
            value = orjson.loads(raw_value)
            if key[1] == CHECKPOINT:
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
            ahead = changelog.ahead(value["o"], applied)
            if kind == WINDOWS:
                size, start, piece = int(key[2]), int(key[3]), int(key[4])
                for entry in value[WINDOWS]:
                    wkey: WindowKey = (entry[0], entry[1], size, start)
                    state.windows[wkey] = list(entry[2])
                    state._pair_piece.of((wkey[0], wkey[1]), piece)
                    state._index_window(wkey)
                    marker = entry[3] if len(entry) > 3 else value["o"]
                    if changelog.ahead(marker, applied):
                        state._ahead_windows[wkey] = dict(marker)
            elif kind == POSTS:
                piece = int(key[2])
                for entry in value[POSTS]:
                    pkey: PostKey = (entry[0], entry[1], entry[2])
                    state.posts[pkey] = list(entry[3])
                    state._index_post(pkey, piece)
                    marker = entry[4] if len(entry) > 4 else value["o"]
                    if changelog.ahead(marker, applied):
                        state._ahead_posts[pkey] = dict(marker)
            elif kind == IDS:
                if ahead:  # the replay adds these ids again
                    state._drop_keys.append(raw_key)
                    continue
                ids = [event_id for event_id, _ in value["i"]]
                state.seen.update(ids)
                state._segments[(int(key[2]), int(key[3]))] = (int(value["m"]), ids)
            elif kind == DEAD:
                if ahead:  # the replay dead-letters these records again
                    state._drop_keys.append(raw_key)
                    continue
                state.unwritten_dead_letters[raw_key] = [
                    changelog.dead_letter_from_json(d) for d in value["l"]
                ]
        return state


def _over_bound(event: DecodedEvent, position: int, metric: str) -> Rejected:
    reason = (
        f"invalid: {metric}: the window's total would pass {MAX_COUNT} (2^53), the bound "
        "of every counter of a creator window"
    )
    return Rejected(position, reason, event.to_json())
