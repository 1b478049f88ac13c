"""The changelog's format: what a partition state writes, and how it is read back.

Keys are JSON arrays ``[partition, kind, ...]``; values are JSON objects. Every value but
the checkpoint carries ``"o"``, the source offsets it includes (the rules in
``streams.state`` decide what that means). The kinds, key then value:

- windows: ``[p, "w", size_s, start_ms, piece]``,
  ``{"w": [[campaign, creator, counts, marker?], ...], "o": offsets}``;
- posts: ``[p, "p", piece]``, ``{"p": [[campaign, creator, post, counts, marker?]], "o"}``;
- dedup ids: ``[p, "d", flush seq, piece]``, ``{"i": [[event_id, ts_ms]], "m": newest, "o"}``;
- dead letters: ``[p, "x", flush seq, piece]``, ``{"l": [dead letter, ...], "o"}``;
- the checkpoint: ``[p, "c"]``, ``{"o": offsets, "w": watermark_ms, "s": flush seq}``.

An entry's ``marker`` is present only while it is ahead of the checkpoint (written by a
flush whose checkpoint was lost). Every value stays under :data:`MAX_CHANGELOG_VALUE`
by construction (docs/design.md §7).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import orjson

from schemas.rows import DeadLetter, dead_letter_fields

Offsets = dict[str, int]  # source topic -> offset of the last record applied
ChangelogRecord = tuple[bytes, bytes | None]  # key, value (None deletes the key)

WINDOWS, POSTS, IDS, DEAD, CHECKPOINT = "w", "p", "d", "x", "c"

#: No changelog value is longer than this: Kafka refuses records over ~1 MB by default.
MAX_CHANGELOG_VALUE = 512 * 1024
#: Windows of one size and start are written in pieces of this many (campaign, creator)
#: pairs, so a flush sends a few hundred records, not one per window. An entry is at most
#: about 2.4 KB (two 128-character ids of control characters, escaped six bytes each,
#: 11 counters, two offsets), so a piece stays under MAX_CHANGELOG_VALUE.
WINDOWS_PER_PIECE = 200
#: Post totals likewise, per post (an entry holds one id more).
POSTS_PER_PIECE = 150
#: Dedup ids and dead letters of one flush are packed in pieces of about this many, and
#: split further while a piece's JSON is longer than MAX_CHANGELOG_VALUE.
IDS_PER_PIECE = 5_000
DEAD_LETTERS_PER_PIECE = 8


def key(partition: int, kind: str, *parts: Any) -> bytes:
    return orjson.dumps([partition, kind, *parts])


def partition_of(raw_key: bytes) -> int:
    """The partition a changelog key belongs to (its first element)."""
    return int(orjson.loads(raw_key)[0])


def encode_windows(entries: list[list[Any]], offsets: Offsets) -> bytes:
    return orjson.dumps({WINDOWS: entries, "o": offsets})


def encode_posts(entries: list[list[Any]], offsets: Offsets) -> bytes:
    return orjson.dumps({POSTS: entries, "o": offsets})


def encode_ids(ids: list[tuple[str, int]], offsets: Offsets) -> bytes:
    return orjson.dumps({"i": ids, "m": max(ts for _, ts in ids), "o": offsets})


def encode_dead_letters(letters: list[dict[str, Any]], offsets: Offsets) -> bytes:
    return orjson.dumps({"l": letters, "o": offsets})


def encode_checkpoint(offsets: Offsets, watermark_ms: int | None, seq: int) -> bytes:
    return orjson.dumps({"o": offsets, "w": watermark_ms, "s": seq})


def dead_letter_json(dead: DeadLetter) -> dict[str, Any]:
    # Epoch seconds in the changelog (its format predates the topic's RFC 3339 text).
    return {**dead_letter_fields(dead), "received_at": dead.received_at.timestamp()}


def dead_letter_from_json(data: Mapping[str, Any]) -> DeadLetter:
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


def ahead(offsets: Mapping[str, int], checkpoint: Mapping[str, int]) -> bool:
    """Whether a value written with ``offsets`` includes records past ``checkpoint``."""
    return any(offset > checkpoint.get(topic, -1) for topic, offset in offsets.items())


T = TypeVar("T")


def split_to_fit(
    items: list[T], encode: Callable[[list[T]], bytes], limit: int = MAX_CHANGELOG_VALUE
) -> list[tuple[list[T], bytes]]:
    """``items`` encoded as one value, or halved until each part's value fits ``limit``.

    A single item is never split: callers bound their items so that one always fits.
    """
    value = encode(items)
    if len(value) <= limit or len(items) <= 1:
        return [(items, value)]
    half = len(items) // 2
    return split_to_fit(items[:half], encode, limit) + split_to_fit(items[half:], encode, limit)


K = TypeVar("K", bound=Hashable)


class Pieces(Generic[K]):
    """Which changelog piece each key is written in: at most ``per_piece`` keys a piece.

    A key keeps its piece while it is known; pieces fill in order. After a restore,
    keys found in the changelog keep the pieces they were found in, and new keys fill
    the room that forgotten ones left. So no entry ever moves from one changelog key to
    another, and a partly durable flush can never leave two copies of one.
    """

    def __init__(self, per_piece: int) -> None:
        self.per_piece = per_piece
        self._piece: dict[K, int] = {}
        self._fill: list[int] = []
        self._open = 0  # no piece before this one has room

    def of(self, key: K, piece: int | None = None) -> int:
        """The piece of ``key``, assigning one (``piece`` if given, at restore) if new."""
        known = self._piece.get(key)
        if known is not None:
            return known
        if piece is None:
            fill = self._fill
            piece = self._open
            while piece < len(fill) and fill[piece] >= self.per_piece:
                piece += 1
            self._open = piece
        while len(self._fill) <= piece:
            self._fill.append(0)
        self._fill[piece] += 1
        self._piece[key] = piece
        return piece
