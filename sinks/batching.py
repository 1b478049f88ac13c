"""When to flush: a size-or-age batch policy, apart from any writer.

ClickHouse wants few, large inserts (>= 1k rows, about one insert per second per
table), while BI wants fresh numbers. :class:`BatchPolicy` holds items until either
limit is reached; the caller asks :meth:`BatchPolicy.is_ready` and then
:meth:`BatchPolicy.drain` s the batch into one insert. The policy does no I/O and
starts no timer: the clock is injected, so age-based flushing is tested without
sleeping, and the caller decides where the check runs (every poll of its loop).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")

#: Flush after this many items: large enough for ClickHouse, small enough for memory.
DEFAULT_MAX_ITEMS = 5000
#: ...or when the oldest item has waited this long, so live numbers stay live.
DEFAULT_MAX_AGE_S = 1.0


class BatchPolicy(Generic[T]):
    """A batch that is ready when it holds ``max_items`` items or its oldest item is
    ``max_age_s`` seconds old (by ``clock``), whichever comes first.

    An empty batch is never ready, whatever its age. Not thread-safe: one batch
    belongs to one writer loop.
    """

    def __init__(
        self,
        max_items: int = DEFAULT_MAX_ITEMS,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        if max_age_s < 0:
            raise ValueError(f"max_age_s must be >= 0, got {max_age_s}")
        self.max_items = max_items
        self.max_age_s = max_age_s
        self._clock = clock
        self._items: list[T] = []
        # Age counts from the first item, not from the last drain: an idle policy that
        # receives one item must still give the writer max_age_s to collect more.
        self._first_added_at: float | None = None

    def add(self, item: T) -> None:
        if self._first_added_at is None:
            self._first_added_at = self._clock()
        self._items.append(item)

    def extend(self, items: Iterable[T]) -> None:
        for item in items:
            self.add(item)

    def age_s(self) -> float:
        """Seconds since the oldest item in the batch was added; 0.0 when empty."""
        if self._first_added_at is None:
            return 0.0
        return self._clock() - self._first_added_at

    def is_ready(self) -> bool:
        if not self._items:
            return False
        return len(self._items) >= self.max_items or self.age_s() >= self.max_age_s

    def drain(self) -> list[T]:
        """Hand over every item (oldest first) and start an empty batch.

        The items are the caller's from here on: if writing them fails, the caller
        must retry them or stop, since the policy no longer holds them.
        """
        items, self._items = self._items, []
        self._first_added_at = None
        return items

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return (
            f"BatchPolicy(items={len(self._items)}, max_items={self.max_items}, "
            f"max_age_s={self.max_age_s})"
        )
