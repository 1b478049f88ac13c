"""BatchPolicy: size-or-age readiness with an injected clock (no sleeping)."""

from __future__ import annotations

import pytest

from sinks.batching import DEFAULT_MAX_AGE_S, DEFAULT_MAX_ITEMS, BatchPolicy


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_defaults_are_the_documented_ones() -> None:
    policy: BatchPolicy[int] = BatchPolicy()
    assert (policy.max_items, policy.max_age_s) == (DEFAULT_MAX_ITEMS, DEFAULT_MAX_AGE_S)
    assert (DEFAULT_MAX_ITEMS, DEFAULT_MAX_AGE_S) == (5000, 1.0)


def test_empty_batch_is_never_ready() -> None:
    clock = FakeClock()
    policy: BatchPolicy[int] = BatchPolicy(max_items=1, max_age_s=0.0, clock=clock)
    assert not policy.is_ready()
    clock.advance(3600)
    assert not policy.is_ready()
    assert len(policy) == 0
    assert policy.age_s() == 0.0
    assert policy.drain() == []


def test_ready_when_size_reached() -> None:
    clock = FakeClock()
    policy: BatchPolicy[str] = BatchPolicy(max_items=3, max_age_s=60.0, clock=clock)
    policy.add("a")
    policy.add("b")
    assert not policy.is_ready()
    policy.add("c")
    assert policy.is_ready()
    assert len(policy) == 3


def test_ready_when_oldest_item_reaches_max_age() -> None:
    clock = FakeClock()
    policy: BatchPolicy[int] = BatchPolicy(max_items=100, max_age_s=1.0, clock=clock)
    policy.add(1)
    clock.advance(0.5)
    policy.add(2)
    clock.advance(0.49)
    assert not policy.is_ready()
    assert policy.age_s() == pytest.approx(0.99)
    # The age is the first item's, not the newest one's (added only 0.5 s ago).
    clock.advance(0.01)
    assert policy.is_ready()


def test_age_counts_from_first_add_not_from_creation_or_last_drain() -> None:
    clock = FakeClock()
    policy: BatchPolicy[int] = BatchPolicy(max_items=100, max_age_s=1.0, clock=clock)
    clock.advance(10)  # idle time before the first item must not count
    policy.add(1)
    assert not policy.is_ready()
    clock.advance(1.0)
    assert policy.is_ready()
    policy.drain()
    clock.advance(5)
    policy.add(2)
    assert not policy.is_ready()


def test_drain_returns_items_in_order_and_clears() -> None:
    clock = FakeClock()
    policy: BatchPolicy[int] = BatchPolicy(max_items=2, max_age_s=1.0, clock=clock)
    policy.extend([1, 2, 3])
    assert policy.is_ready()
    assert policy.drain() == [1, 2, 3]
    assert len(policy) == 0
    assert not policy.is_ready()
    assert policy.drain() == []
    clock.advance(100)
    assert not policy.is_ready()


def test_drained_list_is_not_shared_with_the_policy() -> None:
    policy: BatchPolicy[int] = BatchPolicy(max_items=10, clock=FakeClock())
    policy.add(1)
    batch = policy.drain()
    policy.add(2)
    assert batch == [1]
    assert policy.drain() == [2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_items": 0}, "max_items must be >= 1"),
        ({"max_age_s": -0.1}, "max_age_s must be >= 0"),
    ],
)
def test_rejects_nonsense_limits(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BatchPolicy(**kwargs)  # type: ignore[arg-type]
