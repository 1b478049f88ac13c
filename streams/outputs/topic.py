"""Records the worker publishes, built from rows and dead letters: pure, no Kafka.

The window-rows topic is the stage boundary after the worker: the separate sink
process, the alerting stage and the dashboard feed read it. Its records are keyed by
campaign, so everything a campaign-level reader needs is in one partition, in order;
each value is a JSON array of whole window rows (``schemas.rows``), split so that no
record passes the changelog's size bound.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from schemas.rows import CreatorWindowRow, DeadLetter, dead_letter_to_json, window_row_to_json
from streams.changelog import split_to_fit
from streams.ports import OutRecord


def json_array(elements: list[bytes]) -> bytes:
    """Encoded JSON values as one JSON array."""
    return b"[" + b",".join(elements) + b"]"


def window_row_records(rows: Iterable[CreatorWindowRow], topic: str) -> list[OutRecord]:
    """The rows as window-rows records: one or more per campaign, keyed by campaign."""
    by_campaign: dict[str, list[bytes]] = defaultdict(list)
    for row in rows:
        by_campaign[row.campaign_id].append(window_row_to_json(row))
    return [
        (topic, campaign_id.encode(), value, None)
        for campaign_id, encoded in by_campaign.items()
        for _, value in split_to_fit(encoded, json_array)
    ]


def forwarded_records(
    creator_id: str, events: list[bytes], topic: str, partition: int
) -> list[OutRecord]:
    """One creator's misplaced events (encoded) as rekey records for its partition."""
    key = creator_id.encode()
    return [(topic, key, value, partition) for _, value in split_to_fit(events, json_array)]


def dead_letter_records(dead_letters: Iterable[DeadLetter], topic: str) -> list[OutRecord]:
    """Dead letters for the dead-letter topic, keyed by their identity."""
    return [
        (
            topic,
            f"{dead.topic}:{dead.partition}:{dead.offset}:{dead.idx}".encode(),
            dead_letter_to_json(dead),
            None,
        )
        for dead in dead_letters
    ]
