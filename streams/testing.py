"""Test doubles for the stream processor's ports (``streams.ports``). Only for tests.

Shipped in the package, as bytewax ships ``testing.py``, so every test uses the same
doubles instead of each writing its own: a producer that records what it sends (and
can refuse chosen records, as a broker would), an in-memory changelog, an offset
committer that records commits, and a record as the consumer delivers it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP

from streams.ports import OutRecord

__test__ = False  # pytest: these are not tests


@dataclass(frozen=True)
class TestMessage:
    __test__ = False
    topic: str
    partition: int
    offset: int
    value: bytes | None


def record(
    offset: int, value: bytes | None, *, topic: str = "post-stats", partition: int = 0
) -> TestMessage:
    """A record as a fetch delivers it (the members of aiokafka's ``ConsumerRecord``)."""
    return TestMessage(topic, partition, offset, value)


@dataclass
class RecordingProducer:
    """Records what it sends. ``refuse`` holds keys whose next delivery fails once, as a
    broker refusing the record; ``flush`` yields to the loop for ``flush_s`` seconds.
    With ``keep`` False it takes every record and keeps none (a long run's producer
    that kept them all would itself be what grows)."""

    sent: list[OutRecord] = field(default_factory=list)
    refuse: set[bytes] = field(default_factory=set)
    flush_s: float = 0.0
    keep: bool = True

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
    ) -> asyncio.Future[None]:
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if key is not None and key in self.refuse:
            self.refuse.discard(key)
            delivery.set_exception(RuntimeError("refused by the test producer"))
        else:
            if self.keep:
                self.sent.append((topic, key, value, partition))
            delivery.set_result(None)
        return delivery

    async def flush(self) -> None:
        await asyncio.sleep(self.flush_s)

    def values(self, topic: str) -> list[bytes]:
        """The values sent to ``topic``, in order (tombstones left out)."""
        return [v for t, _, v, _ in self.sent if t == topic and v is not None]


@dataclass
class InMemoryChangelog:
    topic: str = "creatorpulse-state-changelog"
    data: dict[bytes, bytes] = field(default_factory=dict)


@dataclass
class RecordingCommitter:
    """Records commits and seeks. ``log_holes`` maps a partition to offsets that hold no
    record (as transaction markers do), for :meth:`first_offset_at`."""

    offsets: dict[TP, int] = field(default_factory=dict)
    commits: list[dict[TP, int]] = field(default_factory=list)
    seeks: list[tuple[TP, int]] = field(default_factory=list)
    log_holes: dict[TP, set[int]] = field(default_factory=dict)

    def committed(self, tp: TP) -> int | None:
        return self.offsets.get(tp)

    async def commit(self, offsets: Mapping[TP, int]) -> None:
        self.commits.append(dict(offsets))
        self.offsets.update(offsets)

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))

    async def first_offset_at(self, tp: TP, offset: int) -> int | None:
        holes = self.log_holes.get(tp, set())
        while offset in holes:
            offset += 1
        return offset
