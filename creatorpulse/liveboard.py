"""The board while `creatorpulse run` runs: live on a terminal, plain lines in a pipe.

On a terminal (stdout a TTY) the board redraws in place and single keys re-sort it
(:data:`creatorpulse.terminal.SORT_KEYS_BY_KEY`, ``s`` cycles, ``q`` quits); the
terminal is put in cbreak mode only while the board runs, so Ctrl-C still stops the
process. Anywhere else (``| tee run.log``, nohup, CI) there is nothing to redraw: one
plain line (:func:`creatorpulse.terminal.progress_line`), or one JSON object with
``--json``, every ``progress_s`` seconds and once more at the end, so a log shows
progress.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live

from creatorpulse.board import SORT_KEYS, Board, SortKey, empty_board
from creatorpulse.terminal import SORT_KEYS_BY_KEY, progress_line, screen

#: Creators in a progress line's board (a pipe has no height), and the fewest a
#: terminal board shows however short the terminal.
DEFAULT_LIMIT = 15
MIN_ROWS = 5

#: Polls of the key reader: how soon it notices the board has stopped.
_KEY_POLL_S = 0.2


def next_sort(current: SortKey, key: str) -> SortKey | None:
    """The sort a key press selects, or ``None`` for a key that sorts nothing."""
    if key in SORT_KEYS_BY_KEY:
        return SORT_KEYS_BY_KEY[key]
    if key == "s":
        return SORT_KEYS[(SORT_KEYS.index(current) + 1) % len(SORT_KEYS)]
    return None


@contextlib.contextmanager
def key_presses(on_key: Callable[[str], None], stop: threading.Event) -> Iterator[bool]:
    """Calls ``on_key`` with each key typed on stdin while the block runs; yields
    whether keys can be read (stdin is a terminal). Restores the terminal after."""
    stdin = sys.stdin
    if stdin is None or not stdin.isatty():
        yield False
        return
    import termios
    import tty

    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)
    # cbreak, not raw: keys arrive one at a time, and Ctrl-C still raises SIGINT.
    tty.setcbreak(fd)
    done = threading.Event()

    def read() -> None:
        while not (done.is_set() or stop.is_set()):
            ready, _, _ = select.select([fd], [], [], _KEY_POLL_S)
            if not ready:
                continue
            data = os.read(fd, 32)
            if not data:
                return
            for ch in data.decode(errors="ignore"):
                on_key(ch)

    reader = threading.Thread(target=read, name="board-keys", daemon=True)
    reader.start()
    try:
        yield True
    finally:
        done.set()
        reader.join(timeout=1)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@dataclass
class BoardLoop:
    """Draws the board until ``stop`` is set. ``fetch(sort, limit)`` reads the board; a
    failing fetch shows the last board (the board never takes the pipeline down).
    ``limit`` None: on a terminal, as many creators as its height leaves room for."""

    fetch: Callable[[SortKey, int], Board]
    stats: Callable[[], Mapping[str, Any]]
    stop: threading.Event
    title: str
    sort: SortKey
    notes: tuple[str, ...] = ()
    refresh_s: float = 1.0
    progress_s: float = 10.0
    as_json: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    on_error: Callable[[Exception], None] = lambda _: None
    limit: int | None = None
    _changed: threading.Event = field(default_factory=threading.Event)
    _last: Board | None = None

    def on_key(self, key: str) -> None:
        if key == "q":
            signal.raise_signal(signal.SIGINT)  # the same clean stop as Ctrl-C
            return
        chosen = next_sort(self.sort, key.lower() if key != "$" else key)
        if chosen is not None:
            self.sort = chosen
            self._changed.set()  # redraw now, not at the next refresh

    def board(self, height: int | None = None) -> Board:
        try:
            self._last = self.fetch(self.sort, self._limit(height))
        except Exception as exc:
            self.on_error(exc)
        return self._last if self._last is not None else empty_board(self.sort)

    def _limit(self, height: int | None) -> int:
        if self.limit is not None:
            return self.limit
        if height is None:
            return DEFAULT_LIMIT
        # Lines that are not creator rows: the title and header (3), each campaign's
        # line and its table's header (2 + n), counters, footnotes and keys (about 8).
        campaigns = len(self._last.campaigns) if self._last is not None else 3
        return max(MIN_ROWS, height - 13 - campaigns)

    def run(self, *, tty: bool | None = None) -> None:
        if tty is None:
            tty = self.out.isatty()
        if tty:
            self._live()
        else:
            self._lines()

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self._changed.wait(min(left, 0.1)):
                break
        self._changed.clear()

    def _live(self) -> None:
        console = Console(file=self.out)
        with (
            key_presses(self.on_key, self.stop) as keys,
            Live(console=console, refresh_per_second=4, transient=False) as live,
        ):
            while not self.stop.is_set():
                height = console.size.height
                board, stats = self.board(height), self.stats()
                view = screen(board, title=self.title, stats=stats, notes=self.notes, keys=keys)
                if self.limit is None:
                    # The estimate above does not know how lines wrap at this width: drop
                    # rows until the screen fits, rather than let the bottom be cut off.
                    over = len(console.render_lines(view, pad=False)) - height
                    if over > 0 and len(board.rows) > MIN_ROWS:
                        rows = board.rows[: max(MIN_ROWS, len(board.rows) - over)]
                        board = replace(board, rows=rows)
                        view = screen(
                            board, title=self.title, stats=stats, notes=self.notes, keys=keys
                        )
                live.update(view)
                self._wait(self.refresh_s)

    def _lines(self) -> None:
        while True:
            stopping = self.stop.is_set()
            self._line()
            if stopping:
                return
            self._wait(self.progress_s)

    def _line(self) -> None:
        board, stats = self.board(), dict(self.stats())
        now = datetime.now(UTC)
        if self.as_json:
            text = json.dumps(
                {"time": now.isoformat().replace("+00:00", "Z"), "stats": stats, **board.to_json()}
            )
        else:
            text = f"{now:%H:%M:%S} {progress_line(board, stats)}"
        print(text, file=self.out, flush=True)
