"""Window assignment and the watermark's lateness rule."""

import random

import pytest

from streams.windows import Watermark, is_closed, window_end_ms, window_start_ms


@pytest.mark.parametrize(
    ("ts", "size", "start"),
    [
        (0, 60, 0),
        (59_999, 60, 0),
        (60_000, 60, 60_000),
        (3_599_999, 3600, 0),
        (1_795_341_612_345, 60, 1_795_341_600_000),
    ],
)
def test_window_start_is_the_tumbling_boundary(ts: int, size: int, start: int) -> None:
    assert window_start_ms(ts, size) == start
    assert window_start_ms(ts, size) <= ts < window_end_ms(start, size)


def test_nothing_is_late_before_the_first_event() -> None:
    wm = Watermark(grace_ms=1000)
    assert not wm.is_late(0)
    assert wm.horizon_ms() is None
    assert not is_closed(10**15, wm.horizon_ms())


def test_late_means_older_than_watermark_minus_grace() -> None:
    wm = Watermark(grace_ms=10_000)
    wm.observe(100_000)
    assert not wm.is_late(90_000)  # exactly at the horizon is on time
    assert wm.is_late(89_999)
    wm.observe(50_000)  # out of order: the watermark never goes back
    assert wm.value_ms == 100_000


def test_a_window_closes_when_its_end_reaches_the_horizon() -> None:
    wm = Watermark(grace_ms=600_000)
    wm.observe(660_000 + 600_000)
    assert is_closed(660_000, wm.horizon_ms())
    assert not is_closed(660_001, wm.horizon_ms())


def test_admit_applies_the_rule_in_arrival_order() -> None:
    wm = Watermark(grace_ms=10_000)
    assert wm.admit(100_000)
    assert wm.value_ms == 100_000
    assert wm.admit(90_000)
    assert wm.value_ms == 100_000
    assert not wm.admit(89_999)
    assert wm.value_ms == 100_000


def _one_by_one(watermark: Watermark, timestamps: list[int]) -> list[bool]:
    return [watermark.admit(ts) for ts in timestamps]


@pytest.mark.parametrize("seed", range(300))
def test_admit_all_agrees_with_admitting_one_by_one(seed: int) -> None:
    rng = random.Random(seed)
    grace = rng.choice([0, 5, 50])
    start = rng.choice([None, 1_000])
    timestamps = [1_000 + rng.randint(-80, 80) for _ in range(rng.randint(0, 6))]
    fast = Watermark(grace_ms=grace, value_ms=start)
    slow = Watermark(grace_ms=grace, value_ms=start)
    admitted = _one_by_one(slow, list(timestamps))
    if fast.admit_all(timestamps):
        # True only when one by one admits every event, and it leaves the same watermark.
        assert all(admitted)
        assert fast.value_ms == slow.value_ms
    else:
        # False says "admit them one by one": nothing may have changed.
        assert fast.value_ms == start
        # ... and it is only said when the newest event (or the watermark) is more than
        # grace ahead of the oldest one, so the fast path serves every ordinary record.
        newest = max([*timestamps, start if start is not None else timestamps[0]])
        assert min(timestamps) < newest - grace


def test_admit_all_refuses_a_record_with_a_late_event() -> None:
    watermark = Watermark(grace_ms=10, value_ms=100)
    assert not watermark.admit_all([95, 89])  # 89 < 100 - 10
    assert watermark.value_ms == 100
    # Within one record, an early event can make a later one late.
    fresh = Watermark(grace_ms=10)
    assert not fresh.admit_all([200, 150])
    assert fresh.value_ms is None
    assert fresh.admit_all([200, 195])
    assert fresh.value_ms == 200
