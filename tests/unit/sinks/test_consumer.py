"""The reading settings the row sink and the alert sink share (``sinks.consumer``)."""

from __future__ import annotations

from sinks.consumer import GroupReader


def test_a_committing_reader_never_commits_by_itself_and_starts_at_the_earliest_offset() -> None:
    options = GroupReader("a:9092,b:9093", "g-sink").consumer_options()
    assert options == {
        "bootstrap_servers": ["a:9092", "b:9093"],
        "group_id": "g-sink",
        "client_id": "g-sink-consumer",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": 10_000,
    }


def test_client_specific_options_are_added_to_the_shared_ones() -> None:
    options = GroupReader("a:1", "g").consumer_options(max_poll_records=7)
    assert options["max_poll_records"] == 7
    assert options["enable_auto_commit"] is False


def test_each_backoff_starts_again_from_the_initial_delay() -> None:
    reader = GroupReader("a:1", "g", retry_initial_s=0.25, retry_max_s=1.0)
    first = reader.backoff()
    assert [first.next_delay() for _ in range(5)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert reader.backoff().next_delay() == 0.25
