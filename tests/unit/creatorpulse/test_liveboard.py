"""The run board's loop without a pipeline: keys, plain and JSON lines; the demo state."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

from creatorpulse.board import Board, SortKey, Terms, build_board
from creatorpulse.demo import STATE_FILE, next_campaign
from creatorpulse.liveboard import BoardLoop, next_sort
from schemas.metrics import METRICS

T0 = 1_700_000_000


def fetch_counting(stop_after: int, stop: threading.Event) -> tuple[list[SortKey], object]:
    asked: list[SortKey] = []

    def fetch(sort: SortKey, limit: int) -> Board:
        asked.append(sort)
        if len(asked) >= stop_after:
            stop.set()
        rows = [
            {**dict.fromkeys(METRICS, 0), "campaign_id": "c1", "creator_id": "a",
             "handle": "@a", "tier": None, "views": 900, "likes": 90},
        ]  # fmt: skip
        terms = {("c1", "a"): Terms(fee=10.0, currency="USD")}
        return build_board(rows, terms, from_s=T0, to_s=T0 + 60, sort=sort, limit=limit)

    return asked, fetch


def test_keys_choose_sorts_and_s_cycles() -> None:
    assert next_sort("er", "w") == "views"
    assert next_sort("er", "$") == "revenue"
    assert next_sort("er", "s") == "ctr"
    assert next_sort("revenue", "s") == "er"
    assert next_sort("er", "x") is None
    stop = threading.Event()
    loop = BoardLoop(fetch=lambda s, _: Board(s, 0, 0, 0, (), ()), stats=dict, stop=stop,
                     title="t", sort="er")  # fmt: skip
    loop.on_key("A")  # upper case works too
    assert loop.sort == "cpa"
    loop.on_key("?")
    assert loop.sort == "cpa"


def test_without_a_terminal_it_prints_lines_until_stopped_and_one_at_the_end() -> None:
    stop = threading.Event()
    asked, fetch = fetch_counting(3, stop)
    out = io.StringIO()
    loop = BoardLoop(fetch=fetch, stats=lambda: {"records": 5}, stop=stop, title="t",  # type: ignore[arg-type]
                     sort="views", progress_s=0.01, out=out)  # fmt: skip
    loop.run(tty=False)
    lines = out.getvalue().splitlines()
    # The third fetch sets stop; the loop sees it after that line and draws one more:
    # the final totals.
    assert len(lines) == len(asked) == 4
    for line in lines:
        assert "records=5 | [c1] creators=1 views=900 er=10.0%" in line
        assert "top by views: @a 900" in line


def test_json_lines_hold_the_whole_board() -> None:
    stop = threading.Event()
    _, fetch = fetch_counting(2, stop)
    out = io.StringIO()
    loop = BoardLoop(fetch=fetch, stats=lambda: {"records": 5}, stop=stop, title="t",  # type: ignore[arg-type]
                     sort="cpa", progress_s=0.01, as_json=True, out=out)  # fmt: skip
    loop.run(tty=False)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(records) == 3
    assert records[0]["stats"] == {"records": 5}
    assert records[0]["sort"] == "cpa"
    assert records[0]["campaigns"][0]["spend"] == 10.0
    assert records[0]["creators"][0]["creator_id"] == "a"


def test_a_failing_fetch_keeps_the_last_board() -> None:
    stop = threading.Event()
    calls = {"n": 0}
    errors: list[Exception] = []
    _, good = fetch_counting(99, threading.Event())

    def flaky(sort: SortKey, limit: int) -> Board:
        calls["n"] += 1
        if calls["n"] == 3:
            stop.set()
        if calls["n"] >= 2:
            raise RuntimeError("store busy")
        return good(sort, limit)  # type: ignore[operator, no-any-return]

    out = io.StringIO()
    loop = BoardLoop(fetch=flaky, stats=dict, stop=stop, title="t", sort="er",
                     progress_s=0.01, out=out, on_error=errors.append)  # fmt: skip
    loop.run(tty=False)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert all("[c1] creators=1" in line for line in lines)
    assert [str(e) for e in errors] == ["store busy"] * 3


def test_demo_campaign_continues_until_a_new_one_is_asked_for(tmp_path: Path) -> None:
    first = next_campaign(tmp_path, now_ms=1_000_000)
    assert (first.run_id, first.session, first.flight_start_ms) == ("demo1000", 1, 1_000_000)
    again = next_campaign(tmp_path, now_ms=9_000_000)
    assert (again.run_id, again.session, again.flight_start_ms) == ("demo1000", 2, 1_000_000)
    assert again.owns("demo1000-c01-glowlab")
    assert not again.owns("demo10000-c01-glowlab")
    fresh = next_campaign(tmp_path, new=True, now_ms=9_000_000)
    assert (fresh.run_id, fresh.session) == ("demo9000", 1)
    (tmp_path / STATE_FILE).write_text("{not json")
    assert next_campaign(tmp_path, now_ms=5_000).run_id == "demo5"


def test_the_terminal_height_decides_how_many_creators_a_board_asks_for() -> None:
    asked: list[int] = []

    def fetch(sort: SortKey, limit: int) -> Board:
        asked.append(limit)
        return Board(sort, 0, 0, 0, (), ())

    loop = BoardLoop(fetch=fetch, stats=dict, stop=threading.Event(), title="t", sort="er")
    loop.board(50)  # no board yet: three campaign lines assumed
    loop.board(50)  # the last board had none
    loop.board(10)  # a short terminal still shows a few
    loop.board(None)  # a pipe
    assert asked == [50 - 13 - 3, 50 - 13, 5, 15]
    fixed = BoardLoop(fetch=fetch, stats=dict, stop=threading.Event(), title="t", sort="er",
                      limit=7)  # fmt: skip
    fixed.board(50)
    assert asked[-1] == 7
