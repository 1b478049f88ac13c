"""Reading recorded post-stat events from files, as records ready to publish.

Two formats:

- **JSONL**: one JSON value per line, published byte for byte. A line that is not a
  valid event (bad JSON, a missing field, a naive timestamp...) is *still published*:
  the pipeline is the one place that decides what is a dead letter and records why,
  so a replay must not silently drop what a live producer could have sent. Blank
  lines are skipped (they are not records). A line holding a JSON array is published
  as one batch record. A line over :data:`MAX_LINE_BYTES` is cut to 64 KiB + 1 bytes
  so it still reaches the pipeline (and is dead-lettered as too large or bad JSON)
  rather than being refused by the broker and stopping the replay.
- **CSV**: a header row of contract field names, then one event per row. Count
  columns become integers; a count that is not an integer stays text (so the
  pipeline rejects it with a reason); ``ts`` becomes an integer when it is all digits
  (epoch ms) and stays text otherwise (ISO-8601); empty cells are omitted (the
  contract's defaults apply, or the event is missing a required field). Cells past
  the header's width are ignored.

Iteration is streaming (one line in memory at a time) and pure: nothing here
publishes. :class:`ReplayReader` reports bytes read against the file size for a
progress bar. Record keys are the ``creator_id`` when the line has one, else ``None``;
record timestamps are the event time, or for a line without a usable ``ts`` the
previous line's (the first usable one's, for lines before it).
"""

from __future__ import annotations

import codecs
import csv
import os
import time
from collections import deque
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal

import orjson

from producers.simulator import SimRecord
from schemas.events import MAX_EVENT_BYTES, decode_event, decode_record
from schemas.metrics import METRICS

Format = Literal["jsonl", "csv"]

#: Lines longer than this are truncated (see the module docstring). It stays under the
#: broker's default record size limit, batch arrays included.
MAX_LINE_BYTES: Final = 1_000_000
_TRUNCATED_BYTES: Final = MAX_EVENT_BYTES + 1
_COUNT_FIELDS: Final = frozenset(METRICS)
_SUFFIXES: Final[dict[str, Format]] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
# Lines without a usable ts, held until one with a ts gives them a timestamp.
_MAX_HELD: Final = 10_000
# Read buffer. Each refill is a system call that lets a publisher's network thread take
# the GIL; with the default 8 KiB (a refill every ~25 lines) readline was 10.5% of a
# profiled replay's samples, with 1 MiB 4.9%.
_READ_BUFFER_BYTES: Final = 1 << 20


def detect_format(path: str | os.PathLike[str]) -> Format:
    """The format from the file suffix (``.jsonl``/``.ndjson``/``.csv``, also ``.gz``-less)."""
    suffix = Path(path).suffix.lower()
    try:
        return _SUFFIXES[suffix]
    except KeyError:
        raise ValueError(
            f"cannot tell the format of {os.fspath(path)!r} from its suffix: "
            "use .jsonl, .ndjson or .csv, or pass the format"
        ) from None


