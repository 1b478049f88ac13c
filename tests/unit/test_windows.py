"""Window assignment and the watermark's lateness rule."""

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
    assert wm.admit(100_000) and wm.value_ms == 100_000
    assert wm.admit(90_000) and wm.value_ms == 100_000  # out of order, on time
    assert not wm.admit(89_999) and wm.value_ms == 100_000  # late: not observed
