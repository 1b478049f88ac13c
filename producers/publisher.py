"""Publishing post-stat records to Kafka: a tuned, checked kafka-python producer.

Why a wrapper: the contract fixes the record key (``creator_id``) and the record
timestamp (the event time), delivery must be safe (``acks=all``, idempotent, retried)
and any failed send must surface at :meth:`Publisher.flush` instead of vanishing in a
background thread. It can also pack several events of one creator into one record (a
JSON array, which :func:`schemas.events.decode_record` reads), which is how the
pipeline reaches its throughput: kafka-python costs tens of microseconds per record,
so events per second scale with events per record.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.partitioner.default import DefaultPartitioner
from kafka.record import util as record_util

from producers.simulator import SimRecord
from schemas.events import MAX_BATCH_RECORD_BYTES, PostStatEvent

log = logging.getLogger(__name__)

Compression = Literal["gzip", "snappy", "lz4", "zstd"]

#: A batch record's value stays under this. The decoder accepts 1 MiB, but brokers
#: reject a request over ``message.max.bytes`` (1,048,588 by default) including the
#: record's own overhead, so a margin keeps every batch deliverable.
MAX_BATCH_VALUE_BYTES: Final = min(MAX_BATCH_RECORD_BYTES, 1_000_000)
#: Default bound on the event-time spread of buffered events (see ``max_span_ms``).
DEFAULT_MAX_SPAN_MS: Final = 30_000
# kafka-python 3 has no bound on buffered memory, and we keep one future per send so
# failures are found without a callback per message. Past this many unchecked sends we
# wait for the producer to drain and check them: memory stays bounded (backpressure).
_MAX_PENDING: Final = 100_000


class DeliveryError(Exception):
    """Some records were not acknowledged by the broker.

    ``failed_records`` / ``failed_events`` count what was lost since the last flush,
    ``first_error`` is the first exception seen (the rest are usually the same).
    """

    def __init__(self, failed_records: int, failed_events: int, first_error: BaseException):
        self.failed_records = failed_records
        self.failed_events = failed_events
        self.first_error = first_error
        super().__init__(
            f"{failed_records} record(s) ({failed_events} event(s)) not delivered; "
            f"first error: {first_error!r}"
        )


@dataclass(slots=True)
class PublisherStats:
    """Counts of what was handed to Kafka and what failed (cumulative)."""

    records_sent: int = 0
    events_sent: int = 0  # valid events; an invalid record counts as a record only
    bytes_sent: int = 0  # keys + values, before compression
    records_failed: int = 0
    events_failed: int = 0


class KeyCachingPartitioner(DefaultPartitioner):
    """kafka-python's default partitioner (Java-compatible murmur2), memoised per key.

    kafka-python hashes every key in pure Python on every send; our keys are creator
    ids, a few thousand at most, so the hash is computed once per key and partition
    count. Same partitions as the Java client, so other producers agree with us.
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        super().__init__()
        self._cache: dict[tuple[str, bytes], tuple[int, int]] = {}
        self._max_keys = max_keys

    def partition(
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: bytes | None,
        cluster: Any,
    ) -> int:
        if serialized_key is None:
            return int(super().partition(topic, key, None, value, serialized_value, cluster))
        partitions = cluster.partitions_for_topic(topic)
        count = len(partitions) if partitions else 0
        cached = self._cache.get((topic, serialized_key))
        if cached is not None and cached[0] == count:
            return cached[1]
        chosen = int(
            super().partition(topic, key, serialized_key, value, serialized_value, cluster)
        )
        if len(self._cache) >= self._max_keys:
            self._cache.clear()
        self._cache[(topic, serialized_key)] = (count, chosen)
        return chosen


class _Batch:
    """One creator's buffered events, waiting to become a batch record."""

    __slots__ = ("max_ts", "size", "values")

    def __init__(self) -> None:
        self.values: list[bytes] = []
        self.size = 1  # the closing bracket; each value adds its length + 1
        self.max_ts = 0


