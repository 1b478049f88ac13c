"""Topic names: the contract's, and the ones a worker group derives from its app id.

One home for every name, so the worker, the sink process, the CLI and the benchmark agree.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The contract's topic of post-stat events (configurable).
INPUT = "post-stats"
#: Dead letters of every worker on a broker (contract section 1).
DEAD_LETTERS = "post-stats-dead-letters"
#: Reference data, compacted: latest value per key.
CREATOR_PROFILES = "creator-profiles"
CAMPAIGN_CONTRACTS = "campaign-contracts"
#: Alert records of the alerting stage, keyed by campaign (contract section 3).
ALERTS = "alerts"


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of one worker group, ``app_id``, reading ``input``."""

    app_id: str = "creatorpulse"
    input: str = INPUT
    dead_letters: str = DEAD_LETTERS
    profiles: str = CREATOR_PROFILES
    contracts: str = CAMPAIGN_CONTRACTS
    alerts: str = ALERTS

    @property
    def rekey(self) -> str:
        """Events of records keyed by something else, forwarded keyed by creator."""
        return f"{self.app_id}-{self.input}-rekeyed"

    @property
    def window_rows(self) -> str:
        """Whole window totals at each flush: the stage boundary to sinks and alerts."""
        return f"{self.app_id}-window-rows"

    @property
    def alerts_sink_group(self) -> str:
        """The consumer group that writes alerts to ClickHouse and delivers them."""
        return f"{self.app_id}-alerts-sink"

    @property
    def sink_group(self) -> str:
        """The consumer group of ``creatorpulse sink``."""
        return f"{self.app_id}-sink"
