"""The contract's data shapes, shared by producers, streams and sinks.

Imports no Kafka or ClickHouse client.
"""

from schemas.events import Decoded, DecodedEvent, PostStatEvent, Rejected, decode_record
from schemas.metrics import METRICS
from schemas.reference import CampaignContract, CreatorProfile, tier_for
from schemas.rows import CreatorWindowRow, DeadLetter

__all__ = [
    "METRICS",
    "CampaignContract",
    "CreatorProfile",
    "CreatorWindowRow",
    "DeadLetter",
    "Decoded",
    "DecodedEvent",
    "PostStatEvent",
    "Rejected",
    "decode_record",
    "tier_for",
]