def ts_to_ms(value: Any) -> int | None:
    """Event time in epoch ms from a ``ts`` value, or ``None`` if it is not usable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            return None
        return int(parsed.timestamp() * 1000)
    return None


class ReplayReader:
    """Iterate a JSONL or CSV file as :class:`SimRecord` s, tracking progress.

    ``fallback_ts_ms`` is the timestamp given to records when no line in the file has
    a usable ``ts`` (default: the wall clock when needed).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fmt: Format | None = None,
        *,
        fallback_ts_ms: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.format: Format = fmt if fmt is not None else detect_format(path)
        if self.format not in ("jsonl", "csv"):
            raise ValueError(f"unknown format {self.format!r}: use 'jsonl' or 'csv'")
        self.total_bytes = self.path.stat().st_size
        self.bytes_read = 0
        self.records = 0  # records produced (non-blank lines; for CSV, data rows)
        self.valid_events = 0  # events that will count (batch lines hold several)
        self.rejected = 0  # elements the pipeline will dead-letter
        self.truncated = 0  # over-long lines cut short
        self._fallback_ts_ms = fallback_ts_ms
        self._last_ts: int | None = None
        # Lines before the first usable ts wait for it (bounded), so an early broken
        # line lands next to its neighbours in time instead of at the epoch.
        self._held: deque[_Row] = deque()

    def __iter__(self) -> Iterator[SimRecord]:
        self._held = deque()
        with self.path.open("rb", buffering=_READ_BUFFER_BYTES) as raw:
            yield from self._jsonl(raw) if self.format == "jsonl" else self._csv(raw)
        yield from self._release_held()

    # -- lines -----------------------------------------------------------------------

    def _raw_lines(self, raw: BinaryIO) -> Iterator[bytes]:
        """Lines without their end-of-line, counted in bytes, long ones truncated."""
        first = True
        while True:
            line = raw.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            self.bytes_read += len(line)
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                # Discard the rest of the line without holding it in memory.
                while True:
                    rest = raw.readline(1 << 20)
                    self.bytes_read += len(rest)
                    if not rest or rest.endswith(b"\n"):
                        break
                self.truncated += 1
                line = line[:_TRUNCATED_BYTES]
            if first:
                first = False
                if line.startswith(codecs.BOM_UTF8):
                    line = line[len(codecs.BOM_UTF8) :]
            yield line.rstrip(b"\r\n")

    def _jsonl(self, raw: BinaryIO) -> Iterator[SimRecord]:
        for line in self._raw_lines(raw):
            if not line.strip():
                continue
            # Most lines are one valid event: decoding it is what decode_record does
            # first, and the event gives the key and ts, so the line is parsed once.
            if len(line) <= MAX_EVENT_BYTES and line[:1] != b"[":
                event = decode_event(line)
                if event is not None:
                    if not self._held:
                        # What _stamped does for such a line, inlined: it is every line.
                        self._last_ts = ts = event.ts
                        self.records += 1
                        self.valid_events += 1
                        yield SimRecord.known_valid(event.partition_key(), line, ts)
                    else:
                        row = (event.partition_key(), line, event.ts, 1, 0, True)
                        yield from self._stamped(row)
                    continue
            key: bytes | None = None
            ts_or_none: int | None = None
            try:
                parsed = orjson.loads(line)
            except orjson.JSONDecodeError:
                parsed = None  # published as is: the pipeline dead-letters it
            if isinstance(parsed, dict):
                key, ts_or_none = _key_and_ts(parsed)
            elif isinstance(parsed, list):
                key, ts_or_none = _batch_key_and_ts(parsed)
            yield from self._stamped(_decoded_row(key, line, ts_or_none))

    def _csv(self, raw: BinaryIO) -> Iterator[SimRecord]:
        text = (line.decode("utf-8", errors="replace") + "\n" for line in self._raw_lines(raw))
        reader = csv.reader(text)
        header = next(reader, None)
        if header is None:
            return
        names = [name.strip() for name in header]
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            data: dict[str, Any] = {}
            for name, cell in zip(names, row, strict=False):
                if not name or cell == "":
                    continue
                data[name] = _convert(name, cell)
            value = orjson.dumps(data)
            key, ts = _key_and_ts(data)
            yield from self._stamped(_decoded_row(key, value, ts))

    # -- timestamps ------------------------------------------------------------------

    def _stamped(self, row: _Row) -> Iterator[SimRecord]:
        """The records ``row`` releases: none while it waits for a ts, else it and the held."""
        held = self._held
        ts = row[2]
        if ts is None and self._last_ts is None and len(held) < _MAX_HELD:
            held.append(row)
            return
        if ts is not None:
            self._last_ts = ts
        stamp = self._last_ts if self._last_ts is not None else self._fallback()
        while held:
            yield self._record(held.popleft(), stamp)
        yield self._record(row, stamp)

    def _release_held(self) -> Iterator[SimRecord]:
        """At the end: lines that never saw a ts take the last one, or the fallback."""
        held = self._held
        if held:
            stamp = self._last_ts if self._last_ts is not None else self._fallback()
            while held:
                yield self._record(held.popleft(), stamp)

    def _fallback(self) -> int:
        if self._fallback_ts_ms is None:
            self._fallback_ts_ms = int(time.time() * 1000)
        return self._fallback_ts_ms

    def _record(self, row: _Row, stamp: int) -> SimRecord:
        key, value, ts, valid, rejected, one_event = row
        self.records += 1
        self.valid_events += valid
        self.rejected += rejected
        if one_event:
            return SimRecord.known_valid(key, value, ts if ts is not None else stamp)
        return SimRecord(
            key, value, ts if ts is not None else stamp, None, "invalid" if rejected else "ok"
        )


#: A line on its way to a record: key, value, ts (None: not usable), events that will
#: count, elements the pipeline will dead-letter, and whether the line is exactly one
#: valid event (only that may be batched by a publisher; arrays and invalid lines are
#: published unchanged).
_Row = tuple[bytes | None, bytes, int | None, int, int, bool]


def _decoded_row(key: bytes | None, value: bytes, ts: int | None) -> _Row:
    """``key`` and ``ts`` as orjson read them; one valid event gives its own instead
    (the pipeline's decoder also takes JSON orjson refuses, e.g. NaN in an unknown field).
    """
    decoded = decode_record(value)
    single = not decoded.rejected and len(decoded.events) == 1 and value[:1] != b"["
    if single:
        key, ts = decoded.events[0].partition_key(), decoded.events[0].ts
    return (key, value, ts, len(decoded.events), len(decoded.rejected), single)


def iter_records(
    path: str | os.PathLike[str], fmt: Format | None = None, *, fallback_ts_ms: int | None = None
) -> Iterator[SimRecord]:
    """The records of a JSONL or CSV file (see :class:`ReplayReader`)."""
    return iter(ReplayReader(path, fmt, fallback_ts_ms=fallback_ts_ms))


def _key_and_ts(data: dict[str, Any]) -> tuple[bytes | None, int | None]:
    creator = data.get("creator_id")
    key = creator.encode() if isinstance(creator, str) and creator else None
    return key, ts_to_ms(data.get("ts"))


def _batch_key_and_ts(items: list[Any]) -> tuple[bytes | None, int | None]:
    """A batch line: keyed by its creator if all elements agree; newest event time."""
    creators = {item.get("creator_id") for item in items if isinstance(item, dict)}
    key = None
    if len(creators) == 1:
        (creator,) = creators
        key = creator.encode() if isinstance(creator, str) and creator else None
    times = [ts_to_ms(item.get("ts")) for item in items if isinstance(item, dict)]
    usable = [t for t in times if t is not None]
    return key, max(usable) if usable else None


def _convert(name: str, cell: str) -> Any:
    """CSV text to the JSON type the contract expects, where the text allows it."""
    text = cell.strip()
    # Only plain ASCII digits: int() would also take "1_000", "+5" or Arabic-Indic
    # digits, which a JSON producer could never have sent.
    if name in _COUNT_FIELDS:
        digits = text[1:] if text.startswith("-") else text
        return int(text) if digits.isascii() and digits.isdigit() else cell
    if name == "ts" and text.isascii() and text.isdigit():
        return int(text)
    return cell
