"""File replay: JSONL and CSV parsing, keys, timestamps, progress, and the paced loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from producers.loops import replay_file
from producers.publisher import PublisherStats
from producers.replay import (
    MAX_LINE_BYTES,
    ReplayReader,
    detect_format,
    iter_records,
    ts_to_ms,
)
from producers.simulator import SimRecord
from schemas.events import MAX_EVENT_BYTES, DecodedEvent, PostStatEvent, decode_record

T0 = 1_795_338_000_000  # 2026-11-22T09:00:00Z


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "e-1",
        "ts": T0,
        "campaign_id": "spring",
        "creator_id": "alice",
        "post_id": "p-1",
        "views": 100,
        "likes": 7,
    }
    base.update(overrides)
    return base


def write_jsonl(path: Path, *lines: bytes) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


# -- JSONL -----------------------------------------------------------------------------


def test_jsonl_lines_become_records_keyed_by_creator_at_event_time(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "events.jsonl",
        orjson.dumps(event()),
        orjson.dumps(event(event_id="e-2", ts="2026-11-22T10:00:05+01:00", creator_id="bob")),
    )
    first, second = iter_records(path)
    assert first.key == b"alice"
    assert first.timestamp_ms == T0
    assert first.value == orjson.dumps(event())  # published byte for byte
    assert first.event is not None
    assert first.event.views == 100
    assert first.label == "ok"
    assert second.key == b"bob"
    assert second.timestamp_ms == T0 + 5000


def test_a_broken_line_is_still_published_for_the_pipeline_to_dead_letter(
    tmp_path: Path,
) -> None:
    broken = b'{"event_id": "e-2", "views": 1'
    path = write_jsonl(
        tmp_path / "events.jsonl",
        orjson.dumps(event()),
        broken,
        b"",
        b"   ",
        orjson.dumps(event(event_id="e-3", ts=T0 + 2000)),
    )
    reader = ReplayReader(path)
    records = list(reader)
    assert [r.value for r in records][1] == broken
    bad = records[1]
    assert bad.key is None
    assert bad.event is None
    assert bad.label == "invalid"
    assert bad.timestamp_ms == T0  # the previous line's time: it lands next to it
    assert decode_record(bad.value).rejected[0].reason.startswith("bad_json")
    assert len(records) == 3  # blank lines are not records
    assert reader.records == 3
    assert reader.valid_events == 2
    assert reader.rejected == 1


def test_a_valid_json_line_that_breaks_the_contract_keeps_its_key(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "events.jsonl",
        orjson.dumps(event(ts="2026-11-22T10:00:00")),  # naive: no offset
        orjson.dumps(event(event_id="e-2", views=-3)),
    )
    naive, negative = iter_records(path)
    assert naive.key == b"alice"
    assert naive.event is None
    assert naive.label == "invalid"
    assert naive.timestamp_ms == T0  # held until a line with a usable ts came
    assert negative.key == b"alice"
    assert negative.event is None
    assert negative.timestamp_ms == T0


def test_lines_before_any_usable_ts_take_the_first_one(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "events.jsonl",
        b"not json",
        b"[1, 2",
        orjson.dumps(event(ts=T0 + 7)),
    )
    assert [r.timestamp_ms for r in iter_records(path)] == [T0 + 7] * 3


def test_a_file_without_any_usable_ts_uses_the_fallback(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", b"nope", b"{}")
    records = list(iter_records(path, fallback_ts_ms=42))
    assert [r.timestamp_ms for r in records] == [42, 42]
    assert [r.key for r in records] == [None, None]


def test_crlf_endings_and_a_byte_order_mark_are_not_part_of_the_value(tmp_path: Path) -> None:
    path = tmp_path / "windows.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + orjson.dumps(event()) + b"\r\n")
    (record,) = iter_records(path)
    assert record.value == orjson.dumps(event())
    assert record.event is not None


def test_an_array_line_is_one_batch_record_keyed_by_its_creator(tmp_path: Path) -> None:
    batch = orjson.dumps([event(), event(event_id="e-2", ts=T0 + 9)])
    mixed = orjson.dumps([event(), event(event_id="e-3", creator_id="bob")])
    path = write_jsonl(tmp_path / "batches.jsonl", batch, mixed)
    reader = ReplayReader(path)
    one, two = reader
    assert one.value == batch
    assert one.key == b"alice"
    assert one.timestamp_ms == T0 + 9
    assert one.event is None
    assert one.label == "ok"
    assert two.key is None  # creators disagree: no single key
    assert reader.valid_events == 4


def test_an_over_long_line_is_cut_so_it_still_dead_letters(tmp_path: Path) -> None:
    huge = b'{"event_id": "x", "pad": "' + b"a" * (MAX_LINE_BYTES + 10) + b'"}'
    path = write_jsonl(tmp_path / "huge.jsonl", huge, orjson.dumps(event()))
    reader = ReplayReader(path)
    cut, fine = reader
    assert len(cut.value) == MAX_EVENT_BYTES + 1
    assert decode_record(cut.value).rejected[0].reason.startswith("too_large")
    assert fine.event is not None
    assert reader.truncated == 1
    assert reader.bytes_read == reader.total_bytes


def test_reading_is_streamed_and_reports_progress(tmp_path: Path) -> None:
    lines = [orjson.dumps(event(event_id=f"e-{i}", ts=T0 + i)) for i in range(2000)]
    path = write_jsonl(tmp_path / "many.jsonl", *lines)
    reader = ReplayReader(path)
    assert reader.total_bytes == path.stat().st_size
    iterator = iter(reader)
    next(iterator)
    assert 0 < reader.bytes_read < reader.total_bytes / 10
    assert sum(1 for _ in iterator) == 1999
    assert reader.bytes_read == reader.total_bytes


def decoded(event: PostStatEvent | None) -> DecodedEvent | None:
    """A record's event as the pipeline's decoder gives it."""
    return DecodedEvent.from_model(event) if event is not None else None


def parse_once_oracle(lines: list[bytes]) -> list[tuple[Any, ...]]:
    """What a JSONL replay must give, computed the plain way: parse every line with orjson
    for its key and ts, decode it with the pipeline's decoder (the reader skips the
    orjson parse for lines that are one valid event; this is the check that it may).

    Lines without a usable ts take the previous one's, or the first usable one's.
    """
    rows: list[tuple[Any, ...]] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            parsed = orjson.loads(line)
        except orjson.JSONDecodeError:
            parsed = None
        key, ts = None, None
        if isinstance(parsed, dict):
            creator = parsed.get("creator_id")
            key = creator.encode() if isinstance(creator, str) and creator else None
            ts = ts_to_ms(parsed.get("ts"))
        elif isinstance(parsed, list):
            items = [i for i in parsed if isinstance(i, dict)]
            creators = {i.get("creator_id") for i in items}
            if len(creators) == 1:
                (creator,) = creators
                key = creator.encode() if isinstance(creator, str) and creator else None
            usable = [t for t in (ts_to_ms(i.get("ts")) for i in items) if t is not None]
            ts = max(usable) if usable else None
        decoded = decode_record(line)
        ok = not decoded.rejected
        single = ok and len(decoded.events) == 1 and line[:1] != b"["
        rows.append(
            (key, line, ts, decoded.events[0] if single else None, "ok" if ok else "invalid")
        )
    first = next(r[2] for r in rows if r[2] is not None)
    out, last = [], first
    for key, line, ts, ev, label in rows:
        last = ts if ts is not None else last
        out.append((key, line, last, ev, label))
    return out


def test_jsonl_records_are_what_parsing_every_line_twice_gives(tmp_path: Path) -> None:
    lines = [
        b'{"event_id": "no-ts", "creator_id": "alice"}',  # held until a ts comes
        orjson.dumps(event()),
        orjson.dumps(event(event_id="iso", kind="snapshot", ts="2026-11-22T10:00:00.250+01:00")),
        orjson.dumps(event(event_id="extra", extra={"nested": [1, 2.5, None]}, note="x")),
        b"  " + orjson.dumps(event(event_id="spaced")) + b"  ",
        b'{"event_id": "dup", "ts": 5, "views": -1, "views": 3, "campaign_id": "c",'
        b' "creator_id": "bob", "post_id": "p"}',
        orjson.dumps(event(event_id="neg", views=-1)),
        orjson.dumps(event(event_id="bool", likes=True)),
        orjson.dumps(event(event_id="float", likes=1.0)),
        orjson.dumps(event(event_id="big", likes=2**53 + 1)),
        orjson.dumps(event(event_id="ts-bool", ts=True)),
        orjson.dumps(event(event_id="naive", ts="2026-11-22T10:00:00")),
        orjson.dumps(event(event_id="x" * 129)),
        orjson.dumps(event(event_id="kind", kind="total")),
        orjson.dumps({k: v for k, v in event().items() if k != "creator_id"}),
        orjson.dumps(event(creator_id="")),
        orjson.dumps(event(creator_id=7)),
        orjson.dumps(event(event_id="pad", pad="a" * MAX_EVENT_BYTES)),  # too large
        orjson.dumps([event(event_id="b1"), event(event_id="b2", ts=T0 + 5)]),
        orjson.dumps([event(event_id="b3"), event(event_id="b4", views=-1)]),
        orjson.dumps([event(event_id="only")]),
        b"[]",
        b"{}",
        b"null",
        b"42",
        b'"text"',
        b'{"event_id": "trunc',
        b"",
        orjson.dumps(event(event_id="last", ts=T0 + 9)),
    ]
    path = write_jsonl(tmp_path / "mixed.jsonl", *lines)
    reader = ReplayReader(path)
    got = [(r.key, r.value, r.timestamp_ms, decoded(r.event), r.label) for r in reader]
    assert got == parse_once_oracle(lines)
    assert reader.records == len(got)
    assert reader.valid_events == sum(len(decode_record(r[1]).events) for r in got)
    assert reader.rejected == sum(len(decode_record(r[1]).rejected) for r in got)


def test_a_valid_event_orjson_cannot_parse_is_keyed_and_timed_by_the_event(
    tmp_path: Path,
) -> None:
    # NaN in an unknown field: the pipeline's decoder (pydantic) accepts the event,
    # orjson refuses the line. The record follows the decoder, like the worker will.
    line = orjson.dumps(event(event_id="nan", ts=T0 + 3))[:-1] + b', "score": NaN}'
    path = write_jsonl(tmp_path / "nan.jsonl", orjson.dumps(event()), line)
    _, record = iter_records(path)
    assert decode_record(line).events == [decoded(record.event)]
    assert record.key == b"alice"
    assert record.timestamp_ms == T0 + 3
    assert record.label == "ok"


# -- CSV -------------------------------------------------------------------------------


def test_csv_rows_convert_counts_to_ints_and_omit_empty_cells(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "event_id,kind,ts,campaign_id,creator_id,post_id,views,likes,saves,revenue_cents,note\n"
        f"e-1,delta,{T0},spring,alice,p-1,100,7,,250,first\n"
        "e-2,snapshot,2026-11-22T10:00:01+01:00,spring,bob,p-9,200,,3,,\n",
        encoding="utf-8",
    )
    first, second = iter_records(path)
    assert orjson.loads(first.value) == {
        "event_id": "e-1",
        "kind": "delta",
        "ts": T0,
        "campaign_id": "spring",
        "creator_id": "alice",
        "post_id": "p-1",
        "views": 100,
        "likes": 7,
        "revenue_cents": 250,
        "note": "first",
    }
    assert first.key == b"alice"
    assert first.timestamp_ms == T0
    assert first.event is not None
    assert first.event.saves == 0
    data = orjson.loads(second.value)
    assert data["ts"] == "2026-11-22T10:00:01+01:00"  # ISO text stays text
    assert "likes" not in data
    assert data["saves"] == 3
    assert second.key == b"bob"
    assert second.timestamp_ms == T0 + 1000
    assert second.event is not None
    assert second.event.kind == "snapshot"


@pytest.mark.parametrize(
    ("cell", "expected", "reason"),
    [
        ("-5", -5, "greater than or equal to 0"),
        ("1.5", "1.5", "valid integer"),
        ("1_000", "1_000", "valid integer"),
        ("+5", "+5", "valid integer"),
        ("seven", "seven", "valid integer"),
    ],
)
def test_csv_counts_that_are_not_plain_integers_stay_text_and_are_rejected(
    tmp_path: Path, cell: str, expected: Any, reason: str
) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        f"event_id,ts,campaign_id,creator_id,post_id,views\ne-1,{T0},c,alice,p,{cell}\n",
        encoding="utf-8",
    )
    (record,) = iter_records(path)
    assert orjson.loads(record.value)["views"] == expected
    assert record.event is None
    assert record.key == b"alice"
    assert reason in decode_record(record.value).rejected[0].reason


def test_csv_missing_fields_short_rows_and_quoted_cells(tmp_path: Path) -> None:
    path = tmp_path / "events.CSV"
    path.write_text(
        "event_id,ts,campaign_id,creator_id,post_id,views\n"
        f'e-1,{T0},"spring, the big one",alice,p-1,10,extra\n'
        f"e-2,{T0 + 1},spring\n"
        "\n",
        encoding="utf-8",
    )
    reader = ReplayReader(path)
    quoted, short = reader
    assert quoted.event is not None
    assert quoted.event.campaign_id == "spring, the big one"
    assert "extra" not in quoted.value.decode()  # cells past the header are ignored
    assert short.key is None
    assert short.event is None
    assert "Field required" in decode_record(short.value).rejected[0].reason
    assert reader.records == 2


def test_format_comes_from_the_suffix_or_is_given(tmp_path: Path) -> None:
    assert detect_format("a.jsonl") == "jsonl"
    assert detect_format("a.NDJSON") == "jsonl"
    assert detect_format(Path("dir/a.csv")) == "csv"
    with pytest.raises(ValueError, match="cannot tell the format"):
        detect_format("a.txt")
    path = write_jsonl(tmp_path / "events.txt", orjson.dumps(event()))
    (record,) = iter_records(path, "jsonl")
    assert record.event is not None


def test_ts_values() -> None:
    assert ts_to_ms(T0) == T0
    assert ts_to_ms("2026-11-22T09:00:00Z") == T0
    assert ts_to_ms("2026-11-22T09:00:00") is None
    assert ts_to_ms(True) is None
    assert ts_to_ms(-1) is None
    assert ts_to_ms(1.5) is None


# -- the replay loop, with a fake publisher and a fake clock ---------------------------


@dataclass
class FakePublisher:
    records: list[tuple[float, SimRecord]] = field(default_factory=list)
    flushes: int = 0
    stats: PublisherStats = field(default_factory=PublisherStats)
    clock: Any = None

    def publish(self, record: SimRecord) -> None:
        self.records.append((self.clock() if self.clock else 0.0, record))
        self.stats.records_sent += 1

    def flush(self, timeout: float | None = None) -> None:
        self.flushes += 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_replay_as_fast_as_possible_publishes_everything_without_waiting(
    tmp_path: Path,
) -> None:
    lines = [orjson.dumps(event(event_id=f"e-{i}", ts=T0 + i * 60_000)) for i in range(50)]
    path = write_jsonl(tmp_path / "e.jsonl", *lines, b"garbage")
    clock = FakeClock()
    publisher = FakePublisher(clock=clock)
    stats = replay_file(
        publisher,  # type: ignore[arg-type]
        path,
        progress=False,
        clock=clock,
        sleep=clock.sleep,
    )
    assert clock.now == 1000.0
    assert [r.value for _, r in publisher.records] == [*lines, b"garbage"]
    assert stats.records == 51
    assert stats.valid_events == 50
    assert stats.rejected == 1
    assert stats.bytes_read == path.stat().st_size
    assert stats.publisher.records_sent == 51
    assert publisher.flushes >= 1


def test_replay_paced_by_event_time_times_speed(tmp_path: Path) -> None:
    times = [0, 1000, 1000, 4000, 2000, 10_000]  # ms after T0; one goes backwards
    lines = [orjson.dumps(event(event_id=f"e-{i}", ts=T0 + t)) for i, t in enumerate(times)]
    path = write_jsonl(tmp_path / "e.jsonl", *lines)
    clock = FakeClock()
    publisher = FakePublisher(clock=clock)
    replay_file(
        publisher,  # type: ignore[arg-type]
        path,
        speed=2.0,
        progress=False,
        clock=clock,
        sleep=clock.sleep,
    )
    sent_at = [round(at - 1000.0, 3) for at, _ in publisher.records]
    # Twice as fast as recorded; the out-of-order one goes at once.
    assert sent_at == [0.0, 0.5, 0.5, 2.0, 2.0, 5.0]


def test_replay_refuses_a_non_positive_speed(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", orjson.dumps(event()))
    with pytest.raises(ValueError, match="speed must be > 0"):
        replay_file(FakePublisher(), path, speed=0, progress=False)  # type: ignore[arg-type]
