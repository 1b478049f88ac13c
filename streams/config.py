"""The worker's configuration: plain values, read from settings at the entry point only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from schemas.topics import ALERTS, INPUT, Topics
from streams.alerts.rules import Rules
from streams.windows import DEFAULT_FUTURE_SKEW_S, DEFAULT_GRACE_S, DEFAULT_WINDOW_SIZES_S


@dataclass(frozen=True)
class WorkerConfig:
    """Everything the worker needs, as plain values."""

    kafka_bootstrap: str
    app_id: str = "creatorpulse"
    input_topic: str = INPUT
    partitions: int = 4
    grace_s: int = DEFAULT_GRACE_S
    future_skew_s: int = DEFAULT_FUTURE_SKEW_S
    window_sizes_s: tuple[int, ...] = DEFAULT_WINDOW_SIZES_S
    # When a flush starts (docs/design.md, "When a flush starts"): once the oldest record
    # applied since the last flush has waited flush_max_age_s, or flush_max_records
    # records are applied, or flush_interval_s has passed without a flush; and once the
    # fetches have read to the end of every partition (caught up: the records are live),
    # as soon as flush_caught_up_gap_s has passed since the last flush began.
    flush_interval_s: float = 1.0
    flush_max_age_s: float = 0.25
    flush_max_records: int = 50_000
    flush_caught_up_gap_s: float = 0.1
    max_batch: int = 10_000
    # How long a send to Kafka may wait for its acknowledgement. Faust's default (its
    # producer_request_timeout, 20 minutes) let one lost answer hold a flush, and with it
    # the partition's commits, for that long; a send that fails is sent again.
    kafka_send_timeout_s: float = 30.0
    data_dir: Path = Path(".creatorpulse/faust")
    web_port: int | None = None
    web_host: str = "127.0.0.1"  # bound and advertised; Faust binds 0.0.0.0 unless told
    stats_interval_s: float = 10.0
    # Creator profiles and campaign contracts go to the sink too; off when a separate
    # `creatorpulse sink` process writes ClickHouse (it reads those topics itself).
    writes_reference_data: bool = True
    # Short enough that a killed worker's partitions move on quickly, and that the
    # embedded broker (which completes a group join after half of it) starts fast.
    session_timeout_s: float = 10.0
    # On shutdown, how long the last flush and the sink writer may take before the
    # worker gives up on them (what is unwritten stays durable in the changelog).
    shutdown_timeout_s: float = 10.0
    # The alerting stage (streams.alerts.stage) runs in the worker with these rules;
    # None: off.
    alert_rules: Rules | None = None
    alerts_topic: str = ALERTS

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError("partitions must be at least 1")
        if self.grace_s < 0:
            raise ValueError("grace_s must not be negative")
        if self.future_skew_s < 0:
            raise ValueError("future_skew_s must not be negative")
        if not self.window_sizes_s or min(self.window_sizes_s) <= 0:
            raise ValueError("window sizes must be positive seconds, e.g. 60,3600")
        if self.flush_interval_s <= 0:
            raise ValueError("flush_interval_s must be positive")
        if self.flush_max_age_s <= 0:
            raise ValueError("flush_max_age_s must be positive")
        if self.flush_max_records < 1:
            raise ValueError("flush_max_records must be at least 1")
        if self.kafka_send_timeout_s <= 0:
            raise ValueError("kafka_send_timeout_s must be positive")
        if self.flush_caught_up_gap_s < 0:
            raise ValueError("flush_caught_up_gap_s must not be negative")

    @property
    def topics(self) -> Topics:
        return Topics(app_id=self.app_id, input=self.input_topic, alerts=self.alerts_topic)

    def owns(self, topic: str) -> bool:
        """Whether records of ``topic`` are counted by this worker's partition states."""
        return topic in (self.input_topic, self.topics.rekey)
