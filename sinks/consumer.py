"""What every "read a topic, write, commit" service shares: how it reads.

Two services consume a topic, write what it brought to a store and only then commit
their offsets: the row sink (``sinks.service``, kafka-python, in a thread) and the alert
sink (``creatorpulse.alerts.outbox``, aiokafka, beside the webhook deliveries on an event
loop). They differ in their client and what they write, not in how they read, so that
lives here once, in :class:`GroupReader`:

- the consumer group's settings: offsets are never committed automatically, because a
  commit may only follow a write; a new group starts at the earliest offset, so nothing
  published before it first ran is skipped;
- the backoff between attempts at a write during an outage (:class:`~sinks.base.Backoff`).

Both clients take the same keyword names for these settings, so one dict serves both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sinks.base import Backoff


@dataclass(frozen=True)
class GroupReader:
    """The broker and consumer group a committing service reads with, and its retry pace."""

    bootstrap: str
    group_id: str
    retry_initial_s: float = 0.5
    retry_max_s: float = 15.0

    def consumer_options(self, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for a ``kafka.KafkaConsumer`` or an ``AIOKafkaConsumer``;
        ``extra`` adds client-specific ones."""
        return {
            "bootstrap_servers": self.bootstrap.split(","),
            "group_id": self.group_id,
            "client_id": f"{self.group_id}-consumer",
            # Committed by the service, after the write: an automatic commit could
            # cover records that were read but never written.
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "session_timeout_ms": 10_000,
            **extra,
        }

    def backoff(self) -> Backoff:
        """A fresh backoff: ``retry_initial_s``, doubling, capped at ``retry_max_s``."""
        return Backoff(self.retry_initial_s, self.retry_max_s)
