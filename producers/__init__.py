"""Producers: what puts post-stat events on Kafka.

- :mod:`producers.simulator`: a deterministic campaign simulator (pure, seeded);
- :mod:`producers.replay`: reading JSONL / CSV files into records (pure iteration);
- :mod:`producers.publisher`: a safe, fast Kafka publisher with optional batch records;
- :mod:`producers.loops`: the publish loops (replay a file, run a simulation) with
  progress bars.
"""

from producers.loops import ReplayStats, SimulateStats, replay_file, simulate
from producers.publisher import DeliveryError, Publisher, PublisherStats
from producers.replay import ReplayReader, iter_records
from producers.simulator import CampaignSimulator, SimRecord, SimulationConfig

__all__ = [
    "CampaignSimulator",
    "DeliveryError",
    "Publisher",
    "PublisherStats",
    "ReplayReader",
    "ReplayStats",
    "SimRecord",
    "SimulateStats",
    "SimulationConfig",
    "iter_records",
    "replay_file",
    "simulate",
]
