"""A worker's sink in topic mode: its window rows to the window-rows topic.

With ``CREATORPULSE_SINK=topic`` a worker publishes each flush's window rows to
``schemas.topics.Topics.window_rows`` instead of writing ClickHouse, and a separate
``creatorpulse sink`` (``sinks.service``) writes them. It lives here, in the composition
root, because it uses ``producers.publisher``: ``sinks`` never imports ``producers``.
"""

from __future__ import annotations

import orjson

from producers.publisher import Publisher
from schemas.rows import CreatorWindowRow, DeadLetter, window_row_to_json
from sinks.base import Refused


class WindowRowPublisher:
    """A worker's sink in topic mode (``sinks.base.RowSink``).

    Each call returns once Kafka acknowledged every row, or raises (the worker's sink
    writer then retries the same rows). A row that cannot be encoded (a counter past 64
    bits) is :class:`~sinks.base.Refused`; since dead letters are not sent from here, the
    worker's writer then only logs and counts it.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._publisher = Publisher(bootstrap, topic)

    def write_creator_windows(self, rows: list[CreatorWindowRow]) -> None:
        try:
            values = [window_row_to_json(row) for row in rows]
        except orjson.JSONEncodeError as exc:
            raise Refused(self.topic, str(exc)) from exc
        for row, value in zip(rows, values, strict=True):
            # Keyed by creator: one creator's rows stay in order on one partition.
            self._publisher.publish_raw(value, key=row.creator_id.encode())
        self._publisher.flush()

    def write_dead_letters(self, rows: list[DeadLetter]) -> None:
        """Nothing to send: the sink reads dead letters from the dead-letter topic."""

    def close(self) -> None:
        self._publisher.close()
