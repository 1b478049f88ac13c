"""Log output of the creatorpulse commands: the libraries' repeated lines rate-limited,
as text or as one JSON object per line (``--log-format json``, :class:`JsonFormatter`).

While Kafka is away, aiokafka, faust and kafka-python log the same failure on every
retry, several lines a second; a short outage buries everything else in the log.
:class:`RepeatLimiter` lets the first line of each kind through, counts the repeats
within an interval, and tells how many it left out on the next line of that kind
after the interval. Lines of creatorpulse's own packages always pass.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

#: Top-level packages whose loggers are creatorpulse's own: never rate-limited.
OWN_PACKAGES = ("creatorpulse", "streams", "sinks", "producers", "schemas")

#: How long repeats of a library line are counted instead of logged.
REPEAT_INTERVAL_S = 30.0

# Beyond this many kinds of line, kinds whose interval is over are forgotten, so
# messages with ever-new text cannot grow the table without bound.
MAX_KINDS = 1000

_DIGITS = re.compile(r"\d+")


def _is_own(name: str) -> bool:
    return name.partition(".")[0] in OWN_PACKAGES


class RepeatLimiter(logging.Filter):
    """A handler filter: one line per kind and interval from third-party loggers.

    A kind is the logger, the level and the message template with its digits blanked
    (some clients format node ids, ports and backoffs into the message itself).
    ``clock`` returns seconds; injected so tests need no sleeps.
    """

    def __init__(
        self,
        interval_s: float = REPEAT_INTERVAL_S,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.interval_s = interval_s
        self._clock = clock
        # kind -> [time its current interval started, repeats left out since]
        self._kinds: dict[tuple[str, int, str], list[float]] = {}
        # Handlers call filters outside their own lock, from any thread.
        self._lock = threading.Lock()

    @property
    def kinds(self) -> int:
        """How many kinds of line it keeps count of now."""
        return len(self._kinds)

    def filter(self, record: logging.LogRecord) -> bool:
        if _is_own(record.name):
            return True
        kind = (record.name, record.levelno, _DIGITS.sub("#", str(record.msg)))
        now = self._clock()
        with self._lock:
            seen = self._kinds.get(kind)
            if seen is not None and now - seen[0] < self.interval_s:
                seen[1] += 1
                return False
            left_out, since_s = (int(seen[1]), now - seen[0]) if seen is not None else (0, 0.0)
            if seen is None and len(self._kinds) >= MAX_KINDS:
                self._forget_finished(now)
            self._kinds[kind] = [now, 0]
        if left_out:
            with contextlib.suppress(Exception):  # a bad format is the handler's to report
                record.msg = (
                    f"{record.getMessage()} [{left_out} more like this in the {since_s:.0f}s "
                    "before, not logged]"
                )
                record.args = None
        return True

    def _forget_finished(self, now: float) -> None:
        for kind in [k for k, (start, _) in self._kinds.items() if now - start >= self.interval_s]:
            del self._kinds[kind]


@contextlib.contextmanager
def silenced(*names: str) -> Iterator[None]:
    """Drop every record of the loggers ``names`` (and their children) for a while.

    For a probe whose failure we report ourselves, in one message.
    """
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


# What every LogRecord carries; anything else on a record came from ``extra=`` and is
# one of the line's fields.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601, milliseconds), ``level``,
    ``logger``, ``message``, the fields passed with ``extra=`` and, for an exception,
    ``error`` (its type and text) and ``traceback``. For log shippers: no line ever
    spans two lines, whatever the message holds."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                line[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            line["error"] = f"{type(exc).__name__}: {exc}"
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def formatter(log_format: str = "text") -> logging.Formatter:
    """The formatter of ``--log-format`` / CREATORPULSE_LOG_FORMAT: ``text`` or ``json``."""
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    raise ValueError(f"log format must be text or json, got {log_format!r}")


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Discard what native code writes to file descriptor 2 inside the block.

    chDB prints its own errors (``Code: 76. DB::Exception: Cannot lock file ...``)
    straight to the process's stderr before raising them; the caller turns the
    exception into one message that says what to do, so the raw line is noise. Python
    code in other threads that writes to stderr meanwhile is discarded too: keep the
    block short.
    """
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
