"""``creatorpulse sink``: window rows from Kafka into a store, committed only once written.

Every worker publishes each flush's window rows to the window-rows topic
(``schemas.topics.Topics.window_rows``). By default it writes ClickHouse itself too; with
``CREATORPULSE_SINK=topic`` it does not, and this separate process writes them. Why: a
chDB store can be open in one process only, so several stream workers can share one
store only through such a process; and a worker without chDB in it is about 300 MB
smaller (README, performance).

Totals stay exact, as they do in one process:

- a worker treats rows as written (and may let their windows expire) once Kafka has
  acknowledged them (acks=all, idempotent producer), so a window's final row is durable
  before the worker forgets the window;
- the sink commits its offsets only after the store took the rows; after a crash it
  writes them again, and ``ReplacingMergeTree(version)`` keeps one row per window with
  the highest version (rows are whole totals, never increments);
- dead letters reach the sink on the dead-letter topic, which the worker makes durable
  before the checkpoint that covers their records; creator profiles and campaign
  contracts come from their own topics, as in a worker.

Rows the store refuses are isolated and recorded as dead letters, and the rest of the
poll is written and committed (``sinks.base``); an outage is retried with backoff until
``stop`` is set, and then nothing is committed, so the next start writes it again.

Known limit: the worker's ``/stats`` latency then ends at the window-rows topic, not
in ClickHouse.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.reference import CampaignContract, CreatorProfile
from schemas.rows import dead_letter_from_json, window_rows_from_json
from sinks.base import (
    CONTRACTS_TABLE,
    CREATOR_METRICS_TABLE,
    PROFILES_TABLE,
    BatchOutcome,
    Part,
    RowBatch,
    StoreSink,
    contract_dead_letter,
    profile_dead_letter,
    window_dead_letter,
    write_batch,
    write_until_done,
)
from sinks.consumer import GroupReader

log = logging.getLogger("creatorpulse.sink")


@dataclass(frozen=True)
class SinkTopics:
    window_rows: str
    dead_letters: str
    profiles: str
    contracts: str

    def all(self) -> list[str]:
        return [self.window_rows, self.dead_letters, self.profiles, self.contracts]


class SinkBatch(RowBatch):
    """What one poll brought, ready to write: the newest row of each window and the dead
    letters (:class:`~sinks.base.RowBatch`), reference data, and how many records were
    invalid."""

    def __init__(
        self,
        profiles: Iterable[CreatorProfile] = (),
        contracts: Iterable[CampaignContract] = (),
    ) -> None:
        super().__init__()
        self.profiles = list(profiles)
        self.contracts = list(contracts)
        self.invalid = 0

    def empty(self) -> bool:
        return super().empty() and not (self.profiles or self.contracts)

    def clear(self) -> None:
        super().clear()
        self.profiles.clear()
        self.contracts.clear()
        self.invalid = 0


def collect(messages: Iterable[tuple[str, bytes | None]], topics: SinkTopics) -> SinkBatch:
    """Sort ``(topic, value)`` messages into a batch; never raises on data.

    A message that does not parse is counted and logged, not written: these topics
    are written by creatorpulse itself, so one would be a bug or a stranger's record.
    """
    batch = SinkBatch()
    for topic, value in messages:
        if value is None:  # a tombstone on a compacted reference topic
            continue
        try:
            if topic == topics.window_rows:
                batch.add(window_rows_from_json(value))
            elif topic == topics.dead_letters:
                batch.add_dead_letters([dead_letter_from_json(value)])
            elif topic == topics.profiles:
                batch.profiles.append(CreatorProfile.model_validate_json(value))
            elif topic == topics.contracts:
                batch.contracts.append(CampaignContract.model_validate_json(value))
        except ValueError as exc:
            batch.invalid += 1
            log.warning("ignoring an invalid record on %s (%s): %.200r", topic, exc, value)
    return batch


@dataclass
class SinkStats:
    polls: int = 0
    rows_written: int = 0
    dead_letters_written: int = 0
    reference_rows_written: int = 0
    #: Rows (window, profile, contract) ClickHouse refused: recorded as dead letters.
    rows_refused: int = 0
    #: Dead letters ClickHouse refused too: logged and dropped.
    dead_letters_refused: int = 0
    invalid: int = 0
    failures: int = 0
    last_write_unix: float | None = None
    inserts: int = 0  # batches written
    write_s: float = 0.0  # wall time of the batches written


class RowSinkService:
    """Consumes the sink topics and writes them to a store, committing after each write."""

    def __init__(
        self,
        sink: StoreSink,
        topics: SinkTopics,
        reader: GroupReader,
        *,
        report_every_s: float = 10.0,
        topic_timeout_s: float = 60.0,
    ) -> None:
        self.sink = sink
        self.topics = topics
        self.reader = reader
        self.backoff = reader.backoff()
        self.report_every_s = report_every_s
        self.topic_timeout_s = topic_timeout_s
        self.stats = SinkStats()

    def run(self, stop: threading.Event) -> SinkStats:
        """Until ``stop`` is set. What was polled but not written is not committed."""
        from kafka import KafkaConsumer
        from kafka.errors import CommitFailedError

        consumer = KafkaConsumer(**self.reader.consumer_options(max_poll_records=50_000))
        reported = time.monotonic()
        try:
            self._wait_for_topics(consumer, stop)
            consumer.subscribe(self.topics.all())
            log.info("sink %s: reading %s", self.reader.group_id, ", ".join(self.topics.all()))
            while not stop.is_set():
                polled = consumer.poll(timeout_ms=250)
                if polled:
                    self.stats.polls += 1
                    batch = collect(
                        (
                            (tp.topic, record.value)
                            for tp, records in polled.items()
                            for record in records
                        ),
                        self.topics,
                    )
                    self.stats.invalid += batch.invalid
                    if not self._write_with_retry(batch, stop):
                        break  # stopped while ClickHouse was failing: the next start rereads
                    try:
                        consumer.commit()
                    except CommitFailedError as exc:
                        # A long outage cost us the group membership (max.poll.interval):
                        # the partitions' new owner writes these rows again; no harm.
                        log.warning("offsets not committed (%s); rows will be rewritten", exc)
                if time.monotonic() - reported >= self.report_every_s:
                    reported = time.monotonic()
                    log.info("sink: %s", self.stats)
        finally:
            consumer.close(autocommit=False)
        log.info("sink stopped: %s", self.stats)
        return self.stats

    def _wait_for_topics(self, consumer: Any, stop: threading.Event) -> None:
        """Subscribe only once every topic has partitions in the consumer's metadata.

        Topics created a moment ago (by this process or a worker starting beside it)
        can be missing from the first metadata answer; a group assignment made then
        leaves them unread until the next metadata refresh, minutes later.
        """
        deadline = time.monotonic() + self.topic_timeout_s
        missing = self.topics.all()
        while missing and not stop.is_set():
            missing = [t for t in missing if not consumer.partitions_for_topic(t)]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"topics {', '.join(missing)} do not exist on {self.reader.bootstrap}; start a "
                    "worker first or create them"
                )
            stop.wait(0.5)

    def _write_with_retry(self, batch: SinkBatch, stop: threading.Event) -> bool:
        """Write the batch through outages; False if ``stop`` was set first."""

        def on_outage(exc: Exception, delay_s: float) -> None:
            self.stats.failures += 1
            log.warning("ClickHouse write failed (%s); retrying in %.1fs", exc, delay_s)

        written = write_until_done(
            lambda: self.write(batch, stop),
            backoff=self.backoff,
            wait=stop.wait,
            on_outage=on_outage,
        )
        return written is not None

    def write(self, batch: SinkBatch, stop: threading.Event | None = None) -> BatchOutcome:
        """One batch into ClickHouse, refused rows isolated and dead-lettered.

        Every step is idempotent, so after an outage (raised) a retry repeats all.
        """
        outcome = BatchOutcome()
        if batch.empty():
            return outcome
        sink = self.sink
        started = time.perf_counter()
        parts: list[Part[Any]] = [
            Part(
                CREATOR_METRICS_TABLE,
                batch.rows(),
                sink.write_creator_windows,
                window_dead_letter,
            ),
            Part(PROFILES_TABLE, batch.profiles, sink.write_profiles, profile_dead_letter),
            Part(CONTRACTS_TABLE, batch.contracts, sink.write_contracts, contract_dead_letter),
        ]
        outcome = write_batch(
            parts,
            batch.dead_letters,
            sink.write_dead_letters,
            now=lambda: datetime.now(UTC),
            stopped=stop.is_set if stop is not None else lambda: False,
        )
        stats = self.stats
        stats.rows_written += outcome.written[CREATOR_METRICS_TABLE]
        stats.dead_letters_written += outcome.dead_letters_written
        stats.reference_rows_written += (
            outcome.written[PROFILES_TABLE] + outcome.written[CONTRACTS_TABLE]
        )
        stats.rows_refused += outcome.rows_refused
        stats.dead_letters_refused += outcome.dead_letters_refused
        stats.last_write_unix = time.time()
        stats.inserts += 1
        stats.write_s += time.perf_counter() - started
        return outcome
