"""Event-time windows and the watermark: pure functions, no Faust.

Faust's own windowed tables expire windows on the wall clock and skip closes across
partitions (docs/design.md §3), so window assignment, lateness and closing live here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Default tumbling window sizes in seconds (contract: 60 s and 3600 s).
DEFAULT_WINDOW_SIZES_S: tuple[int, ...] = (60, 3600)
#: Default grace period (contract: 10 minutes).
DEFAULT_GRACE_S = 600
#: How far ahead of the worker's clock an event time may be (contract v1.1: a few
#: minutes). Clocks of producers and workers disagree by seconds, not by this much.
DEFAULT_FUTURE_SKEW_S = 300


def window_start_ms(ts_ms: int, size_s: int) -> int:
    """Start of the tumbling window of ``size_s`` seconds that holds ``ts_ms``."""
    size_ms = size_s * 1000
    return ts_ms - ts_ms % size_ms


def window_end_ms(start_ms: int, size_s: int) -> int:
    return start_ms + size_s * 1000


def is_closed(window_end: int, horizon_ms: int | None) -> bool:
    """A window is final once its end is at or before the lateness horizon."""
    return horizon_ms is not None and window_end <= horizon_ms


@dataclass(slots=True)
class Watermark:
    """The highest event time seen on a partition, and the lateness rule it implies.

    An event is late when its time is older than ``watermark - grace``. Nothing that is
    on time can land in a window that ended at or before that horizon, so such windows
    are final and may leave memory.
    """

    grace_ms: int
    value_ms: int | None = None

    def is_late(self, ts_ms: int) -> bool:
        return self.value_ms is not None and ts_ms < self.value_ms - self.grace_ms

    def observe(self, ts_ms: int) -> None:
        if self.value_ms is None or ts_ms > self.value_ms:
            self.value_ms = ts_ms

    def admit(self, ts_ms: int) -> bool:
        """The rule for one event in arrival order: ``False`` if late, else observed."""
        if self.is_late(ts_ms):
            return False
        self.observe(ts_ms)
        return True

    def admit_all(self, timestamps: Sequence[int]) -> bool:
        """Admit a record's events at once when none of them can be late; else do nothing.

        The same outcome as :meth:`admit` for each in order, in one step: the watermark
        only grows, so while the events are read it never exceeds ``max(watermark,
        newest event)``, and an event no older than that minus grace is never late.
        ``False`` means some event may be late: the caller admits them one by one.
        """
        if not timestamps:
            return True
        newest = max(timestamps)
        if self.value_ms is not None and self.value_ms > newest:
            newest = self.value_ms
        if min(timestamps) < newest - self.grace_ms:
            return False
        self.value_ms = newest
        return True

    def horizon_ms(self) -> int | None:
        """Events older than this are late; windows ending at or before it are closed."""
        return None if self.value_ms is None else self.value_ms - self.grace_ms
