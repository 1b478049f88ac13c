"""The alerting stage's reference reader on real Kafka: tiers known once it is ready."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson

from schemas.topics import Topics
from streams.alerts.stage import ReferenceData, read_reference
from tests.support.fixtures.kafka import create_topic
from tests.support.processes import publish


def test_profiles_published_before_the_reader_starts_are_known_when_ready(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topics = Topics(profiles=unique_name("profiles"), contracts=unique_name("contracts"))
    create_topic(kafka_bootstrap, topics.profiles, 1)
    create_topic(kafka_bootstrap, topics.contracts, 1)
    profile = {"creator_id": "maya", "handle": "@maya", "follower_count": 40_000}
    publish(kafka_bootstrap, topics.profiles, [(b"maya", orjson.dumps(profile))])
    data = ReferenceData()

    async def scenario() -> None:
        ready = asyncio.Event()
        reader = asyncio.create_task(read_reference(kafka_bootstrap, topics, data, ready))
        await asyncio.wait_for(ready.wait(), 30)
        reader.cancel()

    asyncio.run(scenario())
    assert data.references["maya"].tier == "micro"
