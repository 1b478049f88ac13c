"""What the stream processor needs from the outside world, as Protocols.

The processor (``streams.processor``) is written against these, not against Faust: the
worker passes Faust's objects or their adapters (``streams.faust_compat``), and the tests
pass the doubles in ``streams.testing``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, MutableMapping
from typing import Any, Protocol

from faust.types import TP

#: What a flush sends: (topic, key, value, partition; None lets Kafka choose by key).
OutRecord = tuple[str, bytes | None, bytes | None, int | None]


class Message(Protocol):
    """One Kafka record as the stream delivers it."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def value(self) -> bytes | None: ...


class Producer(Protocol):
    """Sends records and says when Kafka took them (Faust's producer has this shape)."""

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
    ) -> Awaitable[Any]:
        """Queue one record; the returned future resolves once Kafka acknowledged it
        (or fails with Kafka's refusal). May raise at once, e.g. for an oversized one."""
        ...

    async def flush(self) -> None:
        """Wait until every queued record is acknowledged or refused."""
        ...


class Changelog(Protocol):
    """The partition states' changelog: a table's local copy and the topic behind it."""

    @property
    def data(self) -> MutableMapping[bytes, bytes]: ...
    @property
    def topic(self) -> str: ...


class OffsetCommitter(Protocol):
    """The consumer's offsets: commits what durable checkpoints cover, and rewinds a
    partition whose delivery skipped records."""

    def committed(self, tp: TP) -> int | None:
        """The offset last committed for ``tp`` (the next one to read), if known."""
        ...

    async def commit(self, offsets: Mapping[TP, int]) -> None: ...

    async def seek(self, tp: TP, offset: int) -> None:
        """Deliver ``tp`` again from ``offset``."""
        ...

    async def first_offset_at(self, tp: TP, offset: int) -> int | None:
        """The offset of the first record of ``tp`` at or after ``offset`` (a log can have
        holes: transaction markers, compaction), or ``None`` if it cannot tell now."""
        ...