class Publisher:
    """Publishes :class:`SimRecord` s and events to one topic (others on request).

    With ``events_per_record == 1`` every record is sent as is. With more, valid
    events are grouped per key into JSON arrays of up to ``events_per_record`` events
    and :data:`MAX_BATCH_VALUE_BYTES`; invalid records are always sent alone (one
    broken element must not spoil its neighbours). Buffers are sent when full, when
    the buffered events would span more than ``max_span_ms`` of event time, and on
    :meth:`flush`.

    Why the span bound: records of different creators share partitions, and a batch
    held back while other creators' newer events go out reaches the pipeline behind
    them. If the pipeline keeps its watermark per partition, a hold-back longer than
    the grace period would turn on-time events into late ones. The default (30 s) is a
    twentieth of the contract's default grace; keep ``max_span_ms`` well under the
    pipeline's grace if that is lowered. An event far older than the buffered ones (a
    late or redelivered event) is sent at once as a record of its own.

    Not thread-safe: one publishing thread per instance.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        events_per_record: int = 1,
        linger_ms: int = 20,
        batch_size: int = 512 * 1024,
        compression: Compression | None = None,
        enable_idempotence: bool = True,
        max_span_ms: int = DEFAULT_MAX_SPAN_MS,
        delivery_timeout_ms: int = 120_000,
        client_id: str = "creatorpulse-producer",
        extra_config: dict[str, Any] | None = None,
    ) -> None:
        if events_per_record < 1:
            raise ValueError("events_per_record must be >= 1")
        if max_span_ms < 0:
            raise ValueError("max_span_ms must be >= 0")
        self.bootstrap = bootstrap
        self.topic = topic
        self.events_per_record = events_per_record
        self.max_span_ms = max_span_ms
        self.stats = PublisherStats()
        self._config: dict[str, Any] = {
            "bootstrap_servers": bootstrap.split(","),
            "client_id": client_id,
            # Safe delivery: every in-sync replica has it, and retries cannot duplicate
            # or reorder (idempotence keeps up to 5 in-flight requests in order).
            "acks": "all",
            "enable_idempotence": enable_idempotence,
            "retries": 2**31 - 1,  # bounded by delivery_timeout_ms instead
            "delivery_timeout_ms": delivery_timeout_ms,
            "max_in_flight_requests_per_connection": 5,
            # Throughput: large batches, and a short wait to fill them.
            "linger_ms": linger_ms,
            "batch_size": batch_size,
            "compression_type": compression,
            # A full batch record plus its overhead must fit in one request.
            "max_request_size": MAX_BATCH_VALUE_BYTES + 64 * 1024,
            "partitioner": KeyCachingPartitioner(),
        }
        self._config.update(extra_config or {})
        self._producer: KafkaProducer | None = None
        # (future, events in the record) of sends not yet checked.
        self._pending: list[tuple[Any, int]] = []
        self._failed_records = 0
        self._failed_events = 0
        self._first_error: BaseException | None = None
        self._batches: dict[bytes, _Batch] = {}
        self._span_min = 0
        self._span_max = 0

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> Publisher:
        """Connect (bootstraps and checks the broker). Called by the first publish."""
        if self._producer is None:
            if getattr(record_util, "crc32c_c", None) is None:
                # Measured on tansu: 100-event records went from 16k to 270k events/s
                # once kafka-python could checksum batches in C instead of Python.
                log.warning(
                    "the 'crc32c' package is not installed: kafka-python checksums record "
                    "batches in pure Python, which caps large records at a few MB/s "
                    "(pip install crc32c, or use compression='lz4')"
                )
            self._producer = KafkaProducer(**self._config)
        return self

    @property
    def idempotent(self) -> bool:
        """Whether the running producer is idempotent (kafka-python may turn it off)."""
        self.start()
        producer = self._producer
        assert producer is not None
        return bool(producer.config["enable_idempotence"])

    def __enter__(self) -> Publisher:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # On an error in the body, do not mask it with a delivery error.
        self.close(check=exc is None)

    def close(self, timeout: float | None = None, *, check: bool = True) -> None:
        """Flush what is buffered, then close. Raises :class:`DeliveryError` if ``check``."""
        if self._producer is None and not self._batches:
            return
        try:
            if check:
                self.flush(timeout)
            else:
                try:
                    self.flush(timeout)
                except (DeliveryError, KafkaError) as exc:
                    log.warning("records lost while closing after an error: %s", exc)
        finally:
            if self._producer is not None:
                self._producer.close(timeout=timeout)
                self._producer = None

    # -- publishing ----------------------------------------------------------------

    def publish(self, record: SimRecord) -> None:
        """Publish one record: batched if it carries a valid event and batching is on."""
        if not record.has_event:
            self._send(self.topic, record.key, record.value, record.timestamp_ms, 0)
        elif self.events_per_record == 1:
            self._send(self.topic, record.key, record.value, record.timestamp_ms, 1)
        else:
            key = record.key if record.key is not None else _partition_key(record)
            self._buffer(key, record.value, record.timestamp_ms)

    def publish_many(self, records: Iterable[SimRecord]) -> None:
        """Publish records in order (a tight loop: prefer it for bulk)."""
        topic = self.topic
        send = self._send
        buffer = self._buffer
        batching = self.events_per_record > 1
        for record in records:
            if not record.has_event:
                send(topic, record.key, record.value, record.timestamp_ms, 0)
            elif batching:
                key = record.key if record.key is not None else _partition_key(record)
                buffer(key, record.value, record.timestamp_ms)
            else:
                send(topic, record.key, record.value, record.timestamp_ms, 1)

    def publish_event(self, event: PostStatEvent) -> None:
        """Publish one event: key = creator, timestamp = event time."""
        self.publish(SimRecord(event.partition_key(), event.to_json(), event.ts, event))

    def publish_raw(
        self,
        value: bytes | None,
        *,
        key: bytes | None,
        timestamp_ms: int | None = None,
        topic: str | None = None,
    ) -> None:
        """Send one record unchanged (e.g. reference data to another topic).

        ``value`` None is a tombstone (compacted topics). Delivery is checked by
        :meth:`flush` like any other send; it counts as a record, not an event.
        """
        self._send(topic or self.topic, key, value, timestamp_ms, 0)

    def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int | None,
        events: int,
    ) -> None:
        if self._producer is None:
            self.start()
        producer = self._producer
        assert producer is not None
        try:
            future = producer.send(topic, value=value, key=key, timestamp_ms=timestamp_ms)
        except KafkaError as exc:
            # Raised before queueing (metadata timeout, record too large): count it
            # with the asynchronous failures so flush() reports one coherent error.
            self._note_failure(1, events, exc)
            return
        pending = self._pending
        pending.append((future, events))
        stats = self.stats
        stats.records_sent += 1
        stats.events_sent += events
        stats.bytes_sent += (len(value) if value is not None else 0) + (
            len(key) if key is not None else 0
        )
        if len(pending) >= _MAX_PENDING:
            producer.flush()
            self._check_pending()

    def _buffer(self, key: bytes, value: bytes, ts: int) -> None:
        batches = self._batches
        if not batches:
            self._span_min = self._span_max = ts
        elif ts > self._span_min + self.max_span_ms:
            # Newer than the span allows (class docstring): what is buffered goes first.
            self._send_batches()
            self._span_min = self._span_max = ts
        elif ts < self._span_max - self.max_span_ms:
            # Far older than what is buffered (a late or redelivered event): it goes out
            # now, on its own, after its creator's buffered events (per-key order).
            # Holding it behind newer events could only make it later, and flushing
            # every buffer for it would defeat batching when such events are common.
            held = batches.pop(key, None)
            if held is not None:
                self._send_batch(key, held)
            self._send(self.topic, key, value, ts, 1)
            return
        elif ts < self._span_min:
            self._span_min = ts
        elif ts > self._span_max:
            self._span_max = ts
        batch = batches.get(key)
        if batch is None:
            batch = batches[key] = _Batch()
        elif batch.size + len(value) + 1 > MAX_BATCH_VALUE_BYTES:
            self._send_batch(key, batch)
            batch = batches[key] = _Batch()
        batch.values.append(value)
        batch.size += len(value) + 1
        if ts > batch.max_ts:
            batch.max_ts = ts
        if len(batch.values) >= self.events_per_record:
            self._send_batch(key, batch)
            del batches[key]

    def _send_batch(self, key: bytes, batch: _Batch) -> None:
        value = b"[" + b",".join(batch.values) + b"]"
        # The newest event time: a consumer seeking by timestamp then never skips a
        # record holding events at or after the time it asked for.
        self._send(self.topic, key, value, batch.max_ts, len(batch.values))

    def _send_batches(self) -> None:
        batches = self._batches
        for key, batch in batches.items():
            self._send_batch(key, batch)
        batches.clear()

    # -- delivery ------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Send buffered batches, wait for every send, raise :class:`DeliveryError`.

        After it returns, everything published so far is acknowledged. After it
        raises, the failed records are counted in :attr:`stats` and forgotten: the
        caller decides whether to stop or carry on (a later flush does not repeat the
        error).
        """
        self._send_batches()
        if self._producer is None:
            return
        # On a timeout the unresolved sends are counted as failures just below.
        with contextlib.suppress(KafkaTimeoutError):
            self._producer.flush(timeout=timeout)
        self._check_pending()
        if self._first_error is not None:
            error = DeliveryError(self._failed_records, self._failed_events, self._first_error)
            self._failed_records = self._failed_events = 0
            self._first_error = None
            raise error

    def _check_pending(self) -> None:
        """Count the failures among sends the producer has finished with (after a flush)."""
        for future, events in self._pending:
            if not future.is_done:
                # The producer's flush returned without resolving it: count it as lost.
                self._note_failure(1, events, TimeoutError("send not completed by flush()"))
            elif future.failed():
                self._note_failure(1, events, future.exception)
        self._pending = []

    def _note_failure(self, records: int, events: int, exc: BaseException) -> None:
        self._failed_records += records
        self._failed_events += events
        self.stats.records_failed += records
        self.stats.events_failed += events
        if self._first_error is None:
            self._first_error = exc
            log.error("delivery failed: %r", exc)


def _partition_key(record: SimRecord) -> bytes:
    """The key of a record that carries an event but was given none: its creator."""
    event = record.event
    assert event is not None
    return event.partition_key()
